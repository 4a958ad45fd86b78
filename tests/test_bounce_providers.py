"""SES's and SendGrid's bounces onto the same reasons as relays' DSNs (gomailpy.feedback.ses,
gomailpy.feedback.sendgrid, gomailpy.bounce_reasons), without I/O:

- every bounceType/bounceSubType pair SES documents ("Amazon SNS notification contents for
  Amazon SES": bounce types), and SES's published example records (tests/data/ses/);
- every example record of SendGrid's Event Webhook Reference as published
  (tests/data/sendgrid/event_webhook_examples.json), and each bounce_classification it lists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gomailpy.events import Event, EventType
from gomailpy.feedback.sendgrid import parse_sendgrid
from gomailpy.feedback.ses import parse_sns
from gomailpy.store.suppressions import SOFT, rule_for
from tests.test_events_ses import sns

DATA = Path(__file__).parent / "data"
SES: dict[str, Any] = json.loads((DATA / "ses" / "notifications.json").read_text())
SENDGRID: dict[str, Any] = json.loads(
    (DATA / "sendgrid" / "event_webhook_examples.json").read_text()
)


def outcome(event: Event) -> tuple[str, str | None, str | None]:
    return event.type.value, event.subtype, event.reason


def ses_bounce(bounce_type: str, subtype: str, recipient: dict[str, Any]) -> Event:
    message = json.loads(json.dumps(SES["event_bounce"]))
    message["bounce"].update(
        {"bounceType": bounce_type, "bounceSubType": subtype, "bouncedRecipients": [recipient]}
    )
    [event] = parse_sns(sns(message))
    return event


NO_DSN = {"emailAddress": "recipient@example.com"}
BLOCKLISTED = {
    "emailAddress": "recipient@example.com",
    "action": "failed",
    "status": "5.7.1",
    "diagnosticCode": "smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked"
    " using zen.spamhaus.org",
}
UNKNOWN_USER = {
    "emailAddress": "recipient@example.com",
    "action": "failed",
    "status": "5.1.1",
    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
}


@pytest.mark.parametrize(
    ("bounce_type", "subtype", "recipient", "expected", "rule"),
    [
        # Every pair SES documents, as SES sends it (no diagnostic: the pair is all there is).
        ("Undetermined", "Undetermined", NO_DSN, ("bounced", "soft", "undefined"), SOFT),
        ("Permanent", "General", NO_DSN, ("bounced", "hard", "undefined"), "hard-bounce"),
        ("Permanent", "NoEmail", NO_DSN, ("bounced", "hard", "userunknown"), "hard-bounce"),
        ("Permanent", "Suppressed", NO_DSN, ("bounced", "hard", "suppressed"), "hard-bounce"),
        (
            "Permanent",
            "OnAccountSuppressionList",
            NO_DSN,
            ("bounced", "hard", "suppressed"),
            "hard-bounce",
        ),
        ("Transient", "General", NO_DSN, ("bounced", "soft", "undefined"), SOFT),
        ("Transient", "MailboxFull", NO_DSN, ("bounced", "soft", "mailboxfull"), SOFT),
        ("Transient", "MessageTooLarge", NO_DSN, ("bounced", "soft", "mesgtoobig"), SOFT),
        ("Transient", "ContentRejected", NO_DSN, ("blocked", "soft", "contenterror"), None),
        ("Transient", "AttachmentRejected", NO_DSN, ("blocked", "soft", "policyviolation"), None),
        # The recipient's own status and diagnostic say more where the pair says little.
        ("Permanent", "General", UNKNOWN_USER, ("bounced", "hard", "userunknown"), "hard-bounce"),
        ("Permanent", "General", BLOCKLISTED, ("blocked", "soft", "blocked"), None),
        ("Transient", "General", BLOCKLISTED, ("blocked", "soft", "blocked"), None),
        ("Transient", "ContentRejected", BLOCKLISTED, ("blocked", "soft", "blocked"), None),
        # Only a Permanent bounce is hard, whatever the diagnostic says.
        ("Transient", "General", UNKNOWN_USER, ("bounced", "soft", "userunknown"), SOFT),
        ("Undetermined", "Undetermined", UNKNOWN_USER, ("bounced", "soft", "userunknown"), SOFT),
    ],
)
def test_every_documented_ses_bounce_type(
    bounce_type: str,
    subtype: str,
    recipient: dict[str, Any],
    expected: tuple[str, str, str],
    rule: str | None,
) -> None:
    event = ses_bounce(bounce_type, subtype, recipient)
    assert outcome(event) == expected
    assert rule_for(event) == rule


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "identity_bounce",
            [("jane@example.com", ("bounced", "hard", "userunknown"), "5.1.1")],
        ),
        (
            "identity_bounce_without_dsn",
            [
                ("jane@example.com", ("bounced", "hard", "undefined"), None),
                ("richard@example.com", ("bounced", "hard", "undefined"), None),
            ],
        ),
        (
            "event_bounce",
            [("recipient@example.com", ("bounced", "hard", "userunknown"), "5.1.1")],
        ),
        (
            "event_delivery_delay",
            [("recipient@example.com", ("deferred", None, "networkerror"), "4.4.1")],
        ),
    ],
)
def test_ses_published_examples(
    name: str, expected: list[tuple[str, tuple[str, str | None, str], str | None]]
) -> None:
    events = parse_sns(sns(SES[name]))
    assert [(e.recipient, outcome(e), e.status) for e in events] == expected


# --- SendGrid -------------------------------------------------------------------------------------

SENDGRID_EXPECTED: dict[str, list[tuple[str, str | None, str | None]]] = {
    "all_events": [
        ("sent", None, None),
        ("deferred", None, "systemerror"),  # "400 try again later"
        ("delivered", None, None),
        ("opened", None, None),
        ("clicked", None, "http://www.sendgrid.com/"),
        # "500 unknown recipient", Invalid Address, no type: a permanent bounce, a bad address.
        ("bounced", "hard", "userunknown"),
        ("dropped", None, "Bounced Address"),
        ("complained", None, None),
        ("unsubscribed", None, None),
        ("unsubscribed", None, None),
        ("unknown", None, "SendGrid group_resubscribe"),
        ("unknown", None, "SendGrid account_status_change"),
    ],
    "processed": [("sent", None, None)],
    "dropped": [("dropped", None, "Bounced Address")],
    "delivered": [("delivered", None, None)],
    "deferred": [("deferred", None, "systemerror")],
    "bounce": [("bounced", "hard", "userunknown")],
    # SendGrid's blocked example names an invalid address: soft (a block is for now), a bounce.
    "blocked": [("bounced", "soft", "userunknown")],
}


@pytest.mark.parametrize("name", sorted(SENDGRID_EXPECTED))
def test_sendgrid_published_examples(name: str) -> None:
    events = parse_sendgrid(SENDGRID[name])
    assert [outcome(e) for e in events] == SENDGRID_EXPECTED[name]


def test_sendgrid_examples_are_all_tested() -> None:
    assert set(SENDGRID) - {"_about"} == set(SENDGRID_EXPECTED)


def sendgrid_bounce(kind: str, classification: str | None, reason: str, status: str) -> Event:
    entry: dict[str, Any] = {
        **SENDGRID["bounce"][0],
        "type": kind,
        "reason": reason,
        "status": status,
    }
    if classification is None:
        del entry["bounce_classification"]
    else:
        entry["bounce_classification"] = classification
    [event] = parse_sendgrid([entry])
    return event


@pytest.mark.parametrize(
    ("kind", "classification", "reason", "status", "expected", "rule"),
    [
        # Each documented bounce_classification, with a reply of its kind.
        (
            "bounce",
            "Invalid Address",
            "550 5.1.1 user unknown",
            "5.1.1",
            ("bounced", "hard", "userunknown"),
            "hard-bounce",
        ),
        (
            "bounce",
            "Mailbox Unavailable",
            "552 5.2.2 mailbox full",
            "5.2.2",
            ("bounced", "soft", "mailboxfull"),
            SOFT,
        ),
        (
            "bounce",
            "Mailbox Unavailable",
            "550 5.0.0 unavailable",
            "5.0.0",
            ("bounced", "soft", "suspend"),
            SOFT,
        ),
        (
            "blocked",
            "Content",
            "554 5.7.1 message rejected as spam",
            "5.7.1",
            ("blocked", "soft", "spamdetected"),
            None,
        ),
        (
            "blocked",
            "Reputation",
            "554 5.7.1 blocked using zen.spamhaus.org",
            "5.7.1",
            ("blocked", "soft", "blocked"),
            None,
        ),
        (
            "blocked",
            "Reputation",
            "550 5.0.0 not accepted",
            "5.0.0",
            ("blocked", "soft", "badreputation"),
            None,
        ),
        (
            "blocked",
            "Frequency or Volume Too High",
            "421 4.7.0 try again later",
            "4.7.0",
            ("blocked", "soft", "speeding"),
            None,
        ),
        (
            "bounce",
            "Technical Failure",
            "554 5.0.0 error",
            "5.0.0",
            ("bounced", "soft", "systemerror"),
            SOFT,
        ),
        (
            "bounce",
            "Unclassified",
            "550 5.7.26 DMARC policy",
            "5.7.26",
            ("blocked", "soft", "authfailure"),
            None,
        ),
        (
            "bounce",
            "Unclassified",
            "550 5.0.0 rejected",
            "5.0.0",
            ("bounced", "hard", "undefined"),
            "hard-bounce",
        ),
        ("blocked", None, "550 5.0.0 rejected", "5.0.0", ("blocked", "soft", "blocked"), None),
    ],
)
def test_every_sendgrid_bounce_classification(
    kind: str,
    classification: str | None,
    reason: str,
    status: str,
    expected: tuple[str, str, str],
    rule: str | None,
) -> None:
    event = sendgrid_bounce(kind, classification, reason, status)
    assert outcome(event) == expected
    assert rule_for(event) == rule
    assert event.raw["bounce_classification" if classification else "type"] is not None
    assert event.type in (EventType.BOUNCED, EventType.BLOCKED)
