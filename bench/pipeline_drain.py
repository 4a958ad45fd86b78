"""Pipeline drain: one PipelineNode against the queue server's own receive+delete ceiling.

    .venv/bin/python -m bench.pipeline_drain [--quick] [--messages M]

1. ceiling: M messages preloaded on 2 queues; this process drains them directly with
   ReceiveMessage (10) + DeleteMessageBatch, from as many concurrent drainers as the node
   reads with: the most emails/s the server lets anyone take off its queues.
2. node, instant provider: M messages again; one PipelineNode (pipeline.node, in this process)
   with a provider at the network boundary that accepts at once. Time until all are deleted.
3. node, providers answering after 100 ms (as SES and SendGrid do): same.
4. ceiling again (the machine is noisy: ratios use the mean of both).

The node runs in this process, so this process's CPU during a node run is the node's (and a
depth check every 20 ms): printed per email. `--flame FILE.svg` records py-spy flame graphs of
this process during the two node runs (FILE.svg, FILE-100ms.svg).

The SQS calls of each run are counted (botocore event hooks) and shown per email.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.common import (
    CpuMeter,
    SqsCalls,
    aws_cost_lines,
    bench_parser,
    bench_settings,
    calls_by_service,
    default_sizes,
    flame_graph,
    header,
    localstack,
    priced_kinds,
    table,
    typical_body,
)

CALLS = SqsCalls()
CALLS.install()  # before any SQS client is opened
WINDOWS: list[InFlightWindow] = []  # each node run's, to show the size Little's law gave it

from gomailpy.config.settings import Settings  # noqa: E402
from gomailpy.queues.sqs import QueueClient, create_queue_client  # noqa: E402
from pipeline.node import PipelineNode  # noqa: E402
from pipeline.sending.inflight import InFlightWindow  # noqa: E402
from tests.boundary import ScriptedProvider  # noqa: E402


async def preload(settings: Settings, count: int) -> list[str]:
    """Create the queues and put `count` typical envelopes on them, round-robin."""
    async with create_queue_client(settings) as queues:
        urls = [await queues.ensure_queue(entry) for entry in settings.queues.urls]
        # Every message an email of its own, as the API makes them: a node holds one id once.
        chunks = [
            (
                urls[n % len(urls)],
                [(str(i), typical_body(start + i)) for i in range(min(10, count - start))],
            )
            for n, start in enumerate(range(0, count, 10))
        ]
        limit = asyncio.Semaphore(16)

        async def put(url: str, entries: list[tuple[str, str]]) -> None:
            async with limit:
                result = await queues.send_batch(url, entries)
                assert not result.failed, result.failed

        await asyncio.gather(*(put(url, entries) for url, entries in chunks))
    return urls


async def measured(
    run: Callable[[], Awaitable[int]], meter: CpuMeter, flame: Path | None = None
) -> dict[str, object]:
    before = CALLS.snapshot()
    meter.start()
    started = time.perf_counter()
    with flame_graph(None, flame):
        done = await run()
    elapsed = time.perf_counter() - started
    meter.stop()
    calls = CALLS.snapshot()
    calls.subtract(before)
    total = sum(calls.values())
    priced = priced_kinds(calls, Counter())
    return {
        "priced": {kind: n / max(done, 1) for kind, n in priced.items()},
        "rate": done / elapsed,
        "emails": done,
        "seconds": elapsed,
        "calls": calls_by_service(calls)["SQS"] / max(done, 1),
        "all_calls": total,
        "cpu": meter.text(),
        "cpu_ms": meter.percent["bench"] / 100 * elapsed / max(done, 1) * 1000,
        "ops": ", ".join(f"{op} {n}" for op, n in sorted(calls.items()) if n),
    }


async def drain_directly(settings: Settings, urls: list[str], count: int, drainers: int) -> int:
    taken = 0
    async with create_queue_client(settings) as queues:

        async def drainer(url: str) -> None:
            nonlocal taken
            while taken < count:
                messages = await queues.receive(url, wait_time_s=0)
                if messages:
                    taken += len(messages)
                    await queues.delete_batch(url, [m.receipt_handle for m in messages])

        await asyncio.gather(*(drainer(urls[i % len(urls)]) for i in range(drainers)))
    return taken


async def drain_with_node(settings: Settings, count: int, latency_s: float) -> int:
    provider = ScriptedProvider("boundary", latency_s=latency_s)
    async with create_queue_client(settings) as queues:
        node = PipelineNode(settings, queues, {provider.name: provider})
        await node.resolve_queues()
        running = asyncio.create_task(node.run())
        WINDOWS.append(node.window)
        # Done when every email was accepted and settled (deleted): the queues are empty.
        while len(provider.accepted) < count or not await _empty(queues, node.urls):
            if running.done():
                running.result()
                raise SystemExit("the node stopped before the queues were drained")
            await asyncio.sleep(0.02)
        node.stop()
        await running
    return len(provider.accepted)


async def _empty(queues: QueueClient, urls: list[str]) -> bool:
    for url in urls:
        if (await queues.depth(url)).total:
            return False
    return True


async def run(args: argparse.Namespace) -> int:
    header("Pipeline drain: one node vs the receive+delete ceiling", args.quick)
    rows: list[list[object]] = []
    results: dict[str, dict[str, object]] = {}
    with localstack() as stack:
        endpoint = stack.endpoint_url
        meter = CpuMeter({"localstack": stack.process.pid, "bench": None})

        async def ceiling(label: str) -> None:
            settings = bench_settings(endpoint, queue_count=2)
            urls = await preload(settings, args.messages)
            results[label] = await measured(
                lambda: drain_directly(settings, urls, args.messages, args.drainers), meter
            )

        async def node(label: str, latency_s: float, flame: Path | None) -> None:
            settings = bench_settings(
                endpoint,
                queue_count=2,
                pipeline={
                    "min_iteration_duration_s": args.min_iteration_s,
                    "send_timeout_s": 30,
                    **({"max_in_flight": args.max_in_flight} if args.max_in_flight else {}),
                },
            )
            await preload(settings, args.messages)
            results[label] = await measured(
                lambda: drain_with_node(settings, args.messages, latency_s), meter, flame
            )
            window = WINDOWS[-1]
            results[label]["window"] = (
                f"window up to {window.peak} (2 x λ x max(W, H); at the end"
                f" λ {window.rate or 0:,.0f}/s,"
                f" W {1000 * window.service_s:.0f} ms = receive {1000 * (window.read_s or 0):.0f}"
                f" + send {1000 * (window.send_s or 0):.0f}"
                f" + settle {1000 * (window.settle_s or 0):.0f}; held"
                f" {1000 * (window.hold_s or 0):.0f} ms)"
            )

        await ceiling("ceiling: receive + delete batch, before")
        slow_flame = args.flame.with_name(args.flame.stem + "-100ms.svg") if args.flame else None
        await node("node, provider accepts at once", 0.0, args.flame)
        await node("node, provider answers after 100 ms", 0.1, slow_flame)
        await ceiling("ceiling: receive + delete batch, after")

    ceiling_rate = (
        float(results["ceiling: receive + delete batch, before"]["rate"])  # type: ignore[arg-type]
        + float(results["ceiling: receive + delete batch, after"]["rate"])  # type: ignore[arg-type]
    ) / 2
    for label, r in results.items():
        rate = float(r["rate"])  # type: ignore[arg-type]
        rows.append([label, rate, rate / ceiling_rate, r["emails"], r["calls"], r["cpu"], r["ops"]])
    print(
        table(
            ["run", "emails/s", "ratio", "emails", "SQS calls/email", "CPU (% of a core)", "calls"],
            rows,
        )
    )
    for label, r in results.items():
        if "window" in r:
            print(f"{label}: in-flight {r['window']}")
            print(f"{label}: node CPU {float(r['cpu_ms']):.2f} ms per email")  # type: ignore[arg-type]
    slow_run = results["node, provider answers after 100 ms"]
    print(aws_cost_lines(slow_run["priced"], "a node draining, 100 ms providers"))  # type: ignore[arg-type]
    instant = float(results["node, provider accepts at once"]["rate"])  # type: ignore[arg-type]
    slow = float(results["node, provider answers after 100 ms"]["rate"])  # type: ignore[arg-type]
    print(
        f"summary: node {instant:,.0f} emails/s = ratio {instant / ceiling_rate:.2f} of the"
        f" receive+delete ceiling {ceiling_rate:,.0f}/s (target >= 0.90); with 100 ms providers"
        f" {slow:,.0f}/s = ratio {slow / ceiling_rate:.2f}; node CPU"
        f" {float(results['node, provider accepts at once']['cpu_ms']):.2f} ms per email;"  # type: ignore[arg-type]
        f" {args.messages:,} emails per run"
    )
    return 0


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--messages", type=int, default=None, help="emails per run")
    parser.add_argument("--drainers", type=int, default=16, help="concurrent ceiling drainers")
    parser.add_argument(
        "--max-in-flight", type=int, default=None, help="pipeline.max_in_flight (the window's cap)"
    )
    parser.add_argument(
        "--min-iteration-s", type=float, default=0.05, help="pipeline.min_iteration_duration_s"
    )
    parser.add_argument(
        "--flame", type=Path, default=None, help="py-spy flame graphs of the node runs"
    )
    args = parser.parse_args()
    default_sizes(args, messages=(200, 10_000))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
