"""The webhook outbox: events become messages on the webhook queue, one per delivery to make.

    outbox = Outbox(settings, queues)
    await outbox.publish(events)           # QueueError if the queue did not take them all
    await outbox.publish_sends(sends)      # settlement's sent / failed; logs, never raises

Concurrent publishes share their SendMessageBatch calls (gomailpy.batching: up to 10 deliveries
a call; a partial call leaves when fewer than two are under way): a node settles in chunks of
a few emails and the event consumer records a report at a time, and one call per publish was
most of the webhook queue's calls. A delivery the queue refused fails only its own publish.

A `Delivery` is what one webhook request carries: the endpoint's name, the `webhook-id`, the
body (the exact bytes signed, the same on every attempt) and when it was published (its age
decides when retries end). Endpoints get one delivery per event, or with `batch: true` one per
publish call holding up to `batch_max_events` events as a JSON array (SendGrid's shape).

A body per event follows the Standard Webhooks payload: `{"type": "email.bounced", "timestamp":
<the event's time>, "data": <the event, as GET /email/{id} shows it>}`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gomailpy import metrics
from gomailpy.batching import Batcher, settled
from gomailpy.config.settings import Settings
from gomailpy.config.webhooks import WebhookEndpointSettings
from gomailpy.email.envelope import Envelope
from gomailpy.errors import QueueError, StoreError
from gomailpy.events import Event, EventType, iso, stable_id
from gomailpy.providers.base import Outcome, SendResult
from gomailpy.queues.sqs import QueueClient
from gomailpy.store.backends import EventStores
from gomailpy.store.events import EventStore

log = logging.getLogger("gomailpy.webhooks")

VERSION = 1
SEND_BATCH = 10  # deliveries per SendMessageBatch, SQS's limit
SEND_MAX_CALLS = 2  # partial calls under way at once before the next waits (Nagle's rule)
SEND_LINGER_S = 0.002  # how long a quiet publish waits for others to share its call
MAX_BODY_BYTES = 200_000  # a delivery's body, so that its message stays under SQS's 256 KiB
MAX_RAW_BYTES = 4096  # of a provider's own report carried in `data.raw`


@dataclass(frozen=True, slots=True)
class Delivery:
    endpoint: str
    webhook_id: str
    body: str
    published_at: float  # epoch s; a redrive restarts it
    events: int = 1

    def encode(self) -> str:
        return json.dumps(
            {
                "v": VERSION,
                "endpoint": self.endpoint,
                "id": self.webhook_id,
                "publishedAt": self.published_at,
                "events": self.events,
                "body": self.body,
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str) -> Delivery:
        """ValueError when `text` is not a delivery this version can make."""
        try:
            data = json.loads(text)
            if data.get("v") != VERSION:
                raise ValueError(f"unknown version {data.get('v')!r}")
            return cls(
                endpoint=str(data["endpoint"]),
                webhook_id=str(data["id"]),
                body=str(data["body"]),
                published_at=float(data["publishedAt"]),
                events=int(data.get("events", 1)),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a webhook delivery: {exc}") from None


def payload(event: Event) -> dict[str, Any]:
    data = event.to_json()
    if len(json.dumps(data["raw"])) > MAX_RAW_BYTES:
        data["raw"] = {"truncated": True}
    return {"type": f"email.{event.type.value}", "timestamp": event.at, "data": data}


def webhook_id(endpoint: str, event_ids: Sequence[str]) -> str:
    """Stable for the same endpoint and events: every attempt and redelivery carries it."""
    return "msg_" + stable_id("webhook", endpoint, *sorted(event_ids))


def deliveries(
    endpoints: Sequence[WebhookEndpointSettings], events: Sequence[Event], now: float
) -> list[Delivery]:
    """The deliveries `events` make for `endpoints` (see the module's docstring)."""
    made: list[Delivery] = []
    for endpoint in endpoints:
        wanted = [e for e in events if endpoint.wants(e.type)]
        if not endpoint.batch:
            for event in wanted:
                body = json.dumps(payload(event), separators=(",", ":"))
                made.append(
                    Delivery(endpoint.name, webhook_id(endpoint.name, [event.id]), body, now)
                )
            continue
        chunk: list[Event] = []
        bodies: list[str] = []
        size = 2
        for event in wanted:
            body = json.dumps(payload(event), separators=(",", ":"))
            if chunk and (
                len(chunk) >= endpoint.batch_max_events or size + len(body) > MAX_BODY_BYTES
            ):
                made.append(_batch(endpoint.name, chunk, bodies, now))
                chunk, bodies, size = [], [], 2
            chunk.append(event)
            bodies.append(body)
            size += len(body) + 1
        if chunk:
            made.append(_batch(endpoint.name, chunk, bodies, now))
    return made


def _batch(endpoint: str, events: list[Event], bodies: list[str], now: float) -> Delivery:
    ids = [e.id for e in events]
    return Delivery(
        endpoint, webhook_id(endpoint, ids), "[" + ",".join(bodies) + "]", now, len(ids)
    )


def send_events(
    sends: Sequence[tuple[Envelope, int, SendResult]], last_delivery: int, now: float
) -> list[Event]:
    """gomailpy's own events for a batch of send outcomes (envelope, deliveries so far, result):
    `sent` per recipient when a provider accepted it, `failed` per recipient when it was
    refused for good or that was its last delivery, and what the provider learnt of single
    recipients (`SendResult.events`)."""
    made: list[Event] = []
    for envelope, deliveries_so_far, result in sends:
        made += result.events
        if result.outcome is Outcome.ACCEPTED:
            kind, reason = EventType.SENT, None
        elif result.outcome is Outcome.PERMANENT or deliveries_so_far >= last_delivery:
            kind, reason = EventType.FAILED, f"{result.outcome.value}: {result.reason}"
        else:
            continue
        for address in envelope.email.recipients:
            made.append(
                Event(
                    id=stable_id(envelope.id, address.email.lower(), kind.value),
                    message_id=envelope.id,
                    recipient=address.email,
                    provider=result.provider,
                    type=kind,
                    at=iso(now),
                    reason=reason,
                    provider_message_id=result.provider_message_id,
                )
            )
    return made


class Outbox:
    """Puts deliveries on the webhook queue (see the module's docstring)."""

    def __init__(self, settings: Settings, queues: QueueClient, *, clock: Any = time.time) -> None:
        self._settings = settings
        self._queues = queues
        self._clock = clock
        self._sends: Batcher[str, None] = Batcher(
            self._send, size=SEND_BATCH, max_calls=SEND_MAX_CALLS, linger_s=SEND_LINGER_S
        )

    async def _send(self, bodies: list[str]) -> list[None | BaseException]:
        """One SendMessageBatch for deliveries of any publishes: an entry the queue refused
        fails its own delivery only."""
        queue = self._settings.webhooks.queue
        url = await self._queues.resolve(queue)
        result = await self._queues.send_batch(url, [(str(i), b) for i, b in enumerate(bodies)])
        return [
            QueueError(queue, "send_message_batch", result.failed[str(i)])
            if str(i) in result.failed
            else None
            for i in range(len(bodies))
        ]

    async def publish(self, events: Sequence[Event]) -> int:
        """Put the deliveries of `events` on the webhook queue (calls shared with concurrent
        publishes; one retry of what it refused); return how many. QueueError if some could
        not be put."""
        webhooks = self._settings.webhooks
        made = deliveries(webhooks.endpoints, events, self._clock())
        if not made:
            return 0
        todo = [d.encode() for d in made]
        failed: list[BaseException] = []
        for _ in range(2):
            outcomes = await settled(self._sends.submit_many(todo))
            failed = [o for o in outcomes if isinstance(o, BaseException)]
            todo = [b for b, o in zip(todo, outcomes, strict=True) if isinstance(o, BaseException)]
            if not todo:
                break
        if todo:
            reasons = "; ".join(sorted({str(getattr(e, "reason", e)) for e in failed}))
            raise QueueError(
                webhooks.queue, "send_message_batch", f"{len(todo)} not taken: {reasons}"
            )
        for delivery in made:
            metrics.WEBHOOKS_PUBLISHED.labels(delivery.endpoint).inc(delivery.events)
        return len(made)

    async def publish_sends(self, sends: Sequence[tuple[Envelope, int, SendResult]]) -> None:
        """Publish settlement's events; a failure is logged (the emails are settled anyway)."""
        events = send_events(sends, self._settings.queues.max_receive_count, self._clock())
        try:
            await self.publish(events)
        except QueueError as exc:  # the emails are sent: they are not sent again for this
            metrics.WEBHOOK_EVENTS_LOST.inc(len(events))
            log.error("webhooks: %d send event(s) not offered: %s", len(events), exc)


class PublishingEventStore:
    """An outcome store that offers what it records to the webhooks too.

    Every event it is given is published, recorded before or not: a report the events queue
    delivers twice is offered twice, with the same webhook-id (at least once; a report whose
    publish failed comes back and is offered then). Providers' own `sent` events (SES `Send`,
    SendGrid `processed`) are not offered: settlement offers gomailpy's `sent` for every
    provider already. A failed publish is a failed record (StoreError), so the event
    consumer leaves the reports on their queue.
    """

    def __init__(self, inner: EventStore | None, outbox: Outbox) -> None:
        self._inner = inner
        self._outbox = outbox

    async def record(self, events: Sequence[Event]) -> list[Event]:
        new = list(events) if self._inner is None else await self._inner.record(events)
        try:
            await self._outbox.publish([e for e in events if e.type is not EventType.SENT])
        except QueueError as exc:
            raise StoreError("webhooks outbox", str(exc)) from exc
        return new

    async def events(
        self,
        message_id: str,
        *,
        provider: str | None = None,
        provider_message_id: str | None = None,
    ) -> list[Event]:
        if self._inner is None:
            return []
        return await self._inner.events(
            message_id, provider=provider, provider_message_id=provider_message_id
        )


def with_webhooks(settings: Settings, queues: QueueClient, stores: EventStores) -> EventStores:
    """`stores` with an outcome store that also publishes (when webhooks are enabled)."""
    if not settings.webhooks.enabled:
        return stores
    outcomes = PublishingEventStore(stores.outcomes, Outbox(settings, queues))
    return EventStores(outcomes, stores.suppression)
