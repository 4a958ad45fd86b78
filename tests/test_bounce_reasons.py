"""The bounce classifier (gomailpy.bounce_reasons), the auto-reply detector
(gomailpy.feedback.autoreply) and what each reason does to the suppression list
(gomailpy.store.suppressions.rule_for): pure logic, tables, no I/O.

The replies are what real servers write (Gmail, Microsoft 365, Yahoo, Postfix, Exim, qmail,
Spamhaus/Barracuda users, SendGrid, SES), shortened."""

from __future__ import annotations

import pytest

from gomailpy.bounce_reasons import (
    Category,
    Classification,
    Reason,
    classify,
    find_status,
    outcome,
    refine,
)
from gomailpy.events import Event, EventType
from gomailpy.feedback.autoreply import auto_reply_signal
from gomailpy.store.suppressions import SOFT, SuppressionKind, rule_for

# fmt: off
CLASSIFIED = [
    # text, status field, reason
    # -- the address is bad
    ("550 5.1.1 <a@x>: Recipient address rejected: User unknown in virtual mailbox table", None, "userunknown"),
    ("550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking", None, "userunknown"),
    ("554 delivery error: dd This user doesn't have a yahoo.com account (a@yahoo.com) [0]", None, "userunknown"),
    ("550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", None, "userunknown"),
    ("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", None, "userunknown"),
    ("Sorry, no mailbox here by that name. (#5.1.1)", None, "userunknown"),
    ("550 Requested action not taken: mailbox unavailable", None, "userunknown"),
    ("550 5.2.1 <a@x>... User Unknown", None, "userunknown"),  # text over a mailbox status
    ("", "5.1.1", "userunknown"),
    ("Host or domain name not found. Name service error for name=x.example type=MX", None, "hostunknown"),
    ("550 Unrouteable address", None, "hostunknown"),
    ("", "5.1.2", "hostunknown"),
    ("556 5.1.10 Recipient address has null MX", None, "notaccept"),
    # -- the mailbox cannot take it now
    ("552 5.2.2 <a@x>: Mailbox full", None, "mailboxfull"),
    ("452 4.2.2 The email account that you tried to reach is over quota", None, "mailboxfull"),
    ("", "5.0.0 (recipient reached disk quota)", "mailboxfull"),
    ("552 5.3.4 Message size exceeds fixed limit", None, "mesgtoobig"),
    ("550 5.2.1 The email account that you tried to reach is disabled", None, "suspend"),
    # -- the sender or the message was refused
    ("554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", None, "blocked"),
    ("554 Service unavailable; Client host [192.0.2.1] blocked using Barracuda Reputation", None, "blocked"),
    ("550 5.7.606 Access denied, banned sending IP [198.51.100.222]", None, "blocked"),
    ("550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150)", None, "blocked"),
    ("550-5.7.1 Our system has detected that this message is likely unsolicited mail", None, "spamdetected"),
    ("554 5.7.1 Message rejected as spam by Content Filtering", None, "spamdetected"),
    ("550 5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy", None, "authfailure"),
    ("550 5.7.509 Access denied, sending domain example.com does not pass DMARC verification", None, "authfailure"),
    ("550 5.7.23 The message was rejected because of Sender Policy Framework violation", None, "authfailure"),
    ("421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints", None, "badreputation"),
    ("421 4.7.28 Our system has detected an unusual rate of unsolicited mail", None, "spamdetected"),
    ("450 4.7.1 Client host rejected: cannot find your reverse hostname", None, "requireptr"),
    ("421 Too many concurrent SMTP connections; please try again later", None, "toomanyconn"),
    ("Throttling failure: Maximum sending rate exceeded", None, "toomanyconn"),
    ("451 4.7.650 The mail server has been temporarily rate limited due to IP reputation", None, "speeding"),
    ("550 5.7.1 Relaying denied", None, "norelaying"),
    ("553 5.1.8 <s@x>... Domain of sender address s@x does not exist", None, "rejected"),
    ("550 5.7.0 Local Policy Violation", None, "policyviolation"),
    ("550 5.7.1 <a@x>: Recipient address rejected: Access denied", None, "blocked"),  # a policy
    ("530 5.7.0 Must issue a STARTTLS command first", None, "securityerror"),
    ("", "5.7.1", "blocked"),
    ("", "5.7.26", "authfailure"),
    # -- transient
    ("Connection timed out", "4.4.1", "expired"),
    ("", "4.4.7", "expired"),
    ("Host or domain name not found. Name service error for name=x type=A: Host not found, try again", None, "networkerror"),
    ("451 4.3.0 Temporary local problem - please try later", None, "systemerror"),
    # -- nothing says why
    ("550 Transaction failed", None, "undefined"),
    ("", "5.0.0", "undefined"),
    (None, None, "undefined"),
]
# fmt: on


@pytest.mark.parametrize(("text", "status", "reason"), CLASSIFIED)
def test_reasons(text: str | None, status: str | None, reason: str) -> None:
    assert classify(text, status).reason.value == reason


@pytest.mark.parametrize(
    ("text", "status", "expected"),
    [
        ("550 5.1.1 user unknown", None, (EventType.BOUNCED, "hard")),
        ("550 5.7.1 blocked using zen.spamhaus.org", None, (EventType.BLOCKED, "soft")),
        ("552 5.2.2 mailbox full", None, (EventType.BOUNCED, "soft")),
        ("421 4.4.2 connection dropped", None, (EventType.BOUNCED, "soft")),
        ("550 5.1.10 null MX", None, (EventType.BOUNCED, "hard")),
        ("450 4.1.10 does not accept mail (nullmx)", None, (EventType.BOUNCED, "soft")),
        ("554 transaction failed", None, (EventType.BOUNCED, "soft")),
    ],
)
def test_outcome_by_category(
    text: str, status: str | None, expected: tuple[EventType, str]
) -> None:
    assert outcome(classify(text, status)) == expected


def test_undefined_is_hard_only_where_the_provider_judged_it_permanent() -> None:
    found = classify(None)
    assert outcome(found) == (EventType.BOUNCED, "soft")
    assert outcome(found, provider_permanent=True) == (EventType.BOUNCED, "hard")


def test_categories_cover_every_reason() -> None:
    assert {Classification(r).category for r in Reason} == set(Category)
    assert Classification(Reason.SUPPRESSED).category is Category.ADDRESS


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("smtp; 550 5.1.1 <a@x>", "5.1.1"),
        ("#5.1.1 bad address", "5.1.1"),
        ("550-5.7.26 Unauthenticated", "5.7.26"),
        ("connect to 192.5.1.1: refused", None),  # an IP address is no status
        ("Diagnostic 5 (Maximum-Time-Expired)", None),
    ],
)
def test_find_status(text: str, status: str | None) -> None:
    assert find_status(text) == status


def test_a_generic_status_yields_to_a_specific_one_in_the_text() -> None:
    found = classify("550 5.1.1 <a@x>... User unknown", "5.0.0")
    assert (found.reason, found.status) == (Reason.USERUNKNOWN, "5.1.1")


def test_refine_keeps_a_closer_reason_of_the_same_category_only() -> None:
    assert refine(Reason.USERUNKNOWN, classify("550 5.1.2 no such domain")).reason is (
        Reason.HOSTUNKNOWN
    )
    # A provider's "invalid address" with words of another category keeps the provider's name.
    assert refine(Reason.USERUNKNOWN, classify("452 4.2.2 mailbox full")).reason is (
        Reason.USERUNKNOWN
    )
    assert refine(None, classify("452 4.2.2 mailbox full")).reason is Reason.MAILBOXFULL


# --- auto-replies ---------------------------------------------------------------------------------


def _headers(**values: str) -> dict[str, str]:
    return {name.replace("_", "-").lower(): value for name, value in values.items()}


@pytest.mark.parametrize(
    ("headers", "subject", "body", "signal"),
    [
        (
            _headers(Auto_Submitted="auto-replied"),
            "Re: Hello",
            None,
            "auto-submitted: auto-replied",
        ),
        (
            _headers(Auto_Submitted="auto-replied (vacation)"),
            "x",
            None,
            "auto-submitted: auto-replied (vacation)",
        ),
        (_headers(X_Autoreply="yes"), "Re: Hello", None, "x-autoreply: yes"),
        (_headers(X_Autorespond="Hello"), "Re: Hello", None, "x-autorespond: Hello"),
        (_headers(Precedence="auto_reply"), "Re: Hello", None, "precedence: auto_reply"),
        ({}, "Out of Office: Hello", None, "subject"),
        ({}, "Automatic reply: Hello", None, "subject"),
        ({}, "Abwesenheitsnotiz: Hello", None, "subject"),
        ({}, "Réponse automatique : Hello", None, "subject"),
        ({}, "Respuesta automática: Hello", None, "subject"),
        ({}, "Risposta automatica: Hello", None, "subject"),
        ({}, "Automatisch antwoord: Hello", None, "subject"),
        ({}, "自動応答: Hello", None, "subject"),
        ({}, "Re: Hello", "Hi, I am out of the office until Monday.", "body"),
        # not auto-replies
        (_headers(Auto_Submitted="auto-generated"), "Re: Hello", None, None),
        (_headers(Precedence="bulk"), "Newsletter", None, None),
        ({}, "Re: Hello", "Thanks, see you Monday.", None),
    ],
)
def test_auto_replies(
    headers: dict[str, str], subject: str, body: str | None, signal: str | None
) -> None:
    assert auto_reply_signal(headers.get, "someone@example.org", subject, body) == signal


@pytest.mark.parametrize(
    ("sender", "subject"),
    [
        ("MAILER-DAEMON@mx.example.net", "Re: Hello"),
        ("someone@example.org", "Undelivered Mail Returned to Sender"),
        ("someone@example.org", "Mail delivery failed: returning message to sender"),
        ("postmaster@example.org", "Out of office"),
    ],
)
def test_a_delivery_failure_is_never_an_auto_reply(sender: str, subject: str) -> None:
    # Exim and others mark their bounces Auto-Submitted: auto-replied too.
    headers = _headers(Auto_Submitted="auto-replied")
    assert auto_reply_signal(headers.get, sender, subject) is None


# --- what each does to the suppression list -------------------------------------------------------


def _event(
    kind: EventType, subtype: str | None, reason: str | None, mta: str | None = None
) -> Event:
    return Event(
        id="e1",
        message_id="m1",
        recipient="a@example.org",
        provider="smtp",
        type=kind,
        at="2026-01-01T00:00:00Z",
        subtype=subtype,
        reason=reason,
        mta_response=mta,
    )


@pytest.mark.parametrize(
    ("event", "rule"),
    [
        (_event(EventType.BOUNCED, "hard", "userunknown"), SuppressionKind.HARD_BOUNCE),
        (_event(EventType.BOUNCED, "hard", "hostunknown"), SuppressionKind.HARD_BOUNCE),
        (_event(EventType.BOUNCED, "hard", "suppressed"), SuppressionKind.HARD_BOUNCE),
        (_event(EventType.BOUNCED, "hard", "undefined"), SuppressionKind.HARD_BOUNCE),
        (_event(EventType.BOUNCED, "soft", "mailboxfull"), SOFT),
        (_event(EventType.BOUNCED, "soft", "expired"), SOFT),
        (_event(EventType.BOUNCED, "soft", "userunknown"), SOFT),  # a temporary one
        # A refusal of the sender or message never suppresses, whatever its subtype says.
        (_event(EventType.BLOCKED, "soft", "blocked"), None),
        (_event(EventType.BOUNCED, "hard", "blocked"), None),
        (_event(EventType.BOUNCED, "hard", "authfailure"), None),
        (_event(EventType.BOUNCED, "soft", "spamdetected"), None),
        (_event(EventType.AUTORESPONDED, None, "autoreply"), None),
        (_event(EventType.DEFERRED, None, "mailboxfull"), None),
        # Older events, or free-text reasons: judged by the server's words.
        (
            _event(EventType.BOUNCED, "hard", "DSN failed 5.1.1", "550 5.1.1 unknown"),
            SuppressionKind.HARD_BOUNCE,
        ),
        (
            _event(
                EventType.BOUNCED,
                "hard",
                "refused at RCPT time",
                "554 5.7.1 blocked using zen.spamhaus.org",
            ),
            None,
        ),
        (_event(EventType.BOUNCED, "soft", "refused at RCPT time", "550 spam detected"), None),
        (_event(EventType.BOUNCED, "hard", "Permanent/General", None), SuppressionKind.HARD_BOUNCE),
    ],
)
def test_what_suppresses(event: Event, rule: SuppressionKind | str | None) -> None:
    assert rule_for(event) == rule
