"""The events a recipient's hit makes: `unsubscribed`, `opened`, `clicked` (provider
`gomailpy`), in the one taxonomy of gomailpy.events, so they reach the outcome store, the
suppression rules and the webhooks like any provider's.

An unsubscribe's group rides in `raw.asm_group_id`, where SendGrid's `group_unsubscribe` events
carry it, which is what the suppression list reads (gomailpy.store.suppressions.group_of). Opens and
clicks carry `raw.userAgent`, `raw.machine` (gomailpy.bulk.machine) and, for a click,
`raw.url`.
"""

from __future__ import annotations

import os
from typing import Any

from gomailpy.bulk.tokens import Link
from gomailpy.events import Event, EventType, iso, stable_id

PROVIDER = "gomailpy"
MAX_AGENT_CHARS = 512


def unsubscribed(link: Link, group: int | None, now: float, via: str) -> Event:
    """`link`'s recipient unsubscribed from `group` (None: from everything), by `via`
    (`one-click`, `page`, `mailto`). The same unsubscribe twice is one event."""
    raw: dict[str, Any] = {"via": via}
    if group is not None:
        raw["asm_group_id"] = group
    return Event(
        id=stable_id(link.message_id, link.recipient, EventType.UNSUBSCRIBED.value, group),
        message_id=link.message_id or None,
        recipient=link.recipient,
        provider=PROVIDER,
        type=EventType.UNSUBSCRIBED,
        subtype="group" if group is not None else "global",
        at=iso(now),
        raw=raw,
    )


def engaged(link: Link, kind: EventType, user_agent: str, machine: bool, now: float) -> Event:
    """An `opened` or `clicked` event for `link`; every hit is its own event."""
    raw: dict[str, Any] = {"userAgent": user_agent[:MAX_AGENT_CHARS], "machine": machine}
    if kind is EventType.CLICKED:
        raw["url"] = link.url
    return Event(
        id=os.urandom(16).hex(),  # what uuid4().hex is, without building a UUID per hit
        message_id=link.message_id,
        recipient=link.recipient,
        provider=PROVIDER,
        type=kind,
        at=iso(now),
        raw=raw,
    )


def report(events: list[Event]) -> dict[str, Any]:
    """An events-queue body of gomailpy's own events (gomailpy.feedback.parse)."""
    return {"source": PROVIDER, "events": [e.to_json() for e in events]}
