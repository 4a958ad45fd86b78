"""SQS calls per email, for the API and the pipeline at load, counted with botocore event hooks.

    .venv/bin/python -m bench.sqs_calls [--quick] [--emails N] [--clients C]

Everything runs in this process (so every SQS client is counted): the API app (api.app) on a
loopback port, C concurrent HTTP clients, and one PipelineNode with a provider at the network
boundary that accepts at once.

1. API alone: C clients post N emails; calls of the API (sends and its depth refresher).
2. node alone: it drains those N emails; calls of the node (depths, receives, deletes).
3. end to end: clients post N more while the node sends them: every call of both.

gomail made about 2.1 calls per email (a send each, a receive per ten, a delete each); the
target is at most 0.35 end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter

from bench.common import (
    SqsCalls,
    aws_cost_lines,
    bench_parser,
    bench_settings,
    calls_by_service,
    default_sizes,
    header,
    localstack,
    priced_kinds,
    table,
    typical_request,
)

CALLS = SqsCalls()
CALLS.install()  # before any SQS client is opened

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from api.app import create_app  # noqa: E402
from gomailpy.config.settings import Settings  # noqa: E402
from gomailpy.queues.sqs import create_queue_client  # noqa: E402
from gomailpy_local.localstack import free_port  # noqa: E402
from pipeline.node import PipelineNode  # noqa: E402
from tests.boundary import ScriptedProvider  # noqa: E402


async def post_all(api_url: str, count: int, clients: int, start: int = 0) -> int:
    """Post `count` emails from `clients` concurrent loops; the number answered 200."""
    endpoint = api_url + "/email/send"
    numbers = iter(range(start, start + count))
    accepted = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def client() -> None:
            nonlocal accepted
            for n in numbers:
                async with session.post(endpoint, json=typical_request(n)) as response:
                    await response.read()
                    accepted += response.status == 200

        await asyncio.gather(*(client() for _ in range(clients)))
    return accepted


async def wait_ready(api_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            async with session.get(api_url + "/readyz") as response:
                if response.status == 200:
                    return
            await asyncio.sleep(0.1)
    raise SystemExit("the API did not become ready")


def delta(before: Counter[str]) -> Counter[str]:
    now = CALLS.snapshot()
    now.subtract(before)
    return +now


async def run_node_until(node: PipelineNode, provider: ScriptedProvider, count: int) -> None:
    running = asyncio.create_task(node.run())
    while len(provider.accepted) < count:
        if running.done():
            running.result()
            raise SystemExit("the node stopped early")
        await asyncio.sleep(0.02)
    # Let the last settle (delete) calls go out before stopping.
    node.stop()
    await running


async def run(args: argparse.Namespace) -> int:
    header("SQS calls per email: API and pipeline at load", args.quick)
    rows: list[list[object]] = []
    with localstack() as stack:
        port = free_port()
        settings: Settings = bench_settings(stack.endpoint_url, queue_count=2, api={"port": port})
        async with create_queue_client(settings) as queues:
            for entry in settings.queues.urls:
                await queues.ensure_queue(entry)
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        api_url = f"http://127.0.0.1:{port}"
        try:
            await wait_ready(api_url)
            warm = await post_all(api_url, min(50, args.emails), args.clients)  # warm up

            before = CALLS.snapshot()
            started = time.perf_counter()
            accepted = await post_all(api_url, args.emails, args.clients, start=1000)
            api_s = time.perf_counter() - started
            api_calls = delta(before)
            rows.append(row("API alone", accepted, api_calls, accepted / api_s))

            provider = ScriptedProvider("boundary")
            async with create_queue_client(settings) as queues:
                node = PipelineNode(settings, queues, {provider.name: provider})
                await node.resolve_queues()
                before = CALLS.snapshot()
                started = time.perf_counter()
                drained = warm + accepted  # the warm-up's emails too
                await run_node_until(node, provider, drained)
                node_calls = delta(before)
                rows.append(
                    row(
                        "node alone (draining)",
                        drained,
                        node_calls,
                        drained / (time.perf_counter() - started),
                    )
                )

                node = PipelineNode(settings, queues, {provider.name: provider})
                await node.resolve_queues()
                provider.accepted.clear()
                before = CALLS.snapshot()
                entries_before = Counter(CALLS.entries)
                started = time.perf_counter()
                posting = asyncio.create_task(
                    post_all(api_url, args.emails, args.clients, start=10_000_000)
                )
                draining = asyncio.create_task(run_node_until(node, provider, args.emails))
                both_accepted = await posting
                await draining
                both_calls = delta(before)
                both_entries = Counter(CALLS.entries)
                both_entries.subtract(entries_before)
                rows.append(
                    row(
                        "end to end (API + node at once)",
                        both_accepted,
                        both_calls,
                        both_accepted / (time.perf_counter() - started),
                    )
                )
        finally:
            await runner.cleanup()

    print(table(["run", "emails", "SQS calls", "calls/email", "emails/s", "calls"], rows))
    # SQS only (DynamoDB and S3 calls, when status or claim check is on, are priced below).
    end_to_end = calls_by_service(both_calls)["SQS"] / max(both_accepted, 1)
    api_sqs = calls_by_service(api_calls)["SQS"] / max(accepted, 1)
    separate = api_sqs + calls_by_service(node_calls)["SQS"] / max(drained, 1)
    priced = priced_kinds(both_calls, both_entries)
    per_email = {kind: n / max(both_accepted, 1) for kind, n in priced.items()}
    print(aws_cost_lines(per_email, "end to end, API + node"))
    print(
        f"summary: end to end {end_to_end:.2f} SQS calls per email, ratio"
        f" {end_to_end / 0.35:.2f} of the 0.35 target ({end_to_end / 2.1:.2f} of gomail's ~2.1);"
        f" API then node separately {separate:.2f}; {args.emails:,} emails, {args.clients} clients"
    )
    return 0


def row(label: str, emails: int, calls: Counter[str], rate: float) -> list[object]:
    total = sum(calls.values())
    ops = ", ".join(f"{op} {n}" for op, n in sorted(calls.items()))
    return [label, emails, total, total / max(emails, 1), rate, ops]


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--emails", type=int, default=None)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    default_sizes(args, emails=(200, 5_000))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
