"""What the delivery store keeps and promises, whichever backend holds it: delivery states,
records and their timeline, idempotency keys, and the `DeliveryStore` Protocol (see the
package's docstring for the rules)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

MAX_REASON = 500  # characters of a failure reason kept in a record
Clock = Callable[[], float]


class DeliveryState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"


@dataclass(slots=True)
class DeliveryRecord:
    message_id: str
    state: DeliveryState
    created_at: str
    updated_at: str
    provider: str | None = None
    provider_message_id: str | None = None
    attempt: int = 0
    reason: str | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    expires_at: float = 0.0  # set by the store as it writes the record
    # While `sending` (an open intent, gomailpy.store.deliveries.intents): the node sending it, and
    # when its lease on the message ends (epoch s).
    node: str | None = None
    lease_until: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The API's answer to GET /email/{messageId}."""
        return {
            "messageId": self.message_id,
            "state": self.state.value,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "provider": self.provider,
            "providerMessageId": self.provider_message_id,
            "attempt": self.attempt,
            "reason": self.reason,
            "timeline": self.timeline,
        }


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    key: str
    body_hash: str
    message_id: str
    response: str | None  # the first answer's JSON body; None while that request is running


class DeliveryStore(Protocol):
    async def get(self, message_id: str) -> DeliveryRecord | None:
        """One record (a consistent read), or None: never written, or expired."""
        ...

    async def get_many(self, message_ids: Sequence[str]) -> dict[str, DeliveryRecord]:
        """The records there are for `message_ids` (consistent reads, batched), by id."""
        ...

    async def put_many(self, records: Sequence[DeliveryRecord]) -> None:
        """Write whole records (batched), each to expire `status.ttl_s` from now."""
        ...

    async def record_queued(self, message_id: str, at: float | None = None) -> None:
        """A `queued` record where there is none (never on the send path of API-issued ids)."""
        ...

    async def mark_failed(self, message_id: str, reason: str) -> None:
        """`failed` outside a delivery attempt (suppressed, cancelled); never over `sent`."""
        ...

    async def reserve_key(
        self, key: str, body_hash: str, message_id: str
    ) -> IdempotencyRecord | None:
        """Reserve `key` for this request (None), or return the record already holding it."""
        ...

    async def complete_key(self, key: str, response: str) -> None: ...

    async def release_key(self, key: str) -> None:
        """Forget a reservation whose request failed, so that a retry can go through."""
        ...


def timeline_entry(state: str, at: str, **fields: Any) -> dict[str, Any]:
    """One entry of an email's timeline as `GET /email/{id}` shows it: a delivery state or an
    event's type, when (ISO 8601, UTC, `gomailpy.events.iso`), and what else is known (None
    values left out). Delivery records (records.py) and events (gomailpy.store.events.event_entry)
    both make theirs here."""
    entry: dict[str, Any] = {"state": state, "at": at}
    entry.update({k: v for k, v in fields.items() if v is not None})
    return entry
