"""Which reports may suppress an address: an SMTP report only for a recipient of its email.

The bounce listener (`gomail bounces`) takes mail from the whole internet, and every email shows
its message id (`X-Gomailpy-Id`, the VERP Return-Path `bounces+<id>@…`). So anyone could mail
it a DSN or ARF report "from" any email about any address, and suppress that address. SES's and
SendGrid's reports are authenticated by their transport (SNS over IAM, a signed webhook); an
SMTP report (`provider == "smtp"`) is not, so it suppresses only when its recipient is one the
email it names was sent to through the SMTP relay:

    await outcomes.record(sent_through_smtp(envelope, result, now))   # at settlement
    trusted, refused = await vouched(events, outcomes)                  # at the event consumer

A refused report is still recorded (it shows in the email's timeline and the event feed); it
just does not suppress, nor count toward the provider's bounce rate. The recipients are
recorded only for emails an SMTP relay accepted: SES and SendGrid take their bounces
themselves (their Return-Path is theirs), so no genuine SMTP report is about their emails.
"""

from __future__ import annotations

from collections.abc import Sequence

from gomailpy.email.envelope import Envelope
from gomailpy.events import Event, EventType, iso, stable_id
from gomailpy.providers.base import Outcome, SendResult
from gomailpy.store.events import EventStore
from gomailpy.store.suppressions import address_key, rule_for

UNAUTHENTICATED = frozenset({"smtp"})  # providers whose reports anyone can send
SMTP_PROVIDER = "smtp"


def sent_through_smtp(envelope: Envelope, result: SendResult, now: float) -> list[Event]:
    """gomailpy's `sent` event per recipient of an email an SMTP relay accepted (none for
    another provider or outcome): what `vouched` checks a report's recipient against. The ids
    are the ones the webhooks' `sent` events carry (gomailpy.webhooks.outbox.send_events)."""
    if result.provider != SMTP_PROVIDER or result.outcome is not Outcome.ACCEPTED:
        return []
    return [
        Event(
            id=stable_id(envelope.id, address.email.lower(), EventType.SENT.value),
            message_id=envelope.id,
            recipient=address.email,
            provider=result.provider,
            type=EventType.SENT,
            at=iso(now),
            provider_message_id=result.provider_message_id,
        )
        for address in envelope.email.recipients
    ]


def needs_voucher(event: Event) -> bool:
    """Would this event suppress, and could anyone have sent it?"""
    return event.provider in UNAUTHENTICATED and rule_for(event) is not None


def _sent_to(events: Sequence[Event]) -> set[str]:
    # Only gomailpy's own `sent` events: no report parser makes one, so a forged report
    # recorded earlier (it is kept) never vouches for the next one.
    return {
        address_key(e.recipient)
        for e in events
        if e.type is EventType.SENT and e.recipient and e.provider == SMTP_PROVIDER
    }


async def vouched(
    events: Sequence[Event], outcomes: EventStore | None
) -> tuple[list[Event], list[tuple[Event, str]]]:
    """Split `events` into those that may suppress and those that may not (with why). One
    outcome-store read per email named by a report that needs a voucher; a failed read raises
    StoreError (the consumer leaves the batch for later)."""
    trusted: list[Event] = []
    refused: list[tuple[Event, str]] = []
    recipients: dict[str, set[str]] = {}
    for event in events:
        if not needs_voucher(event):
            trusted.append(event)
            continue
        assert event.recipient is not None  # rule_for answers None without one
        if event.message_id is None:
            refused.append((event, "the report names no email of ours"))
            continue
        if outcomes is None:
            refused.append((event, "no outcome store: the email's recipients are unknown"))
            continue
        if event.message_id not in recipients:
            recipients[event.message_id] = _sent_to(await outcomes.events(event.message_id))
        if address_key(event.recipient) in recipients[event.message_id]:
            trusted.append(event)
        else:
            refused.append(
                (
                    event,
                    f"{event.recipient} is not a recipient of email {event.message_id}"
                    " as sent through the SMTP relay (a forged or misdirected report?)",
                )
            )
    return trusted, refused
