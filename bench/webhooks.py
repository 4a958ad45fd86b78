"""Webhooks: events delivered per second to a local receiver, against that receiver's ceiling.

    .venv/bin/python -m bench.webhooks [--quick] [--events N] [--concurrency C]

1. ceiling: this process POSTs N signed requests straight to a local receiver (gomail up's,
   which verifies each with `standardwebhooks`), C at once: the most requests/s it takes.
2. deliverer: N events published through the outbox onto a webhook queue (on this script's
   LocalStack) beforehand; one WebhookDeliverer (pipeline.webhooks) with an endpoint of
   concurrency C takes them off, signs, POSTs and deletes. Time until the receiver has all N.
3. the same with `batch: true` (arrays of up to 100 events): events/s, for comparison.
4. ceiling again (the machine is noisy: the ratio uses the mean of both).
5. for scale: the webhook queue's own receive + delete rate for N deliveries, no HTTP at all
   (one-event deliveries cannot go faster than their queue).
The receiver runs in this process in every run, so each run pays for it alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid

import aiohttp

from bench.common import (
    bench_parser,
    bench_settings,
    default_sizes,
    header,
    localstack,
    table,
)
from gomailpy.config.settings import Settings
from gomailpy.config.webhooks import WebhookEndpointSettings, secret_key
from gomailpy.events import Event, EventType, iso
from gomailpy.queues.sqs import create_queue_client
from gomailpy.webhooks.outbox import Delivery, Outbox, deliveries
from gomailpy.webhooks.queue import ensure_webhook_queue
from gomailpy.webhooks.signing import signed_headers
from gomailpy.webhooks.state import MemoryEndpointStates
from gomailpy_local.receiver import WebhookReceiver
from pipeline.webhooks import WebhookDeliverer


def events(count: int) -> list[Event]:
    run = uuid.uuid4().hex[:8]
    return [
        Event(
            id=f"{run}-{n}",
            message_id=f"email-{n}",
            recipient=f"rcpt{n}@example.org",
            provider="ses",
            type=EventType.BOUNCED if n % 20 == 0 else EventType.DELIVERED,
            at=iso(time.time()),
            mta_response="250 2.0.0 OK",
        )
        for n in range(count)
    ]


def settings_for(
    endpoint: str, receiver: WebhookReceiver, concurrency: int, batch: bool
) -> Settings:
    return bench_settings(
        endpoint,
        queue_count=1,
        queues={"wait_time_s": 1},
        webhooks={
            "enabled": True,
            "queue": f"hooks-{uuid.uuid4().hex[:8]}",
            "allow_loopback_targets": True,  # the receiver is on 127.0.0.1
            "consumers": 8,
            "endpoints": [
                {"name": "bench", "url": receiver.url, "concurrency": concurrency, "batch": batch}
            ],
            "secrets": json.dumps({"bench": receiver.secret}),
        },
    )


async def ceiling(receiver: WebhookReceiver, count: int, concurrency: int) -> float:
    """Signed POSTs straight to the receiver, `concurrency` at once."""
    endpoint = WebhookEndpointSettings(name="bench", url=receiver.url)
    made: list[Delivery] = deliveries([endpoint], events(count), time.time())
    key = secret_key(receiver.secret)
    before = len(receiver.events)
    todo = list(made)
    async with aiohttp.ClientSession() as session:

        async def poster() -> None:
            while todo:
                delivery = todo.pop()
                body = delivery.body.encode()
                headers = signed_headers([key], delivery.webhook_id, int(time.time()), body)
                async with session.post(receiver.url, data=body, headers=headers) as response:
                    assert response.status < 300, response.status

        started = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    assert len(receiver.events) - before == count
    return count / elapsed


async def queue_ceiling(settings: Settings, count: int, drainers: int) -> float:
    """Receive (10) + DeleteMessageBatch of `count` preloaded deliveries, no HTTP: the most the
    webhook queue lets anyone take (what bounds one-event deliveries here)."""
    await ensure_webhook_queue(settings)
    taken = 0
    async with create_queue_client(settings) as queues:
        await Outbox(settings, queues).publish(events(count))
        url = await queues.resolve(settings.webhooks.queue)

        async def drainer() -> None:
            nonlocal taken
            while taken < count:
                messages = await queues.receive(url, wait_time_s=0)
                taken += len(messages)
                if messages:
                    await queues.delete_batch(url, [m.receipt_handle for m in messages])

        started = time.perf_counter()
        await asyncio.gather(*(drainer() for _ in range(drainers)))
        return taken / (time.perf_counter() - started)


async def deliver(settings: Settings, receiver: WebhookReceiver, count: int) -> float:
    await ensure_webhook_queue(settings)
    async with create_queue_client(settings) as queues:
        outbox = Outbox(settings, queues)
        batch = events(count)
        limit = asyncio.Semaphore(8)

        async def put(start: int) -> None:
            async with limit:
                await outbox.publish(batch[start : start + 100])

        await asyncio.gather(*(put(start) for start in range(0, count, 100)))
        before = len(receiver.events)
        deliverer = WebhookDeliverer(settings, queues, MemoryEndpointStates())
        started = time.perf_counter()
        async with deliverer:
            while len(receiver.events) - before < count:
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - started
    return count / elapsed


async def run(args: argparse.Namespace) -> int:
    header("webhooks: events delivered per second vs the receiver's ceiling", args.quick)
    with localstack() as stack:
        async with WebhookReceiver(keep=10 * args.events) as receiver:
            endpoint = stack.endpoint_url
            before = await ceiling(receiver, args.events, args.concurrency)
            one = await deliver(
                settings_for(endpoint, receiver, args.concurrency, False), receiver, args.events
            )
            batched = await deliver(
                settings_for(endpoint, receiver, args.concurrency, True), receiver, args.events
            )
            after = await ceiling(receiver, args.events, args.concurrency)
            sqs = await queue_ceiling(
                settings_for(endpoint, receiver, args.concurrency, False), args.events, 8
            )
    rate = (before + after) / 2
    print(
        table(
            ["run", "events/s", "ratio"],
            [
                ["ceiling: signed POSTs straight to the receiver, before", before, before / rate],
                ["deliverer: queue -> sign -> POST -> delete, one event each", one, one / rate],
                ["deliverer, batch: true (arrays of up to 100)", batched, batched / rate],
                ["ceiling, after", after, after / rate],
                ["for scale: the webhook queue's receive + delete, no HTTP", sqs, sqs / rate],
            ],
        )
    )
    print(
        f"summary: webhooks {one:,.0f} events/s = ratio {one / rate:.2f} of the receiver's ceiling"
        f" {rate:,.0f}/s ({args.concurrency} at once); batched {batched:,.0f} events/s; the"
        f" queue's own receive+delete {sqs:,.0f}/s; {args.events:,} events per run"
    )
    return 0


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--events", type=int, default=None, help="events per run")
    parser.add_argument("--concurrency", type=int, default=16, help="requests at once")
    args = parser.parse_args()
    default_sizes(args, events=(200, 3_000))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
