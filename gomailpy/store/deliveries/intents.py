"""Intent before send: a node says it is about to send an email, so that its fate is knowable
before anyone repeats it. Pure: what the record says, and what a node makes of it at intake.

    record = intent_record(previous, id, queued_at=..., node=me, attempt=3, lease_until=t, now=t0)
    verdict = decide(record, node=me, now=time.time(), grace_s=60)   # send, hold, delete

Just before its sends start, a node writes each email's record as `sending` (its node id,
the attempt, when its lease on the message ends), batched like every record write; the outcome
(sent, retrying, failed) replaces it after the attempt. A record still `sending` is an *open
intent*: its node may be frozen (SIGSTOP, a VM or GC pause) with a send the provider accepted,
or dead. A node that receives such an email from another node holds it (releases it with a
delay) until the intent's lease end plus `pipeline.in_doubt_grace_s`, and looks again: the woken
node records the outcome meanwhile. Past the grace the email is sent, *in doubt*: if the first
node's send did reach the provider, this is a second delivery, and it is counted as such.

| record at intake                                 | verdict                    |
|--------------------------------------------------|----------------------------|
| none, queued, retrying, failed                   | send                       |
| sent                                             | delete (sent before)       |
| sending, this node's own intent                  | send (its attempt is over) |
| sending, another node's, within lease end + grace | hold until then           |
| sending, another node's, past lease end + grace  | send in doubt              |
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gomailpy.events import iso
from gomailpy.store.deliveries.base import DeliveryRecord, DeliveryState, timeline_entry

MIN_HOLD_S = 1.0  # SQS delays are whole seconds; never look again at once


class Verdict(StrEnum):
    SEND = "send"
    SEND_IN_DOUBT = "send_in_doubt"
    HOLD = "hold"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    hold_s: float = 0.0  # for HOLD: seconds until the grace ends
    node: str | None = None  # the other node whose intent it was (HOLD, SEND_IN_DOUBT)


def decide(record: DeliveryRecord | None, *, node: str, now: float, grace_s: float) -> Decision:
    """What a node (`node`) does with an email whose record it read at intake (epoch s)."""
    if record is None:
        return Decision(Verdict.SEND)
    if record.state is DeliveryState.SENT:
        return Decision(Verdict.DELETE)
    if record.state is not DeliveryState.SENDING or record.node == node:
        # The node's own intent: this process's attempt is over (it forgets an email only once
        # it is settled), so its outcome is known here, whatever the store says.
        return Decision(Verdict.SEND)
    # A `sending` record without a lease end (written by hand, or by an older version) is
    # counted from when it was last written: it cannot say more.
    lease_until = record.lease_until if record.lease_until is not None else _epoch(record)
    until = lease_until + grace_s
    if now < until:
        return Decision(Verdict.HOLD, max(until - now, MIN_HOLD_S), record.node)
    return Decision(Verdict.SEND_IN_DOUBT, node=record.node)


def intent_record(
    previous: DeliveryRecord | None,
    message_id: str,
    *,
    queued_at: float,
    node: str,
    attempt: int,
    lease_until: float,
    now: float,
    in_doubt: bool = False,
) -> DeliveryRecord | None:
    """The record saying `node` is about to send (the previous timeline and a `sending` entry,
    marked `inDoubt` when another node's intent never resolved); None over `sent`."""
    if previous is not None and previous.state is DeliveryState.SENT:
        return None
    if previous is None:
        created = iso(queued_at)
        timeline = [timeline_entry(DeliveryState.QUEUED.value, iso(queued_at))]
    else:
        created = previous.created_at
        timeline = [dict(e) for e in previous.timeline]
    doubt = True if in_doubt else None
    timeline.append(
        timeline_entry(
            DeliveryState.SENDING.value, iso(now), attempt=attempt, node=node, inDoubt=doubt
        )
    )
    return DeliveryRecord(
        message_id=message_id,
        state=DeliveryState.SENDING,
        created_at=created,
        updated_at=iso(now),
        attempt=attempt,
        timeline=timeline,
        node=node,
        lease_until=lease_until,
    )


def _epoch(record: DeliveryRecord) -> float:
    try:
        return datetime.fromisoformat(record.updated_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
