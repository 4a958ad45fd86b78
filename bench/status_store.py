"""The delivery store's cost: status-store calls per email and throughput, status on vs off.

    .venv/bin/python -m bench.status_store [--quick] [--emails N] [--clients C]

Everything but the servers runs in this process: the API app (api.app) on a loopback port, C
concurrent HTTP clients, and one PipelineNode with a provider at the network boundary that
accepts at once. Two configurations, one after the other, on the same LocalStack:
- status off (`status.backend: none`);
- status on (`status.backend: dynamodb`, on moto's server as a child process, as `gomail up`
  runs it).
For each: the API alone (C clients post N emails: accepted emails/s, DynamoDB calls), then the
node alone (it drains them: emails/s, DynamoDB calls). DynamoDB calls are counted with botocore's
`before-parameter-build.dynamodb` hook, by operation. Targets (issue 18): at most 0.1 status
calls per email in the API and 0.3 in a node; status on at least 0.8x the status-off rate.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

from bench.common import (
    bench_parser,
    bench_settings,
    default_sizes,
    header,
    localstack,
    table,
    temp_dir,
)

DYNAMO: Counter[str] = Counter()
LATENCY: dict[str, list[float]] = {"get_many": [], "put_many": []}  # seconds per store call


def _count(event_name: str, **_: Any) -> None:
    DYNAMO[event_name.rsplit(".", 1)[-1]] += 1


def _install() -> None:
    import aiobotocore.session

    import gomailpy.queues.aws

    def counting_session() -> aiobotocore.session.AioSession:
        session = aiobotocore.session.get_session()
        session.register("before-parameter-build.dynamodb", _count)
        return session

    setattr(gomailpy.queues.aws, "get_session", counting_session)  # noqa: B010


from aiohttp import web  # noqa: E402

from api.app import create_app  # noqa: E402
from bench.sqs_calls import post_all, run_node_until, wait_ready  # noqa: E402
from gomailpy.config.settings import Settings  # noqa: E402
from gomailpy.queues.sqs import create_queue_client  # noqa: E402
from gomailpy.store.deliveries import DynamoDeliveryStore, open_delivery_store  # noqa: E402
from gomailpy_local.localstack import free_port  # noqa: E402
from pipeline.node import PipelineNode  # noqa: E402
from tests.boundary import ScriptedProvider  # noqa: E402

_install()  # before any client is opened (and after bench.sqs_calls installed its own)


def _time_store_calls() -> None:
    """Time the node's batched store calls (what a batch waits for, status on)."""
    for name in LATENCY:
        original = getattr(DynamoDeliveryStore, name)

        async def timed(self: Any, *args: Any, _original: Any = original, _name: str = name) -> Any:
            started = time.perf_counter()
            try:
                return await _original(self, *args)
            finally:
                LATENCY[_name].append(time.perf_counter() - started)

        setattr(DynamoDeliveryStore, name, timed)


_time_store_calls()


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (temp_dir() / "moto.log").open("ab")
    child = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    return child, f"http://127.0.0.1:{port}"


async def measure(settings: Settings, args: argparse.Namespace, label: str) -> list[Any]:
    """[label, API emails/s, API calls/email, node emails/s, node calls/email, ops]."""
    async with create_queue_client(settings) as queues:
        for entry in settings.queues.urls:
            await queues.ensure_queue(entry)
    if settings.status.backend == "dynamodb":
        for _ in range(100):  # moto's server takes a moment to listen
            try:
                async with DynamoDeliveryStore(settings) as store:
                    await store.ensure_table()
                break
            except Exception:
                await asyncio.sleep(0.1)
    port = settings.api.port
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    api_url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(api_url)
        warm = await post_all(api_url, min(50, args.emails), args.clients)
        DYNAMO.clear()
        started = time.perf_counter()
        accepted = await post_all(api_url, args.emails, args.clients, start=1000)
        api_rate = accepted / (time.perf_counter() - started)
        api_calls = sum(DYNAMO.values())
        ops = Counter(DYNAMO)
    finally:
        await runner.cleanup()
    provider = ScriptedProvider("boundary")
    async with AsyncExitStack() as stack:
        queues = await stack.enter_async_context(create_queue_client(settings))
        status = await open_delivery_store(stack, settings)
        node = PipelineNode(settings, queues, {provider.name: provider}, status=status)
        await node.resolve_queues()
        DYNAMO.clear()
        started = time.perf_counter()
        drained = warm + accepted
        await run_node_until(node, provider, drained)
        node_rate = drained / (time.perf_counter() - started)
        node_calls = sum(DYNAMO.values())
        ops.update(DYNAMO)
    detail = ", ".join(f"{op} {n}" for op, n in sorted(ops.items())) or "-"
    return [
        label,
        api_rate,
        api_calls / max(accepted, 1),
        node_rate,
        node_calls / max(drained, 1),
        detail,
    ]


async def run(args: argparse.Namespace) -> int:
    header("Delivery store: status-store calls per email, status on vs off", args.quick)
    moto, moto_url = start_moto()
    try:
        with localstack() as stack:
            off = bench_settings(stack.endpoint_url, api={"port": free_port()})
            on = bench_settings(
                stack.endpoint_url,
                api={"port": free_port()},
                status={"backend": "dynamodb", "endpoint_url": moto_url, "table": "bench-status"},
            )
            # off, on, on, off: the machine's drift weighs on both alike
            rows = [await measure(off, args, "status off")]
            rows.append(await measure(on, args, "status on (DynamoDB, moto)"))
            if not args.quick:
                rows.append(await measure(on, args, "status on (DynamoDB, moto)"))
                rows.append(await measure(off, args, "status off"))
    finally:
        moto.terminate()
        moto.wait(10)
    print(
        table(
            [
                "run",
                "API emails/s",
                "API calls/email",
                "node emails/s",
                "node calls/email",
                "calls",
            ],
            rows,
        )
    )
    on_rows = [r for r in rows if r[0].startswith("status on")]
    off_rows = [r for r in rows if r[0] == "status off"]

    def mean(values: list[float]) -> float:
        return sum(values) / max(len(values), 1)

    api_ratio = mean([r[1] for r in on_rows]) / mean([r[1] for r in off_rows])
    node_ratio = mean([r[3] for r in on_rows]) / mean([r[3] for r in off_rows])
    api_calls = mean([r[2] for r in on_rows])
    node_calls = mean([r[4] for r in on_rows])
    waits = ", ".join(
        f"{name} {1000 * mean(values):.0f} ms mean over {len(values)}"
        for name, values in LATENCY.items()
    )
    print(f"node's store calls (status on): {waits}")
    print(
        f"summary: status on vs off: API ratio {api_ratio:.2f}, node ratio {node_ratio:.2f}"
        f" (targets >= 0.8); status-store calls per email: API {api_calls:.3f} (target <= 0.1),"
        f" node {node_calls:.3f} (target <= 0.3); {args.emails:,} emails, {args.clients} clients"
    )
    return 0


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--emails", type=int, default=None)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    default_sizes(args, emails=(200, 3_000))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
