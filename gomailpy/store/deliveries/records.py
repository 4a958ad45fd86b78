"""How a delivery record changes with one delivery attempt: pure, so every store writes the same.

The API writes nothing per email: an email it answered 200 has no record until a node has tried
it, and reads as `queued` meanwhile (gomailpy.store.deliveries.ids). The node that tries it reads
the record there is (one batched read per batch of messages), and writes the record after the
attempt whole (one batched write): the previous timeline, or `queued` at the envelope's creation;
then `sending` (attempt, when the node took it) if it was offered to a provider; then the outcome.
"""

from __future__ import annotations

from typing import Any

from gomailpy.events import iso
from gomailpy.store.deliveries.base import MAX_REASON, DeliveryRecord, DeliveryState, timeline_entry


def after_attempt(
    previous: DeliveryRecord | None,
    message_id: str,
    *,
    queued_at: float,
    state: DeliveryState,
    now: float,
    attempt: int,
    sending_at: float | None = None,
    provider: str | None = None,
    provider_message_id: str | None = None,
    reason: str | None = None,
) -> DeliveryRecord | None:
    """The record after an attempt that ended in `state` (sent, retrying or failed); None when
    there is nothing to write: a late outcome never undoes a send."""
    if previous is not None and previous.state is DeliveryState.SENT:
        return None
    if previous is None:
        created = iso(queued_at)
        timeline = [entry(DeliveryState.QUEUED, queued_at)]
    else:
        created = previous.created_at
        timeline = [dict(e) for e in previous.timeline]
    if sending_at is not None:
        timeline.append(entry(DeliveryState.SENDING, sending_at, attempt=attempt))
    kept = reason[:MAX_REASON] if reason is not None else None
    sent = state is DeliveryState.SENT
    if sent:
        timeline.append(entry(state, now, provider=provider, providerMessageId=provider_message_id))
    else:
        retrying = state is DeliveryState.RETRYING
        timeline.append(entry(state, now, attempt=attempt if retrying else None, reason=kept))
    return DeliveryRecord(
        message_id=message_id,
        state=state,
        created_at=created,
        updated_at=iso(now),
        provider=provider if sent else None,
        provider_message_id=provider_message_id if sent else None,
        attempt=attempt,
        reason=None if sent else kept,
        timeline=timeline,
    )


def queued_record(message_id: str, now: float, at: float | None = None) -> DeliveryRecord:
    """A record that says only `queued` (at `at`, default now)."""
    when = now if at is None else at
    return DeliveryRecord(
        message_id,
        DeliveryState.QUEUED,
        iso(when),
        iso(now),
        timeline=[entry(DeliveryState.QUEUED, when)],
    )


def failed_record(
    previous: DeliveryRecord | None, message_id: str, reason: str, now: float
) -> DeliveryRecord | None:
    """`failed` outside a delivery attempt (suppressed, cancelled); None over `sent`."""
    return after_attempt(
        previous,
        message_id,
        queued_at=now,
        state=DeliveryState.FAILED,
        now=now,
        attempt=previous.attempt if previous is not None else 0,
        reason=reason,
    )


def entry(state: DeliveryState, when: float, **fields: Any) -> dict[str, Any]:
    return timeline_entry(state.value, iso(when), **fields)
