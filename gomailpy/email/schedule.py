"""Scheduled sends: when an email is due, how long its next hop on the queue waits, and the
record that lets a sender cancel it before then.

An email with `send_at` (epoch seconds on its envelope) is held on the queue itself. SQS delays a
message by at most 15 minutes, so a node receiving one that is not yet due sends the same body
again with `DelaySeconds = min(remaining, 900)`, then deletes the copy it received (see
pipeline.prepare.schedule for why this order, and why not ChangeMessageVisibility). Nothing else
stores the email and no timer runs anywhere: a restart of every node loses nothing.

Cancelling needs the status table: the API writes a schedule record (gomailpy.store.schedules)
when it queues a scheduled email, and `DELETE /email/{id}/schedule` turns it into `cancelled`; a
node holding or releasing the message reads it and drops a cancelled one.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from gomailpy.errors import GomailError, InvalidEmailError

MAX_AHEAD_S = 72 * 3600  # as SendGrid's send_at
MAX_HOP_S = 900  # SQS's DelaySeconds limit
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
