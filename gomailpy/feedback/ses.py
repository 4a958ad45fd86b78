"""SES events as SNS delivers them to the events queue (raw delivery off): the SNS envelope
`{"Type": "Notification", "MessageId", "TopicArn", "Message": "<SES event JSON>", ...}`.

    events = parse_sns(json.loads(body))     # one Event per recipient; raises EventFormatError

`Message` is either a configuration-set event (`eventType`) or an identity notification
(`notificationType`); both carry the same `mail`, `bounce`, `complaint` and `delivery` objects
(AWS: "Examples of event data that Amazon SES publishes to Amazon SNS" and "Amazon SNS
notification examples for Amazon SES"), so one reader serves both:

| SES type                          | Event                  | recipients from                |
|-----------------------------------|------------------------|--------------------------------|
| Send                              | sent                   | mail.destination               |
| Delivery                          | delivered              | delivery.recipients            |
| Bounce (see below)                | bounced, blocked       | bounce.bouncedRecipients       |
| Complaint                         | complained             | complaint.complainedRecipients |
| Reject                            | rejected               | mail.destination               |
| DeliveryDelay                     | deferred               | deliveryDelay.delayedRecipients|
| Rendering Failure                 | failed                 | mail.destination               |
| Open, Click                       | opened, clicked        | mail.destination               |
| Subscription (unsubscribeAll)     | unsubscribed           | mail.destination               |
| anything else                     | unknown (raw kept)     | mail.destination               |

Bounces are classified by reason (gomailpy.bounce_reasons), as every provider's are:
`bounceSubType` gives the reason where SES documents it (Permanent NoEmail → userunknown,
Suppressed and OnAccountSuppressionList → suppressed; Transient MailboxFull → mailboxfull,
MessageTooLarge → mesgtoobig, ContentRejected → contenterror, AttachmentRejected →
policyviolation; the recipient's `status` and `diagnosticCode` may name a closer reason of the
same category), else (General, Undetermined, a pair SES does not document) the recipient's
`status` and `diagnosticCode` do. Only a `Permanent` bounce can be hard: one for a bad address,
or one whose diagnostic says nothing (SES judged it permanent). A refusal of the sender or the
message (blocklist, DMARC, spam) is a `blocked` event whatever SES's type: it never suppresses
the recipient. Transient, Undetermined and undocumented types are never hard: a soft bounce
suppresses an address only after repeated failures. A DeliveryDelay's `delayType` (IPFailure,
SpamDetected, MailboxFull, ...) gives its reason the same way.

SNS's "Successfully validated SNS topic ..." text (sent once, when the event
destination is created) and subscription confirmations carry no events: they give [], not an
error.

Correlation: `mail.tags["gomailpy-id"][0]` (the tag gomailpy's sends carry), else the
`X-Gomailpy-Id` header when SES includes the original headers; `mail.messageId` is kept as the
provider message id either way. Event ids: the SNS MessageId with the recipient, so a
notification delivered twice is recorded once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from gomailpy.bounce_reasons import Classification, Reason, classify, outcome, refine
from gomailpy.errors import EventFormatError
from gomailpy.events import Event, EventType, Subtype, iso, stable_id

PROVIDER = "ses"
MESSAGE_ID_TAG = "gomailpy-id"
INSTANCE_TAG = "gomailpy-provider"  # the SES instance that sent it (providers[].name)
MESSAGE_ID_HEADER = "x-gomailpy-id"
VALIDATION_TEXT = "Successfully validated SNS topic"
# SNS messages that are about the subscription, not about any email.
_NO_EVENTS_TYPES = frozenset({"SubscriptionConfirmation", "UnsubscribeConfirmation"})

# (bounceType, bounceSubType) as AWS documents them -> the reason they name; absent: the
# recipient's status and diagnostic decide ("General", "Undetermined").
_BOUNCE_REASONS: dict[tuple[str, str], Reason] = {
    ("Permanent", "NoEmail"): Reason.USERUNKNOWN,
    ("Permanent", "Suppressed"): Reason.SUPPRESSED,
    ("Permanent", "OnAccountSuppressionList"): Reason.SUPPRESSED,
    ("Transient", "MailboxFull"): Reason.MAILBOXFULL,
    ("Transient", "MessageTooLarge"): Reason.MESGTOOBIG,
    ("Transient", "ContentRejected"): Reason.CONTENTERROR,
    ("Transient", "AttachmentRejected"): Reason.POLICYVIOLATION,
}
_DELAY_REASONS: dict[str, Reason] = {
    "InternalFailure": Reason.SYSTEMERROR,
    "MailboxFull": Reason.MAILBOXFULL,
    "SpamDetected": Reason.SPAMDETECTED,
    "RecipientServerError": Reason.SYSTEMERROR,
    "IPFailure": Reason.BLOCKED,
    "TransientCommunicationFailure": Reason.NETWORKERROR,
    "BYOIPHostNameLookupUnavailable": Reason.REQUIREPTR,
    "SendingDeferral": Reason.SPEEDING,
}


def classified(named: Reason | None, status: Any, diagnostic: Any) -> Classification:
    """`named`, refined by the recipient's `status` and `diagnostic` (bounce_reasons.refine)."""
    text = str(diagnostic) if diagnostic is not None else None
    return refine(named, classify(text, str(status) if status is not None else None))


# The object beside `mail` that holds each type's details, and the Event it becomes.
_SIMPLE_TYPES: dict[str, tuple[str, EventType]] = {
    "Send": ("send", EventType.SENT),
    "Reject": ("reject", EventType.REJECTED),
    "Rendering Failure": ("failure", EventType.FAILED),
    "Open": ("open", EventType.OPENED),
    "Click": ("click", EventType.CLICKED),
}


def parse_sns(envelope: dict[str, Any]) -> list[Event]:
    """The events in one SNS envelope of SES events; see the module docstring."""
    if not isinstance(envelope, dict):
        raise EventFormatError("the SNS envelope is not a JSON object")
    kind = envelope.get("Type")
    if kind in _NO_EVENTS_TYPES:
        return []
    if kind != "Notification":
        raise EventFormatError(f"not an SNS notification (Type {kind!r})")
    text = envelope.get("Message")
    if not isinstance(text, str):
        raise EventFormatError("the SNS envelope has no Message string")
    if text.lstrip().startswith(VALIDATION_TEXT):
        return []
    try:
        message: Any = json.loads(text)
    except ValueError as exc:
        raise EventFormatError(f"the SNS Message is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise EventFormatError("the SNS Message is not a JSON object")
    sns_id = envelope.get("MessageId")
    sns_id = str(sns_id) if sns_id else stable_id(text)
    return _SesEvent(message, sns_id, envelope.get("Timestamp")).events()


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventFormatError(f"{where} is not a JSON object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise EventFormatError(f"{where} is not a list")
    return value


def _at(value: Any) -> str | None:
    """SES's ISO 8601 timestamps, normalised to gomailpy's (UTC, `Z`)."""
    if not isinstance(value, str):
        return None
    try:
        return iso(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def _address(value: Any) -> str | None:
    """The bare address: SES gives bare ones, LocalStack's destination may carry the display
    name of the To header ("Name <a@example.org>")."""
    if value is None:
        return None
    text = str(value)
    return (parseaddr(text)[1] or text) if "<" in text else text


class _SesEvent:
    """One SES event JSON (the SNS `Message`), turned into Events one recipient at a time."""

    def __init__(self, message: dict[str, Any], sns_id: str, published_at: Any) -> None:
        kind = message.get("eventType") or message.get("notificationType")
        if not isinstance(kind, str) or not kind:
            raise EventFormatError("the SES event has neither eventType nor notificationType")
        self.kind = kind
        self.message = message
        self.sns_id = sns_id
        self.mail = _object(message.get("mail"), "mail")
        self.message_id = self._message_id()
        self.instance = self._tag(INSTANCE_TAG)
        self.default_at = _at(self.mail.get("timestamp")) or _at(published_at) or iso(0)

    def _tag(self, name: str) -> str | None:
        tagged = _object(self.mail.get("tags"), "mail.tags").get(name)
        if isinstance(tagged, list) and tagged and isinstance(tagged[0], str):
            return tagged[0]
        return None

    def _message_id(self) -> str | None:
        tagged = self._tag(MESSAGE_ID_TAG)
        if tagged is not None:
            return tagged
        for header in _list(self.mail.get("headers"), "mail.headers"):
            if isinstance(header, dict) and str(header.get("name", "")).lower() == (
                MESSAGE_ID_HEADER
            ):
                return str(header.get("value", "")).strip() or None
        return None

    def _destination(self) -> list[str]:
        return [str(r) for r in _list(self.mail.get("destination"), "mail.destination")]

    def events(self) -> list[Event]:
        kind = self.kind
        if kind == "Bounce":
            return self._bounce()
        if kind == "Complaint":
            complaint = _object(self.message.get("complaint"), "complaint")
            feedback = complaint.get("complaintFeedbackType")
            return [
                self._event(r, EventType.COMPLAINED, complaint, reason=feedback)
                for r in self._recipients(complaint, "complainedRecipients")
            ]
        if kind == "Delivery":
            delivery = _object(self.message.get("delivery"), "delivery")
            return [
                self._event(
                    {"emailAddress": r},
                    EventType.DELIVERED,
                    delivery,
                    mta_response=delivery.get("smtpResponse"),
                )
                for r in _list(delivery.get("recipients"), "delivery.recipients")
            ]
        if kind == "DeliveryDelay":
            delay = _object(self.message.get("deliveryDelay"), "deliveryDelay")
            named = _DELAY_REASONS.get(str(delay.get("delayType", "")))
            events = []
            for r in self._recipients(delay, "delayedRecipients"):
                found = classified(named, r.get("status"), r.get("diagnosticCode"))
                events.append(
                    self._event(
                        r,
                        EventType.DEFERRED,
                        delay,
                        reason=found.reason.value,
                        status=found.status,
                        mta_response=r.get("diagnosticCode"),
                    )
                )
            return events
        if kind in _SIMPLE_TYPES:
            key, event_type = _SIMPLE_TYPES[kind]
            details = _object(self.message.get(key), key)
            reason = details.get("reason") or details.get("errorMessage") or details.get("link")
            return self._per_destination(event_type, details, reason=reason)
        if kind == "Subscription":
            details = _object(self.message.get("subscription"), "subscription")
            preferences = _object(details.get("newTopicPreferences"), "newTopicPreferences")
            if preferences.get("unsubscribeAll") is True:
                return self._per_destination(EventType.UNSUBSCRIBED, details, reason="all")
        return self._per_destination(EventType.UNKNOWN, {}, reason=f"SES {kind}")

    def _bounce(self) -> list[Event]:
        bounce = _object(self.message.get("bounce"), "bounce")
        bounce_type = str(bounce.get("bounceType", ""))
        named = _BOUNCE_REASONS.get((bounce_type, str(bounce.get("bounceSubType", ""))))
        permanent = bounce_type == "Permanent"
        events = []
        for r in self._recipients(bounce, "bouncedRecipients"):
            found = classified(named, r.get("status"), r.get("diagnosticCode"))
            kind, subtype = outcome(found, provider_permanent=permanent)
            if not permanent:
                # Transient, Undetermined and any type SES has not documented: never suppress
                # at once.
                subtype = Subtype.SOFT.value
            events.append(
                self._event(
                    r,
                    kind,
                    bounce,
                    subtype=subtype,
                    reason=found.reason.value,
                    status=found.status,
                    mta_response=r.get("diagnosticCode"),
                )
            )
        return events

    def _recipients(self, details: dict[str, Any], key: str) -> Iterable[dict[str, Any]]:
        for index, entry in enumerate(_list(details.get(key), key)):
            yield _object(entry, f"{key}[{index}]")

    def _per_destination(
        self, event_type: EventType, details: dict[str, Any], *, reason: Any = None
    ) -> list[Event]:
        recipients: list[str | None] = list(self._destination()) or [None]
        return [
            self._event({"emailAddress": r}, event_type, details, reason=reason) for r in recipients
        ]

    def _event(
        self,
        recipient: dict[str, Any],
        event_type: EventType,
        details: dict[str, Any],
        *,
        subtype: str | None = None,
        reason: Any = None,
        mta_response: Any = None,
        status: str | None = None,
    ) -> Event:
        address = _address(recipient.get("emailAddress"))
        provider_message_id = self.mail.get("messageId")
        return Event(
            id=stable_id(self.sns_id, address),
            message_id=self.message_id,
            recipient=address,
            provider=PROVIDER,
            instance=self.instance,
            type=event_type,
            at=_at(details.get("timestamp")) or self.default_at,
            subtype=subtype,
            reason=str(reason) if reason is not None else None,
            mta_response=str(mta_response) if mta_response is not None else None,
            provider_message_id=str(provider_message_id) if provider_message_id else None,
            raw=self.message,
            status=status,
        )
