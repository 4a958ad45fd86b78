"""Scheduled sends: when an email is due, how long its next hop on the queue waits, and the
record that lets a sender cancel it before then.

An email with `send_at` (epoch seconds on its envelope) is held on the queue itself. SQS delays a
message by at most 15 minutes, so a node receiving one that is not yet due sends the same body
again with `DelaySeconds = min(remaining, 900)`, then deletes the copy it received (see
pipeline.prepare.schedule for why this order, and why not ChangeMessageVisibility). Nothing else
stores the email and no timer runs anywhere: a restart of every node loses nothing.

Cancelling needs the status table: the API writes `sched#<messageId>` (state `scheduled`, its
`send_at`) when it queues a scheduled email, and `DELETE /email/{id}/schedule` turns it into
`cancelled`; a node holding or releasing the message reads it and drops a cancelled one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gomailpy.errors import GomailError, InvalidEmailError
from gomailpy.store.items import ItemTable

MAX_AHEAD_S = 72 * 3600  # as SendGrid's send_at
MAX_HOP_S = 900  # SQS's DelaySeconds limit
SCHEDULE_PREFIX = "sched#"
# A schedule record outlives its send time by this much (then DynamoDB's TTL removes it).
KEEP_AFTER_DUE_S = 24 * 3600

SCHEDULED = "scheduled"
CANCELLED = "cancelled"
CANCELLED_REASON = "cancelled before it was due (DELETE /email/{id}/schedule)"


class SendAtError(GomailError, ValueError):
    """A send time that cannot be used; the message says why (for a 4xx)."""


def parse_send_at(value: Any, now: float, *, iso_allowed: bool = True) -> float | None:
    """A requested send time as epoch seconds, or None for "now".

    Accepts epoch seconds (int or float) and, when `iso_allowed`, an ISO 8601 text with a time
    zone ("2026-11-28T09:00:00Z"). A time in the past means now (as SendGrid treats it); more
    than 72 hours ahead is refused.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise SendAtError("must be a time: epoch seconds or ISO 8601")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise SendAtError("must be a finite number of epoch seconds")
        at = float(value)
    elif isinstance(value, str) and iso_allowed:
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise SendAtError(
                "must be epoch seconds or ISO 8601 with a time zone, e.g. 2026-11-28T09:00:00Z"
            ) from None
        if parsed.tzinfo is None:
            raise SendAtError("must name its time zone (e.g. end with Z for UTC)")
        at = parsed.astimezone(UTC).timestamp()
    else:
        kind = "epoch seconds (an integer)" if not iso_allowed else "epoch seconds or ISO 8601"
        raise SendAtError(f"must be {kind}")
    if at > now + MAX_AHEAD_S:
        raise SendAtError(f"must be at most 72 hours ({MAX_AHEAD_S} s) ahead")
    return at if at > now else None


def next_hop_s(send_at: float, now: float) -> int:
    """Seconds the next hop on the queue waits: 0 when due, else the remaining time rounded up,
    at most SQS's 900."""
    remaining = send_at - now
    if remaining <= 0:
        return 0
    return min(MAX_HOP_S, math.ceil(remaining))


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    message_id: str
    state: str  # SCHEDULED or CANCELLED
    send_at: float


class Schedules:
    """The `sched#<id>` records on the status table (see the module docstring)."""

    def __init__(self, table: ItemTable) -> None:
        self._table = table

    async def record(self, message_id: str, send_at: float) -> None:
        await self._table.put(
            SCHEDULE_PREFIX + message_id,
            {"state": SCHEDULED, "send_at": send_at},
            expires_at=send_at + KEEP_AFTER_DUE_S,
        )

    async def get(self, message_id: str) -> ScheduleRecord | None:
        item = await self._table.get(SCHEDULE_PREFIX + message_id)
        if item is None:
            return None
        return ScheduleRecord(message_id, str(item.get("state")), float(item.get("send_at", 0)))

    async def cancel(self, record: ScheduleRecord) -> None:
        await self._table.put(
            SCHEDULE_PREFIX + record.message_id,
            {"state": CANCELLED, "send_at": record.send_at},
            expires_at=record.send_at + KEEP_AFTER_DUE_S,
        )

    async def is_cancelled(self, message_id: str) -> bool:
        record = await self.get(message_id)
        return record is not None and record.state == CANCELLED


def take_send_at(data: Any, now: float) -> float | None:
    """Remove `sendAt` from a `POST /email/send` body (`{"email": {...}}`) and return it parsed
    (None: now); `InvalidEmailError` ({"sendAt": why}) when unusable."""
    fields = data.get("email") if isinstance(data, dict) else None
    if not isinstance(fields, dict) or "sendAt" not in fields:
        return None
    try:
        return parse_send_at(fields.pop("sendAt"), now)
    except SendAtError as exc:
        raise InvalidEmailError({"sendAt": f"Send at {exc}"}) from None
