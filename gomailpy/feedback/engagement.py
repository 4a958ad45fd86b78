"""Engagement per provider: opens, clicks, unsubscribes and complaints counted against the
provider instance that sent each email, so that the operator page and the dashboard can divide
them by that provider's accepted sends (`gomailpy_engagement_events_total` over
`gomailpy_provider_sends_total{outcome="accepted"}`).

    await count_engagement(new_events, deliveries, machine_window_s=settings.bulk.machine_window_s)

Who sent it: a provider's own report names its instance (`event.instance`, else the kind, which
is the instance's name when there is one of that kind). gomailpy's own hits (`/t/o/`, `/t/c/`,
`/u/`: provider `gomailpy`) are joined to the email's delivery record, which names the instance
that sent it: one batched store read per batch of events. A hit that joins nothing (mail to the
`mailto:` address carries no message id; an expired record) is counted as `unknown`.

Machine hits are counted apart (`machine="true"`): the event's own `raw.machine` (gomailpy's
hits, gomailpy.bulk.machine), SendGrid's `sg_machine_open` (Apple Mail Privacy Protection), a
known proxy's or scanner's user agent (SendGrid's `useragent`, Mailgun's `userAgent`, SES's
`open.userAgent` and `click.userAgent`), or an SES open or click within `machine_window_s` of SES
taking the email (its `mail.timestamp`). Unsubscribes and complaints are people's: never machine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from gomailpy import metrics
from gomailpy.bulk.machine import is_machine_agent
from gomailpy.errors import StoreError
from gomailpy.events import Event, EventType, epoch
from gomailpy.store.deliveries import DeliveryStore

log = logging.getLogger("gomailpy.events")

TYPES = frozenset(
    {EventType.OPENED, EventType.CLICKED, EventType.UNSUBSCRIBED, EventType.COMPLAINED}
)
HITS = frozenset({EventType.OPENED, EventType.CLICKED})
OWN = "gomailpy"  # gomailpy.bulk.hits.PROVIDER: its own tracking and unsubscribe links
UNKNOWN = "unknown"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _details(event: Event) -> dict[str, Any]:
    # SES puts an open's or click's details beside `mail`, under `open` or `click`.
    key = "open" if event.type is EventType.OPENED else "click"
    details = event.raw.get(key)
    return details if isinstance(details, dict) else {}


def user_agent(event: Event) -> str:
    """The user agent of an open or click, whichever provider reported it ("" when none)."""
    raw = event.raw
    return (
        _text(raw.get("useragent"))  # SendGrid
        or _text(raw.get("userAgent"))  # gomailpy's own hits; Mailgun's client-info
        or _text(_details(event).get("userAgent"))  # SES
    )


def clicked_url(event: Event) -> str:
    """The link a click followed ("" when not a click or not said)."""
    if event.type is not EventType.CLICKED:
        return ""
    # gomailpy's own, SendGrid's and Mailgun's `url`; SES's `click.link`.
    return _text(event.raw.get("url")) or _text(_details(event).get("link"))


def hit_details(event: Event, window_s: float) -> dict[str, Any]:
    """What the timeline shows of an open or click beside its type and recipient: `userAgent`,
    `url` (clicks) and `machine`, the same names whichever provider reported it; {} for any
    other event."""
    if event.type not in HITS:
        return {}
    details: dict[str, Any] = {"machine": is_machine_hit(event, window_s)}
    if agent := user_agent(event):
        details["userAgent"] = agent
    if url := clicked_url(event):
        details["url"] = url
    return details


def is_machine_hit(event: Event, window_s: float) -> bool:
    """Whether an opened or clicked event was a machine's (see the module docstring)."""
    raw = event.raw
    if isinstance(raw.get("machine"), bool):
        return bool(raw["machine"])
    if raw.get("sg_machine_open") is True:
        return True
    agent = user_agent(event)
    if agent and is_machine_agent(agent):
        return True
    mail = raw.get("mail")
    if isinstance(mail, dict) and isinstance(mail.get("timestamp"), str):
        sent_at, hit_at = epoch(mail["timestamp"]), epoch(event.at)
        return bool(sent_at and hit_at) and 0 <= hit_at - sent_at < window_s
    return False


async def senders(events: Sequence[Event], deliveries: DeliveryStore | None) -> dict[str, str]:
    """The instance that sent each email gomailpy's own events name, by message id (from the
    delivery records; {} without a store or when it cannot be read, logged)."""
    ids = sorted({e.message_id for e in events if e.provider == OWN and e.message_id})
    if not ids or deliveries is None:
        return {}
    try:
        records = await deliveries.get_many(ids)
    except StoreError as exc:
        log.warning("%d engagement event(s) not joined to their provider: %s", len(ids), exc)
        return {}
    return {i: r.provider for i, r in records.items() if r.provider}


def sender_of(event: Event, sent_by: Mapping[str, str]) -> str:
    if event.provider == OWN:
        return sent_by.get(event.message_id or "", UNKNOWN)
    return event.instance or event.provider


async def count_engagement(
    events: Sequence[Event], deliveries: DeliveryStore | None, *, machine_window_s: float
) -> None:
    """Count the engagement among `events` (new ones: each counted once) per provider."""
    engaged = [e for e in events if e.type in TYPES]
    if not engaged:
        return
    sent_by = await senders(engaged, deliveries)
    for event in engaged:
        machine = event.type in HITS and is_machine_hit(event, machine_window_s)
        metrics.ENGAGEMENT_EVENTS.labels(
            sender_of(event, sent_by), event.type.value, "true" if machine else "false"
        ).inc()
