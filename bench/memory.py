"""Memory: RSS of the API and of a pipeline node while many emails go through; it must stay flat.

    .venv/bin/python -m bench.memory               # 100,000 emails
    .venv/bin/python -m bench.memory --quick       # 6,000

The system is the fault suite's (tests/faults/harness.py): a `gomail api` process and one
`pipeline` process on LocalStack, sending to the SMTP and SendGrid stand-ins. After a warm-up
(imports, connection pools, caches filled), RSS is read from /proc at checkpoints; the summary
is the ratio of the last reading to the one after the warm-up (1.00 = flat).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from bench.common import localstack
from gomailpy_cli.api_client import post_emails
from tests.faults.harness import System, running_system
from tests.support import email_request


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def push(system: System, start: int, count: int) -> None:
    """Post `count` emails and wait until all were delivered (the stand-ins are cleared)."""
    bodies = [email_request(start + i) for i in range(count)]
    tally = await post_emails(system.api_url, bodies, concurrency=32, timeout_s=60)
    system.tallies = [tally]
    await system.wait_delivered(timeout_s=600)
    counts = system.counts()
    if counts.lost:
        raise SystemExit(f"{counts.lost} emails not delivered: stopping")
    # The stand-ins keep what they received; forget it so the bench process stays small too.
    system.smtp.clear()
    system.sendgrid.clear()


async def measure(args: argparse.Namespace, endpoint: str, workdir: Path) -> None:
    async with running_system(endpoint, workdir, nodes=1, logging={"level": "WARNING"}) as system:
        assert system.api is not None
        api_pid, node_pid = system.api.pid, system.nodes[0].pid
        rows = [("started", 0, rss_mib(api_pid), rss_mib(node_pid))]
        await push(system, 0, args.warmup)
        rows.append(("after warm-up", args.warmup, rss_mib(api_pid), rss_mib(node_pid)))
        sent = 0
        step = max(1, args.emails // args.checkpoints)
        while sent < args.emails:
            count = min(step, args.emails - sent)
            await push(system, args.warmup + sent, count)
            sent += count
            rows.append(("", args.warmup + sent, rss_mib(api_pid), rss_mib(node_pid)))
            print(f"  {sent:>7} of {args.emails} delivered", flush=True)
    print()
    print(f"{'checkpoint':<16}{'emails':>9}{'API RSS MiB':>13}{'node RSS MiB':>14}")
    for label, emails, api, node in rows:
        print(f"{label:<16}{emails:>9,}{api:>13.1f}{node:>14.1f}")
    _, _, api_warm, node_warm = rows[1]
    _, _, api_end, node_end = rows[-1]
    print(
        f"summary: after {args.emails:,} more emails, API RSS ratio {api_end / api_warm:.2f}"
        f" ({api_warm:.0f} -> {api_end:.0f} MiB), node RSS ratio {node_end / node_warm:.2f}"
        f" ({node_warm:.0f} -> {node_end:.0f} MiB) to the warmed-up reading (1.00 = flat)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emails", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--checkpoints", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="6,000 emails after 1,000")
    args = parser.parse_args()
    if args.quick:
        args.emails, args.warmup, args.checkpoints = 6_000, 1_000, 3
    with localstack() as stack, tempfile.TemporaryDirectory() as workdir:
        asyncio.run(measure(args, stack.endpoint_url, Path(workdir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
