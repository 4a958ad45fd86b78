"""The webhook queue's set-up and its dead-letter queue, for operators.

    await ensure_webhook_queue(settings)       # gomail init / gomail up: the queue and its DLQ
    moved = await redrive(queues, settings)    # gomail webhooks redrive: back on the queue

The webhook queue's redrive policy allows SQS's most receives (1000): the deliverer itself
decides when a delivery has been tried long enough (`webhooks.max_age_s`), so SQS must not move
it sooner. A redriven delivery keeps its webhook-id (receivers that got it dedupe) and starts
its age again, so it gets a full `max_age_s` of retries.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from gomailpy.config.settings import Settings
from gomailpy.queues.deadletter import FAILURE_PROVIDER, FAILURE_REASON
from gomailpy.queues.sqs import QueueClient, create_queue_client, queue_name
from gomailpy.webhooks.outbox import Delivery

MAX_RECEIVES = 1000  # SQS's highest maxReceiveCount


async def ensure_webhook_queue(settings: Settings) -> str:
    """Create the webhook queue and its dead-letter queue (safe to run again); say what is ready."""
    queues_settings = settings.queues.model_copy(update={"max_receive_count": MAX_RECEIVES})
    own = settings.model_copy(update={"queues": queues_settings})
    async with create_queue_client(own) as queues:
        url = await queues.ensure_queue(settings.webhooks.queue)
    name = queue_name(url)
    return f"webhook queue {url} (dead-letter queue: {name}{settings.queues.dlq_suffix})"


@dataclasses.dataclass(frozen=True, slots=True)
class HeldBack:
    delivery: Delivery
    reason: str
    endpoint: str


async def peek_dead_letters(
    queues: QueueClient, settings: Settings, limit: int = 100
) -> list[HeldBack]:
    """What is in the webhook dead-letter queue, left there."""
    url = await queues.resolve(settings.webhooks.queue)
    dlq = await queues.dead_letter_url(url)
    seen: dict[str, HeldBack] = {}
    while len(seen) < limit:
        batch = await queues.receive(dlq, wait_time_s=0, visibility_timeout_s=30)
        if batch:  # a peek leaves them as they were
            await queues.change_visibility_batch(dlq, [(m.receipt_handle, 0) for m in batch])
        fresh = [m for m in batch if m.sqs_message_id not in seen]
        if not fresh:
            break
        for message in fresh:
            try:
                delivery = Delivery.decode(message.body)
            except ValueError:
                continue
            reason = message.attributes.get(FAILURE_REASON, "received too many times")
            endpoint = message.attributes.get(FAILURE_PROVIDER, "").removeprefix("webhook:")
            seen[message.sqs_message_id] = HeldBack(delivery, reason, endpoint)
    return list(seen.values())[:limit]


async def redrive(
    queues: QueueClient,
    settings: Settings,
    *,
    endpoint: str | None = None,
    limit: int | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Move deliveries from the webhook dead-letter queue back to the webhook queue (those of
    `endpoint` only, if given); each is put back before it is deleted. Returns how many."""
    url = await queues.resolve(settings.webhooks.queue)
    dlq = await queues.dead_letter_url(url)
    moved = 0
    skipped: set[str] = set()
    leave: list[str] = []  # receipt handles held (invisible) until the end, then released
    while limit is None or moved < limit:
        batch = await queues.receive(dlq, wait_time_s=0, visibility_timeout_s=30)
        batch = [m for m in batch if m.sqs_message_id not in skipped]
        if not batch:
            break
        done = []
        for message in batch:
            try:
                delivery = Delivery.decode(message.body)
            except ValueError:
                skipped.add(message.sqs_message_id)
                leave.append(message.receipt_handle)
                continue
            wanted = endpoint is None or delivery.endpoint == endpoint
            if not wanted or (limit is not None and moved >= limit):
                skipped.add(message.sqs_message_id)
                leave.append(message.receipt_handle)
                continue
            fresh = dataclasses.replace(delivery, published_at=float(clock()))
            await queues.send(url, fresh.encode())
            done.append(message.receipt_handle)
            moved += 1
        if done:
            await queues.delete_batch(dlq, done)
    if leave:
        await queues.change_visibility_batch(dlq, [(handle, 0) for handle in leave])
    return moved
