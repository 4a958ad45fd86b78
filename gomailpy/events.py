"""What became of an email after a provider accepted it: one event shape for every provider.

Every provider reports in its own way — SES through SNS notifications, SendGrid through its
signed Event Webhook, an SMTP relay through delivery status notifications (DSNs) sent back to
the envelope sender. Each source's parser turns what it gets into `Event` values of one
taxonomy (after django-anymail's), so that delivery records, suppression and webhooks never
need to know which provider spoke:

    queued → sent → delivered
                  → deferred (the provider keeps trying) → delivered | bounced
                  → bounced (hard: the address does not exist; soft: full mailbox, …)
                  → blocked (the receiving side refused the *sender or the message*:
                             blocklisted IP, spam content, policy, DMARC, rate limits)
                  → complained (the recipient marked it as spam)
                  → autoresponded (an out-of-office or other auto-reply: it was delivered)
    rejected (the provider refused it), dropped (suppressed: never sent), failed (given up)
    opened, clicked, unsubscribed (when a provider reports them)

Bounces, blocks and deferrals carry a `reason` from one taxonomy (gomailpy.bounce_reasons:
userunknown, mailboxfull, blocked, spamdetected, authfailure, expired, …), the enhanced
`status` code ("5.1.1") when one was given, and the receiving server's words (`mta_response`).
Only a hard bounce for a bad address suppresses at once; a block never does.

`Event.id` is stable for the same report (the provider's event id, or a hash of what identifies
the report), so that a report seen twice is recorded once. `raw` keeps what the provider said,
unknown fields included.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    BLOCKED = "blocked"  # refused for the sender's or the message's sake: the address is fine
    AUTORESPONDED = "autoresponded"  # an auto-reply (RFC 3834): delivered, no bounce
    COMPLAINED = "complained"
    REJECTED = "rejected"
    DROPPED = "dropped"
    FAILED = "failed"
    OPENED = "opened"
    CLICKED = "clicked"
    UNSUBSCRIBED = "unsubscribed"
    UNKNOWN = "unknown"  # a report of a kind this version does not know: kept, never fatal


class Subtype(StrEnum):
    HARD = "hard"  # bounced for good: the address or domain does not exist, or refuses for good
    SOFT = "soft"  # bounced for now: mailbox full, message too large, a transient refusal;
    # every block is soft too (the address is fine)
    SUPPRESSED = "suppressed"  # dropped: the address is on the suppression list


# Which outcome wins for a recipient when reports arrive out of order: the higher rank. A
# delivery reported after a bounce does not undo the bounce; a late `deferred` never hides a
# `delivered`. Engagement (opened, clicked) ranks below the outcomes it cannot overturn.
# An auto-reply says the email arrived: it ranks with a delivery. A block is a final refusal of
# that email, below a bounce (which also says something about the address).
_RANK: dict[EventType, int] = {
    EventType.UNKNOWN: 0,
    EventType.QUEUED: 1,
    EventType.SENT: 2,
    EventType.DEFERRED: 3,
    EventType.DELIVERED: 4,
    EventType.AUTORESPONDED: 4,
    EventType.OPENED: 5,
    EventType.CLICKED: 6,
    EventType.UNSUBSCRIBED: 7,
    EventType.FAILED: 8,
    EventType.REJECTED: 9,
    EventType.BLOCKED: 10,
    EventType.DROPPED: 11,
    EventType.BOUNCED: 12,
    EventType.COMPLAINED: 13,
}


def outranks(new: EventType, old: EventType | None) -> bool:
    """Whether `new` should replace `old` as a recipient's final outcome."""
    return old is None or _RANK[new] >= _RANK[old]


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def epoch(at: str) -> float:
    """`iso`'s inverse: an event's time in epoch seconds (0.0 for a time that cannot be read)."""
    try:
        return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def stable_id(*parts: object) -> str:
    """An event id derived from what identifies a report, for sources that give none."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:32]


@dataclass(frozen=True, slots=True)
class Event:
    id: str  # stable for the same report: duplicates are dropped by it
    message_id: str | None  # gomailpy's message id; None when the report cannot be joined
    recipient: str | None
    provider: str  # ses | sendgrid | smtp | gomailpy (events gomailpy itself produces)
    type: EventType
    at: str  # ISO 8601, UTC
    subtype: str | None = None
    reason: str | None = None  # bounces, blocks, deferrals: a bounce_reasons.Reason value
    mta_response: str | None = None  # the receiving server's words (diagnostic text)
    provider_message_id: str | None = None  # joins events to an email when message_id is None
    raw: dict[str, Any] = field(default_factory=dict)
    status: str | None = None  # the enhanced status code (RFC 3463), "5.1.1"
    # The provider instance that sent the email (providers[].name: "ses-eu"), when the report
    # names it: SES's tag, SendGrid's custom arg or webhook path, the VERP address.
    instance: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The shape every API answer, webhook and export uses (`instance` only when known)."""
        shown = {
            "id": self.id,
            "messageId": self.message_id,
            "recipient": self.recipient,
            "provider": self.provider,
            "type": self.type.value,
            "subtype": self.subtype,
            "reason": self.reason,
            "mtaResponse": self.mta_response,
            "status": self.status,
            "at": self.at,
            "providerMessageId": self.provider_message_id,
            "raw": self.raw,
        }
        if self.instance is not None:
            shown["instance"] = self.instance
        return shown

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        try:
            kind = EventType(data["type"])
        except ValueError:
            kind = EventType.UNKNOWN
        return cls(
            id=data["id"],
            message_id=data.get("messageId"),
            recipient=data.get("recipient"),
            provider=data["provider"],
            type=kind,
            at=data["at"],
            subtype=data.get("subtype"),
            reason=data.get("reason"),
            mta_response=data.get("mtaResponse"),
            provider_message_id=data.get("providerMessageId"),
            raw=data.get("raw") or {},
            status=data.get("status"),
            instance=data.get("instance"),
        )
