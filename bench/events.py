"""Events: the event consumer against the events queue's own receive+delete ceiling, and what the
suppression check costs per email.

    .venv/bin/python -m bench.events [--quick] [--events N] [--consumers C] [--emails M]

1. ceiling: N SES-shaped reports (SNS envelopes: 95 % Delivery, 5 % Bounce) preloaded on an
   events queue; C concurrent drainers take them off with ReceiveMessage (10) +
   DeleteMessageBatch: the most reports/s the server lets anyone take.
2. consumer: N reports again; one EventConsumer (pipeline.feedback) with `events.consumers = C`
   parses, records (outcome store and suppression list in memory: this measures the consumer,
   not DynamoDB) and deletes them. Time until all N are recorded.
3. ceiling again (the machine is noisy: the ratio uses the mean of both).
4. suppression check: M emails through a PipelineNode whose screen (pipeline.prepare.suppress) reads
   a list holding 10 % of their recipients; store calls per email checked (target <= 0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from contextlib import AsyncExitStack

from bench.common import (
    bench_parser,
    bench_settings,
    default_sizes,
    header,
    localstack,
    table,
)
from gomailpy.config.settings import Settings
from gomailpy.queues.sqs import create_queue_client
from gomailpy.store.events import MemoryEventStore
from gomailpy.store.suppressions import MemorySuppressionStore, manual
from pipeline.feedback import EventConsumer
from pipeline.node import PipelineNode
from pipeline.prepare.suppress import RecipientScreen
from tests.boundary import ScriptedProvider
from tests.support import make_envelope


def report(n: int) -> str:
    """An SES event as SNS puts it on the events queue."""
    recipient = f"rcpt{n}@example.org"
    mail = {
        "timestamp": "2026-11-28T07:00:00.000Z",
        "messageId": f"ses-{n}",
        "destination": [recipient],
        "tags": {"gomailpy-id": [f"email-{n}"]},
    }
    if n % 20 == 0:
        message = {
            "eventType": "Bounce",
            "mail": mail,
            "bounce": {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [{"emailAddress": recipient, "diagnosticCode": "550 5.1.1"}],
                "timestamp": "2026-11-28T07:00:01.000Z",
            },
        }
    else:
        message = {
            "eventType": "Delivery",
            "mail": mail,
            "delivery": {
                "recipients": [recipient],
                "smtpResponse": "250 2.0.0 OK",
                "timestamp": "2026-11-28T07:00:01.000Z",
            },
        }
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": "arn:aws:sns:us-east-1:000000000000:gomailpy-ses-events",
            "Message": json.dumps(message),
        }
    )


async def preload(settings: Settings, count: int) -> str:
    async with create_queue_client(settings) as queues:
        url = await queues.ensure_queue(settings.events.queue)
        limit = asyncio.Semaphore(16)

        async def put(start: int) -> None:
            async with limit:
                entries = [(str(i), report(start + i)) for i in range(min(10, count - start))]
                result = await queues.send_batch(url, entries)
                assert not result.failed, result.failed

        await asyncio.gather(*(put(start) for start in range(0, count, 10)))
    return url


async def ceiling(settings: Settings, count: int, drainers: int) -> float:
    url = await preload(settings, count)
    taken = 0
    async with create_queue_client(settings) as queues:

        async def drainer() -> None:
            nonlocal taken
            while taken < count:
                messages = await queues.receive(url, wait_time_s=0)
                if messages:
                    taken += len(messages)
                    await queues.delete_batch(url, [m.receipt_handle for m in messages])

        started = time.perf_counter()
        await asyncio.gather(*(drainer() for _ in range(drainers)))
        return taken / (time.perf_counter() - started)


async def consume(settings: Settings, count: int) -> float:
    await preload(settings, count)
    suppression = MemorySuppressionStore(settings.suppression)
    async with create_queue_client(settings) as queues:
        consumer = EventConsumer(
            settings, queues, outcomes=MemoryEventStore(), suppression=suppression
        )
        started = time.perf_counter()
        async with consumer:
            while consumer.recorded < count:
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - started
    return count / elapsed


async def check_cost(settings: Settings, emails: int) -> tuple[float, int, int]:
    """(store calls per email, emails checked, emails sent) over a node's own batching."""
    suppression = MemorySuppressionStore(settings.suppression)
    for n in range(0, emails, 10):
        await suppression.put(manual(f"rcpt{n}@example.org", "bench", time.time()))
    provider = ScriptedProvider("boundary")
    async with AsyncExitStack() as stack:
        queues = await stack.enter_async_context(create_queue_client(settings))
        [url] = [await queues.ensure_queue(q) for q in settings.queues.urls]
        for start in range(0, emails, 10):
            batch = [(str(i), make_envelope(start + i).encode()) for i in range(10)]
            await queues.send_batch(url, batch)
        node = await stack.enter_async_context(PipelineNode(settings, queues, {"p": provider}))
        screen = RecipientScreen(suppression)
        node.steps = [screen]
        while screen.emails < emails:
            await node.run_iteration()
    return suppression.calls / max(screen.emails, 1), screen.emails, len(provider.accepted)


async def run(args: argparse.Namespace) -> int:
    header("Events: the consumer vs the events queue's receive+delete ceiling", args.quick)
    with localstack() as stack:
        endpoint = stack.endpoint_url

        def settings() -> Settings:
            return bench_settings(
                endpoint,
                queue_count=1,
                events={
                    "enabled": True,
                    "queue": f"events-{uuid.uuid4().hex[:8]}",
                    "consumers": args.consumers,
                },
                queues={"wait_time_s": 1},
            )

        before = await ceiling(settings(), args.events, args.consumers)
        consumer = await consume(settings(), args.events)
        after = await ceiling(settings(), args.events, args.consumers)
        per_email, checked, sent = await check_cost(
            bench_settings(
                endpoint,
                queue_count=1,
                pipeline={"min_iteration_duration_s": 0, "max_in_flight": 500},
                queues={"wait_time_s": 0},
            ),
            args.emails,
        )
    ceiling_rate = (before + after) / 2
    print(
        table(
            ["run", "reports/s", "ratio"],
            [
                ["ceiling: receive + delete batch, before", before, before / ceiling_rate],
                [
                    "event consumer (parse, record, suppress, delete)",
                    consumer,
                    consumer / ceiling_rate,
                ],
                ["ceiling: receive + delete batch, after", after, after / ceiling_rate],
            ],
        )
    )
    print(
        f"suppression check: {per_email:.3f} store calls per email ({checked:,} emails checked,"
        f" {checked - sent:,} dropped as suppressed)"
    )
    print(
        f"summary: consumer {consumer:,.0f} events/s = ratio {consumer / ceiling_rate:.2f} of the"
        f" receive+delete ceiling {ceiling_rate:,.0f}/s (target >= 0.80); suppression check"
        f" {per_email:.3f} store calls per email (target <= 0.10); {args.events:,} events per run"
    )
    return 0


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--events", type=int, default=None, help="reports per run")
    parser.add_argument("--emails", type=int, default=None, help="emails for the check's cost")
    parser.add_argument("--consumers", type=int, default=8, help="events.consumers and drainers")
    args = parser.parse_args()
    default_sizes(args, events=(200, 10_000), emails=(200, 5_000))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
