"""CPU per email of each provider path in a node's process: SES raw MIME, SendGrid JSON, SMTP.

    .venv/bin/python -m bench.provider_cpu [--quick] [--emails 2000] [--concurrency 16]

Each provider (gomailpy.providers, as `open_providers` builds them for a node) sends the same
typical emails with `--concurrency` sends at a time; the CPU this process spent per email is
the provider path's own cost (building the message, encoding, the client, the socket work):
- SES: SendRawEmail (raw MIME) to LocalStack's SES (a process of its own);
- SendGrid: JSON to the SendGrid stand-in, served by a child process;
- SMTP: a MIME message over pooled connections to the SMTP stand-in, same child process.
The stand-ins and LocalStack run outside this process, so their CPU is not counted here; it is
shown beside (CPU % of a core while each path ran).

Reference in the same run: the cheapest path's CPU per email (ratios to it), and the pipeline
target of 1 ms per email for the whole node (issue 27).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from contextlib import AsyncExitStack

from bench.common import (
    CpuMeter,
    bench_parser,
    bench_settings,
    default_sizes,
    header,
    localstack,
    table,
)
from gomailpy.email.envelope import Envelope
from gomailpy.providers import open_providers
from gomailpy.providers.base import Outcome, Provider
from gomailpy.queues.aws import open_aws_client
from tests.support import make_envelope

# The child serving the stand-ins: prints their ports as one JSON line, serves until stdin ends.
STANDINS = """
import asyncio, json, sys
from gomailpy_local.standins import SmtpStandIn
from gomailpy_local.standins.sendgrid import SendGridStandIn

async def main():
    smtp, sendgrid = SmtpStandIn(), SendGridStandIn(api_key="bench-key")
    await smtp.start()
    await sendgrid.start()
    print(json.dumps({"smtp": smtp.port, "sendgrid": sendgrid.port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


async def send_all(provider: Provider, envelopes: list[Envelope], concurrency: int) -> int:
    """Send every envelope, `concurrency` at a time; the number accepted."""
    limit = asyncio.Semaphore(concurrency)
    accepted = 0

    async def one(envelope: Envelope) -> None:
        nonlocal accepted
        async with limit:
            result = await provider.send(envelope)
        if result.outcome is Outcome.ACCEPTED:
            accepted += 1
        else:
            raise SystemExit(f"{provider.name} refused an email: {result.reason}")

    await asyncio.gather(*(one(envelope) for envelope in envelopes))
    return accepted


async def run(args: argparse.Namespace) -> int:
    header("Provider paths: CPU per email in a node's process", args.quick)
    child = subprocess.Popen(
        [sys.executable, "-c", STANDINS], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdout is not None and child.stdin is not None
    ports = json.loads(child.stdout.readline())
    rows: list[list[object]] = []
    per_email: dict[str, float] = {}
    try:
        with localstack() as stack:
            settings = bench_settings(
                stack.endpoint_url,
                queue_count=1,
                providers=[  # type: ignore[arg-type]
                    {"name": "ses", "kind": "ses", "enabled": True},
                    {
                        "name": "sendgrid",
                        "kind": "sendgrid",
                        "enabled": True,
                        "base_url": f"http://127.0.0.1:{ports['sendgrid']}",
                        "api_key": "bench-key",
                        "max_connections": args.concurrency,
                    },
                    {
                        "name": "smtp",
                        "kind": "smtp",
                        "enabled": True,
                        "host": "127.0.0.1",
                        "port": ports["smtp"],
                        "max_connections": args.concurrency,
                    },
                ],
            )
            async with AsyncExitStack() as exits:
                ses = await open_aws_client(exits, "ses", settings.aws)
                await ses.verify_domain_identity(Domain="example.com")
                providers = await open_providers(exits, settings)
                meter = CpuMeter(
                    {"localstack": stack.process.pid, "stand-ins": child.pid, "bench": None}
                )
                for name, path in (
                    ("ses", "SES SendRawEmail (raw MIME)"),
                    ("sendgrid", "SendGrid v3 JSON"),
                    ("smtp", "SMTP, pooled connections"),
                ):
                    provider = providers[name]
                    warm = [make_envelope(n) for n in range(args.concurrency)]
                    await send_all(provider, warm, args.concurrency)  # connections open
                    envelopes = [make_envelope(n) for n in range(args.emails)]
                    meter.start()
                    cpu = time.process_time()
                    started = time.perf_counter()
                    sent = await send_all(provider, envelopes, args.concurrency)
                    elapsed = time.perf_counter() - started
                    cpu = time.process_time() - cpu
                    meter.stop()
                    per_email[name] = cpu / sent * 1000
                    rows.append([path, sent / elapsed, per_email[name], sent, meter.text()])
    finally:
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()
        child.wait(30)
    cheapest = min(per_email.values())
    for row, name in zip(rows, per_email, strict=True):
        row.insert(3, per_email[name] / cheapest)
    headers = ["path", "emails/s", "CPU ms/email", "ratio to cheapest", "emails", "CPU"]
    print(table(headers, rows))
    parts = ", ".join(f"{name} {ms:.2f} ms" for name, ms in per_email.items())
    print(
        f"summary: CPU per email in the node's process by provider path: {parts}"
        f" (SMTP ratio {per_email['smtp'] / cheapest:.2f} to the cheapest); {args.emails:,}"
        f" emails each, {args.concurrency} at a time"
    )
    return 0


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--emails", type=int, default=None, help="emails per provider")
    parser.add_argument("--concurrency", type=int, default=16, help="sends at a time")
    args = parser.parse_args()
    default_sizes(args, emails=(100, 2000))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
