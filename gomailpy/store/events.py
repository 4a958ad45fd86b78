"""What became of each email after "accepted": its events, and each recipient's outcome.

    new = await outcomes.record(events)        # the events not recorded before (by Event.id)
    events = await outcomes.events(message_id, provider_message_id=...)
    per_recipient = fold(events)               # {address: RecipientOutcome}

The store keeps every event under the email it belongs to (gomailpy's message id), idempotent by
event id: a report delivered twice (SQS is at-least-once, SendGrid retries for a day) is kept
once. An event that names no message id is kept under its provider message id and joins its
email when that email is read (`GET /email/{id}` passes the provider message id the send
recorded); one that names neither is kept under its recipient, for inspection.

Outcomes are never stored, only computed by `fold` from the events whenever they are read, so
events that arrive before the send was recorded, twice, or out of order still give one answer:
per recipient, the event of highest rank (`gomailpy.events.outranks`), the later one on a tie.

Two implementations, like the delivery store's: `MemoryEventStore` (one process) and
`DynamoEventStore` (`store_dynamodb.py`, on the delivery store's table under `evt#` keys).
`open_event_stores` builds the configured outcome store and suppression list together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gomailpy.events import Event, epoch, outranks
from gomailpy.store.deliveries.base import timeline_entry

MAX_EVENTS_PER_EMAIL = 200  # opens and clicks beyond this are not kept (item size)


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    state: str
    at: str
    provider: str
    subtype: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "subtype": self.subtype,
            "reason": self.reason,
            "at": self.at,
            "provider": self.provider,
        }


def fold(events: Sequence[Event]) -> dict[str, RecipientOutcome]:
    """Each recipient's outcome: the highest-ranked of its events, the latest on a tie."""
    best: dict[str, Event] = {}
    for event in sorted(events, key=lambda e: (epoch(e.at), e.id)):
        if not event.recipient:
            continue
        address = event.recipient.lower()
        held = best.get(address)
        if outranks(event.type, held.type if held is not None else None):
            best[address] = event
    return {
        address: RecipientOutcome(e.type.value, e.at, e.provider, e.subtype, e.reason)
        for address, e in best.items()
    }


def event_entry(event: Event) -> dict[str, Any]:
    """An event as `GET /email/{id}` shows it in the timeline, beside the delivery states."""
    return timeline_entry(
        event.type.value,
        event.at,
        recipient=event.recipient,
        provider=event.provider,
        subtype=event.subtype,
        reason=event.reason,
        mtaResponse=event.mta_response,
        status=event.status,
        event=event.id,
    )


def sorted_timeline(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """By time, `queued` first: nothing happens to an email before it is queued, though a
    provider's clock (SES stamps whole seconds) may say so."""

    def key(entry: dict[str, Any]) -> tuple[bool, float]:
        queued = "queued" in (entry.get("state"), entry.get("type"))
        return not queued, epoch(str(entry.get("at", "")))

    return sorted(entries, key=key)


def provider_key(provider: str, provider_message_id: str) -> str:
    """How an unjoined event is filed: SendGrid's `sg_message_id` is the `X-Message-Id` the
    send recorded, plus a suffix after the first dot."""
    if provider == "sendgrid":
        provider_message_id = provider_message_id.split(".", 1)[0]
    return f"p:{provider_message_id}"


def event_key(event: Event) -> str:
    """Where an event is filed: its email, else its provider message id, else its recipient."""
    if event.message_id:
        return f"m:{event.message_id}"
    if event.provider_message_id:
        return provider_key(event.provider, event.provider_message_id)
    return f"r:{(event.recipient or '-').lower()}"


class EventStore(Protocol):
    async def record(self, events: Sequence[Event]) -> list[Event]:
        """Keep `events`; return those not kept before (the same id was not seen)."""
        ...

    async def events(
        self,
        message_id: str,
        *,
        provider: str | None = None,
        provider_message_id: str | None = None,
    ) -> list[Event]:
        """Every event of an email, with those filed under its provider message id."""
        ...


class MemoryEventStore:
    """The outcome store for one process (tests, a single-process deployment)."""

    def __init__(self) -> None:
        self._events: dict[str, dict[str, Event]] = {}

    async def record(self, events: Sequence[Event]) -> list[Event]:
        new: list[Event] = []
        for event in events:
            kept = self._events.setdefault(event_key(event), {})
            if event.id in kept or len(kept) >= MAX_EVENTS_PER_EMAIL:
                continue
            kept[event.id] = event
            new.append(event)
        return new

    async def events(
        self,
        message_id: str,
        *,
        provider: str | None = None,
        provider_message_id: str | None = None,
    ) -> list[Event]:
        found = dict(self._events.get(f"m:{message_id}", {}))
        if provider and provider_message_id:
            found.update(self._events.get(provider_key(provider, provider_message_id), {}))
        return list(found.values())
