"""Soak: many emails at a steady rate through the whole system while faults switch on and off.

    .venv/bin/python -m bench.soak                      # 100,000 emails at 300/s (~6 min)
    .venv/bin/python -m bench.soak --emails 5000 --rate 200 --quick
    .venv/bin/python -m bench.soak --quick --status        # with the delivery store on (moto)

The system is the fault suite's (tests/faults/harness.py): LocalStack behind a TCP proxy, the
real `gomail api` process, real `pipeline` processes, the SMTP and SendGrid stand-ins. Every
`--fault-every` seconds the next fault in the cycle is switched on for `--fault-for` seconds:
SMTP failing, SendGrid hanging, the queue server cut, both providers failing. At the end it
prints the fault suite's counters: acknowledged, delivered, lost, duplicates, HTTP 500s, and
the API's answers by status (503s are expected while the queue server is cut).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import localstack
from bench.status_store import start_moto
from gomailpy_cli.api_client import post_emails
from tests.faults.harness import System, running_system
from tests.support import email_request

FAULTS = ("smtp fails", "sendgrid hangs", "queue server cut", "all providers fail")


async def set_fault(system: System, fault: str | None) -> None:
    system.smtp.set_mode("fail" if fault in ("smtp fails", "all providers fail") else "ok")
    system.sendgrid.set_mode(
        "hang" if fault == "sendgrid hangs" else "fail" if fault == "all providers fail" else "ok"
    )
    if fault == "queue server cut":
        await system.proxy.cut()
    else:
        await system.proxy.restore()


async def steady_load(system: System, total: int, rate: float, progress_every: int) -> None:
    """Post `total` emails at `rate` per second: a batch every 0.1 s, each posted on its own
    task so a slow answer (a fault) does not slow the rate down."""
    batch = max(1, int(rate / 10))
    started = time.monotonic()
    posting: set[asyncio.Task[None]] = set()
    sent = 0

    async def post(bodies: list[dict[str, object]]) -> None:
        tally = await post_emails(system.api_url, bodies, concurrency=8, timeout_s=60)
        system.tallies.append(tally)

    while sent < total:
        size = min(batch, total - sent)
        task = asyncio.create_task(post([email_request(sent + i) for i in range(size)]))
        posting.add(task)
        task.add_done_callback(posting.discard)
        sent += size
        if sent % progress_every < size:
            counts = system.counts()
            print(
                f"  {sent:>7} posted, {counts.acknowledged} acknowledged,"
                f" {counts.delivered} delivered so far",
                flush=True,
            )
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)
    await asyncio.gather(*posting)


async def cycle_faults(system: System, every_s: float, for_s: float, log: list[str]) -> None:
    number = 0
    while True:
        await asyncio.sleep(every_s)
        fault = FAULTS[number % len(FAULTS)]
        number += 1
        log.append(fault)
        print(f"  fault on: {fault}", flush=True)
        await set_fault(system, fault)
        await asyncio.sleep(for_s)
        await set_fault(system, None)
        print(f"  fault off: {fault}", flush=True)


async def soak(
    args: argparse.Namespace, endpoint: str, workdir: Path, status: dict[str, Any] | None
) -> int:
    async with running_system(endpoint, workdir, nodes=args.nodes, status=status) as system:
        faults: list[str] = []
        print(
            f"soak: {args.emails} emails at {args.rate}/s, {args.nodes} pipeline nodes,"
            f" delivery status {'on (DynamoDB on moto)' if status else 'off'};"
            f" a fault every {args.fault_every} s for {args.fault_for} s",
            flush=True,
        )
        started = time.monotonic()
        faulting = asyncio.create_task(
            cycle_faults(system, args.fault_every, args.fault_for, faults)
        )
        try:
            await steady_load(system, args.emails, args.rate, max(1000, args.emails // 20))
        finally:
            faulting.cancel()
            await asyncio.gather(faulting, return_exceptions=True)
            await set_fault(system, None)
        await redrive_until_delivered(system)
        elapsed = time.monotonic() - started
        counts = system.counts()
        statuses: Counter[int] = Counter()
        for tally in system.tallies:
            statuses.update(tally.statuses)
        print()
        print(f"{'what':<28}{'count':>10}")
        for name, value in [
            ("posted", args.emails),
            ("acknowledged (200)", counts.acknowledged),
            ("refused 503 (queue cut)", statuses.get(503, 0)),
            ("delivered", counts.delivered),
            ("lost", counts.lost),
            ("duplicates", counts.duplicates),
            ("HTTP 500", counts.http_500),
        ]:
            print(f"{name:<28}{value:>10}")
        print(
            f"summary: {counts.acknowledged} acknowledged, {counts.delivered} delivered,"
            f" lost {counts.lost}, duplicates {counts.duplicates}, HTTP 500 {counts.http_500};"
            f" faults {len(faults)}; {elapsed:.0f} s"
            f" (delivered/acknowledged ratio {counts.delivered / max(1, counts.acknowledged):.4f})"
        )
        return 1 if counts.lost or counts.http_500 else 0


async def redrive_until_delivered(system: System, rounds: int = 10) -> None:
    """Wait for delivery; what reached a dead-letter queue during faults is redriven."""
    for _ in range(rounds):
        await system.wait_delivered(timeout_s=60)
        if system.counts().lost == 0:
            return
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gomailpy_cli.main",
            "dlq",
            "redrive",
            "--config",
            str(system.config),
            env=system.env(),
            stdout=asyncio.subprocess.PIPE,
        )
        print("  " + (await process.communicate())[0].decode().strip(), flush=True)


def wait_listening(url: str, timeout_s: float = 20.0) -> None:
    """Wait until moto's server takes connections (it needs a moment to start)."""
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emails", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--fault-every", type=float, default=30.0)
    parser.add_argument("--fault-for", type=float, default=8.0)
    parser.add_argument("--quick", action="store_true", help="2,000 emails, faults every 5 s")
    parser.add_argument(
        "--status", action="store_true", help="delivery status on (DynamoDB on moto's server)"
    )
    args = parser.parse_args()
    if args.quick:
        args.emails, args.rate, args.fault_every, args.fault_for = 2000, 200.0, 4.0, 2.0
    moto = start_moto() if args.status else None
    if moto:
        wait_listening(moto[1])
    try:
        status = (
            {"backend": "dynamodb", "endpoint_url": moto[1], "table": "soak-status"}
            if moto
            else None
        )
        with localstack() as stack, tempfile.TemporaryDirectory() as workdir:
            return asyncio.run(soak(args, stack.endpoint_url, Path(workdir), status))
    finally:
        if moto:
            moto[0].terminate()
            moto[0].wait(10)


if __name__ == "__main__":
    sys.exit(main())
