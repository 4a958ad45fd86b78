"""SendGrid Event Webhook events (the JSON array SendGrid posts) as gomailpy events.

    events = parse_sendgrid(body["events"])     # one Event per SendGrid event

| SendGrid event                     | Event                        |
|------------------------------------|------------------------------|
| processed                          | sent (SendGrid accepted it)  |
| delivered                          | delivered                    |
| deferred                           | deferred                     |
| bounce, type bounce (or none)      | bounced (hard or soft), blocked: by reason |
| bounce, type blocked               | blocked, or bounced / soft: by reason      |
| dropped                            | dropped                      |
| spamreport                         | complained                   |
| open, click                        | opened, clicked              |
| unsubscribe, group_unsubscribe     | unsubscribed                 |
| anything else                      | unknown (raw kept)           |

Bounces are classified by reason (gomailpy.bounce_reasons), as every provider's are.
`bounce_classification` names it where SendGrid gives one (Invalid Address → userunknown,
Mailbox Unavailable → suspend, Content → spamdetected, Reputation → badreputation, Frequency
or Volume Too High → speeding, Technical Failure → systemerror; the `status` and `reason`
text may name a closer reason of the same category), else (Unclassified, none) `status` and
`reason` do. A refusal of the sender or the
message is a `blocked` event; `type: blocked` with no other reason is one too (reason blocked).
Only `type: bounce` (SendGrid's permanent bounce) can be hard: for a bad address, or when
nothing says why (SendGrid judged it permanent). Deferrals get their reason from `response`.

`processed` is what SES calls Send: the provider took the email and will try to deliver it, so
it maps to `sent`, the state gomailpy records on acceptance anyway.

Correlation: SendGrid copies a send's `custom_args` to the top level of each of its events, so
`gomailpy_id` is gomailpy's message id (`gomailpy_message_id`, the name sends used before, is
read too). The provider message id is `sg_message_id` up to its first ".", which is the
`X-Message-Id` SendGrid answered the send with. The event id is `sg_event_id`, so an event
SendGrid posts again (it retries for 24 hours) is recorded once.
"""

from __future__ import annotations

import json
import math
from typing import Any

from gomailpy.bounce_reasons import Classification, Reason, classify, outcome, refine
from gomailpy.errors import EventFormatError
from gomailpy.events import Event, EventType, Subtype, iso, stable_id

PROVIDER = "sendgrid"
MESSAGE_ID_ARG = "gomailpy_id"
INSTANCE_ARG = "gomailpy_provider"  # the instance that sent it (providers[].name)
_LEGACY_MESSAGE_ID_ARG = "gomailpy_message_id"
_LATEST_EPOCH_S = 253_402_300_800  # 10000-01-01: past it, no date can be written

_TYPES: dict[str, EventType] = {
    "processed": EventType.SENT,
    "delivered": EventType.DELIVERED,
    "deferred": EventType.DEFERRED,
    "bounce": EventType.BOUNCED,
    "dropped": EventType.DROPPED,
    "spamreport": EventType.COMPLAINED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    "unsubscribe": EventType.UNSUBSCRIBED,
    "group_unsubscribe": EventType.UNSUBSCRIBED,
}


# bounce_classification (SendGrid's "Bounce and Block Classifications") -> the reason it names.
_CLASSIFICATIONS: dict[str, Reason] = {
    "invalid address": Reason.USERUNKNOWN,
    "mailbox unavailable": Reason.SUSPEND,
    "content": Reason.SPAMDETECTED,
    "reputation": Reason.BADREPUTATION,
    "frequency or volume": Reason.SPEEDING,
    "frequency or volume too high": Reason.SPEEDING,
    "technical": Reason.SYSTEMERROR,
    "technical failure": Reason.SYSTEMERROR,
}


def parse_sendgrid(events: list[Any]) -> list[Event]:
    """The events of one webhook post; EventFormatError if it is not a list of event objects
    with a numeric `timestamp`."""
    return parse_sendgrid_of(events, instance=None)


def parse_sendgrid_of(events: list[Any], *, instance: str | None) -> list[Event]:
    """`parse_sendgrid` for a post to the webhook route of SendGrid instance `instance`: its
    events name that instance unless they name one themselves (custom arg)."""
    if not isinstance(events, list):
        raise EventFormatError("the SendGrid events are not a JSON array")
    return [_event(entry, index, instance) for index, entry in enumerate(events)]


def provider_message_id(sg_message_id: Any) -> str | None:
    """The `X-Message-Id` of the send an `sg_message_id` belongs to (its part before the first
    ".")."""
    if not isinstance(sg_message_id, str) or not sg_message_id:
        return None
    return sg_message_id.split(".", 1)[0]


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _event(entry: Any, index: int, instance: str | None = None) -> Event:
    if not isinstance(entry, dict):
        raise EventFormatError(f"event {index} is not a JSON object")
    timestamp = entry.get("timestamp")
    if (
        isinstance(timestamp, bool)
        or not isinstance(timestamp, int | float)
        or not math.isfinite(timestamp)
        or not 0 <= timestamp < _LATEST_EPOCH_S
    ):
        raise EventFormatError(f"event {index} has no timestamp in epoch seconds")
    name = str(entry.get("event", ""))
    kind = _TYPES.get(name, EventType.UNKNOWN)
    subtype: str | None = None
    reason = _text(entry.get("reason"))
    mta_response = _text(entry.get("response"))
    status: str | None = None
    if kind is EventType.BOUNCED:
        mta_response = mta_response or reason
        found = _bounce_reason(entry, mta_response)
        blocked = entry.get("type") == "blocked"
        kind, subtype = outcome(found, provider_permanent=not blocked)
        if blocked:
            # "blocked": the receiving server refused for now (reputation, content, rate).
            subtype = Subtype.SOFT.value
        reason, status = found.reason.value, found.status
    elif kind is EventType.DEFERRED:
        mta_response = mta_response or reason
        found = classify(mta_response, _text(entry.get("status")))
        reason, status = found.reason.value, found.status
    elif kind is EventType.CLICKED:
        reason = _text(entry.get("url"))
    elif kind is EventType.UNKNOWN:
        reason = f"SendGrid {name or 'event'}"
    event_id = _text(entry.get("sg_event_id")) or stable_id(
        PROVIDER, json.dumps(entry, sort_keys=True, default=str)
    )
    message_id = _text(entry.get(MESSAGE_ID_ARG)) or _text(entry.get(_LEGACY_MESSAGE_ID_ARG))
    return Event(
        id=event_id,
        message_id=message_id,
        recipient=_text(entry.get("email")),
        provider=PROVIDER,
        instance=_text(entry.get(INSTANCE_ARG)) or instance,
        type=kind,
        at=iso(float(timestamp)),
        subtype=subtype,
        reason=reason,
        mta_response=mta_response,
        provider_message_id=provider_message_id(entry.get("sg_message_id")),
        raw=entry,
        status=status,
    )


def _bounce_reason(entry: dict[str, Any], text: str | None) -> Classification:
    named = _CLASSIFICATIONS.get(str(entry.get("bounce_classification", "")).strip().lower())
    found = refine(named, classify(text, _text(entry.get("status"))))
    if found.reason is Reason.UNDEFINED and entry.get("type") == "blocked":
        return Classification(Reason.BLOCKED, found.status, found.code)
    return found
