"""Scale: 1, 2 and 4 pipeline processes on the same queues; emails/s each.

    .venv/bin/python -m bench.scale [--quick] [--messages M] [--nodes 1,2,4]
        [--provider-latency-ms 100] [--connections 16] [--flame FILE.svg]

Per run: fresh queues with M emails preloaded, then N `pipeline --config` processes (through
bench/counted.py, which counts their SQS calls) sending through SMTP to the SMTP stand-in
(gomailpy_local.standins.SmtpStandIn, served by this process). The rate is measured from the first
email the stand-in receives to the last, so process start-up is not counted.

`--provider-latency-ms N`: the stand-in answers each message N ms late (a relay that far away).
Then a node is latency-bound, not CPU-bound: at most `--connections` (its SMTP pool) messages are
in flight per node, so the latency ceiling is nodes x connections / latency, printed beside the
rate. `--flame FILE.svg` records a py-spy flame graph of the first node of the first run.

Each row shows the nodes' CPU per email (all nodes' CPU time over the emails sent) and each
node's share of a core, and the CPU ceiling: the cores over the CPU per email of every measured
process (nodes, LocalStack, this process with the stand-in), what the machine allows at that cost.

On a 2-core machine the queue server, the nodes and the SMTP stand-in share the cores: more
processes cannot go past what LocalStack serves. The ratio is N processes against one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections import Counter
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
    spawn,
    stop,
    table,
    temp_dir,
    write_config,
)
from bench.pipeline_drain import preload
from gomailpy_local.standins import SmtpStandIn


async def one_run(
    endpoint: str,
    nodes: int,
    messages: int,
    smtp: SmtpStandIn,
    ls_pid: int,
    *,
    connections: int = 16,
    flame: Path | None = None,
) -> dict[str, object]:
    settings = bench_settings(
        endpoint,
        queue_count=2,
        providers=[  # type: ignore[arg-type]
            {
                "name": "smtp",
                "kind": "smtp",
                "enabled": True,
                "host": "127.0.0.1",
                "port": smtp.port,
                "max_connections": connections,
            },
        ],
    )
    await preload(settings, messages)
    smtp.messages.clear()
    work = temp_dir()
    config = write_config(settings, work, "pipeline")
    children = [
        spawn(
            ["pipeline", "--config", str(config)],
            work / f"pipeline-{n}.log",
            {"GOMAILPY_BENCH_CALLS": str(work / f"calls-{n}.json")},
        )
        for n in range(nodes)
    ]
    pids: dict[str, int | None | list[int]] = {"localstack": ls_pid, "bench+smtp": None}
    pids.update({f"node{n + 1}": child.pid for n, child in enumerate(children)})
    meter = CpuMeter(pids)
    try:
        deadline = time.perf_counter() + 120 + messages / 50
        while not smtp.messages:
            await asyncio.sleep(0.005)
            if time.perf_counter() > deadline:
                raise SystemExit(f"no email arrived; see {work}")
        started = time.perf_counter()
        meter.start()
        with flame_graph(children[0].pid, flame):
            while len(smtp.messages) < messages:
                await asyncio.sleep(0.01)
                if any(child.poll() is not None for child in children):
                    raise SystemExit(f"a pipeline process exited; see {work}")
                if time.perf_counter() > deadline:
                    raise SystemExit(f"only {len(smtp.messages)} of {messages} arrived; see {work}")
            elapsed = time.perf_counter() - started
            meter.stop()
        for child in children:
            child.send_signal(signal.SIGUSR1)  # bench/counted.py writes its counts now
        await asyncio.sleep(1.0)
    finally:
        for child in children:
            stop(child)
    by_operation: Counter[str] = Counter()
    entries: Counter[str] = Counter()
    for n in range(nodes):
        calls, batched = SqsCalls.load(work / f"calls-{n}.json")
        by_operation.update(calls)
        entries.update(batched)
    priced = priced_kinds(by_operation, entries)
    node_share = [v for k, v in meter.percent.items() if k.startswith("node")]
    return {
        "rate": (messages - 1) / elapsed,
        "calls": calls_by_service(by_operation)["SQS"] / messages,
        "priced": {kind: n / messages for kind, n in priced.items()},
        "cpu": meter.text(),
        "node_share": sum(node_share) / len(node_share),  # mean % of a core per node
        # every measured process's CPU per email (ms): what the machine pays for one email
        "all_ms": sum(meter.percent.values()) / 100 * elapsed / messages * 1000,
        # CPU of all nodes together per email sent (ms): what one email costs a node, SMTP path.
        "cpu_ms": sum(v for k, v in meter.percent.items() if k.startswith("node"))
        / 100
        * elapsed
        / messages
        * 1000,
    }


async def run(args: argparse.Namespace) -> int:
    header("Scale: pipeline processes on the same queues", args.quick)
    results: dict[int, dict[str, object]] = {}
    with localstack() as stack:
        async with SmtpStandIn(delay_s=args.provider_latency_ms / 1000) as smtp:
            for number, nodes in enumerate(args.nodes):
                results[nodes] = await one_run(
                    stack.endpoint_url,
                    nodes,
                    args.messages,
                    smtp,
                    stack.process.pid,
                    connections=args.connections,
                    flame=args.flame if number == 0 else None,
                )
    base = float(results[args.nodes[0]]["rate"])  # type: ignore[arg-type]
    cores = os.cpu_count() or 1
    latency_s = args.provider_latency_ms / 1000
    rows = []
    for n, r in results.items():
        rate = float(r["rate"])  # type: ignore[arg-type]
        cpu_ceiling = cores * 1000 / float(r["all_ms"])  # type: ignore[arg-type]
        # a node holds at most `connections` messages at the relay, each for latency_s
        latency_ceiling = n * args.connections / latency_s if latency_s else None
        rows.append(
            [n, rate, rate / base, r["calls"], r["cpu_ms"], r["node_share"], r["all_ms"]]
            + [cpu_ceiling, latency_ceiling if latency_ceiling else "-", r["cpu"]]
        )
    headers = ["processes", "emails/s", "ratio to 1", "SQS calls/email", "node CPU ms/email"]
    headers += ["% core per node", "all CPU ms/email", "CPU ceiling/s", "latency ceiling/s"]
    print(table([*headers, "CPU (% of a core)"], rows))
    most = max(results)
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    print(aws_cost_lines(results[most]["priced"], f"{most} nodes draining"))  # type: ignore[arg-type]
    print(
        f"summary: {most} processes {float(results[most]['rate']):,.0f} emails/s"  # type: ignore[arg-type]
        f" = ratio {float(results[most]['rate']) / base:.2f} of one process's {base:,.0f}/s;"  # type: ignore[arg-type]
        f" node CPU {float(results[args.nodes[0]]['cpu_ms']):.2f} ms per email (SMTP; target <="  # type: ignore[arg-type]
        f" 1); {args.messages:,} emails per run, SMTP stand-in answering after"
        f" {args.provider_latency_ms:g} ms, {args.connections} connections per node,"
        f" {len(results)} runs; load average {load}"
    )
    return 0


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--nodes", default=None, help="comma-separated process counts")
    parser.add_argument(
        "--provider-latency-ms", type=float, default=0.0, help="the SMTP stand-in's answer delay"
    )
    parser.add_argument(
        "--connections", type=int, default=16, help="SMTP connections per node (max_connections)"
    )
    parser.add_argument(
        "--flame", type=Path, default=None, help="py-spy flame graph of the first run's node"
    )
    args = parser.parse_args()
    default_sizes(args, messages=(100, 5_000), nodes=("1,2", "1,2,4"))
    args.nodes = [int(n) for n in args.nodes.split(",")]
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
