"""Reading relay reports (gomailpy.feedback.dsn) and VERP addresses (gomailpy.email.verp), without
I/O.

The samples in tests/data/bounces/ are shaped like what real servers send: a Postfix bounce
(two recipients, one hard, one mailbox-full) and delay warning, an Exchange Online NDR, an ARF
abuse report from a feedback loop, an out-of-office reply and a report missing its status part.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest

from gomailpy.email.verp import is_bounce_address, message_id_from, verp_address
from gomailpy.errors import EventFormatError
from gomailpy.events import EventType
from gomailpy.feedback.dsn import MAX_KEPT_BYTES, parse_bounce
from gomailpy.feedback.parse import parse_report
from gomailpy_local.standins.reports import complaint_report, delivery_report

SAMPLES = Path(__file__).parent / "data" / "bounces"
POSTFIX_ID = "5f0c1a2e-7b7d-4a57-9a0e-3c2d1b0a9f88"
DOMAIN = "bounces.example.com"


def sample(name: str) -> bytes:
    # Stored with LF line ends; on the wire every line ends in CRLF.
    return (SAMPLES / name).read_bytes().replace(b"\n", b"\r\n")


def report(data: bytes, rcpt: str = f"bounces+{POSTFIX_ID}@{DOMAIN}") -> dict[str, Any]:
    return {
        "source": "smtp",
        "receivedAt": 1764300000.0,
        "mailFrom": "",
        "rcptTo": [rcpt],
        "message": base64.b64encode(data).decode(),
    }


def outcomes(events: list[Any]) -> list[tuple[str | None, str, str | None, str | None]]:
    return [(e.recipient, e.type.value, e.subtype, e.message_id) for e in events]


# --- VERP ----------------------------------------------------------------------------------------


def test_verp_round_trip() -> None:
    address = verp_address(POSTFIX_ID, DOMAIN)
    assert address == f"bounces+{POSTFIX_ID}@{DOMAIN}"
    assert message_id_from(address, DOMAIN) == POSTFIX_ID
    assert message_id_from(f"<{address}>") == POSTFIX_ID  # any domain: as parse_bounce reads it
    assert message_id_from(address, "other.example") is None
    assert is_bounce_address(address, "BOUNCES.example.com")
    assert is_bounce_address(f"bounces@{DOMAIN}", DOMAIN)  # feedback loops' fixed address


@pytest.mark.parametrize(
    "address",
    [
        "postmaster@bounces.example.com",
        "bounces+@bounces.example.com",
        "bounces+x y@bounces.example.com",
        "bounces+abc@elsewhere.example",
    ],
)
def test_other_addresses_are_not_bounce_addresses(address: str) -> None:
    assert not is_bounce_address(address, DOMAIN)


@pytest.mark.parametrize("message_id", ["has space", "a@b", "x" * 57, "", "-leading-dash"])
def test_an_id_that_fits_no_local_part_gets_no_verp_address(message_id: str) -> None:
    assert verp_address(message_id, DOMAIN) is None


def test_the_longest_id_still_fits_a_local_part() -> None:
    address = verp_address("x" * 56, DOMAIN)
    assert address is not None and len(address.partition("@")[0]) == 64


# --- DSNs and complaints -------------------------------------------------------------------------


def test_postfix_bounce_hard_and_mailbox_full() -> None:
    events = parse_bounce(report(sample("postfix-hard.eml")))
    assert outcomes(events) == [
        ("nobody@example.org", "bounced", "hard", POSTFIX_ID),
        ("full@example.org", "bounced", "soft", POSTFIX_ID),  # 5.2.2: the address is fine
    ]
    hard = events[0]
    assert hard.provider == "smtp"
    assert hard.mta_response == (
        "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual"
        " mailbox table"
    )
    assert (hard.reason, hard.status) == ("userunknown", "5.1.1")
    assert (events[1].reason, events[1].status) == ("mailboxfull", "5.2.2")
    assert hard.raw["fields"]["status"] == "5.1.1"
    assert hard.raw["fields"]["message.reporting-mta"] == "dns; mail.relay.example.net"
    assert hard.at == "2025-11-28T03:20:00Z"  # when the listener received it (receivedAt)
    assert hard.raw["reportedAt"] == "2026-11-26T10:15:03Z"  # the report's own Date


def test_postfix_delay_warning_is_deferred() -> None:
    [event] = parse_bounce(report(sample("postfix-delayed.eml")))
    assert outcomes([event]) == [("slow@example.net", "deferred", None, POSTFIX_ID)]
    assert event.mta_response and "Connection timed out" in event.mta_response


def test_exchange_ndr_with_a_five_part_status() -> None:
    data = sample("exchange-hard.eml")
    [event] = parse_bounce(report(data, f"bounces+0d4e8c7a9b3f4e21a6c5d8e7f9a0b1c2@{DOMAIN}"))
    assert outcomes([event]) == [
        ("Nobody@contoso.com", "bounced", "hard", "0d4e8c7a9b3f4e21a6c5d8e7f9a0b1c2")
    ]
    assert (event.reason, event.status) == ("userunknown", "5.1.10")
    assert event.mta_response and event.mta_response.startswith("550 5.1.10 RESOLVER.ADR")


def test_without_verp_the_returned_message_names_the_email() -> None:
    # Sent to the plain address: X-Gomailpy-Id (or our Message-ID) of the returned message.
    [event] = parse_bounce(report(sample("exchange-hard.eml"), f"bounces@{DOMAIN}"))
    assert event.message_id == "0d4e8c7a9b3f4e21a6c5d8e7f9a0b1c2"
    [deferred] = parse_bounce(report(sample("postfix-delayed.eml"), f"bounces@{DOMAIN}"))
    assert deferred.message_id == POSTFIX_ID  # from text/rfc822-headers' Message-ID


def test_arf_complaint_from_a_feedback_loop() -> None:
    [event] = parse_bounce(report(sample("arf-complaint.eml"), f"bounces@{DOMAIN}"))
    assert outcomes([event]) == [
        ("reader@mailbox.example.net", "complained", None, "7c3e1f00-aa11-4b22-8c33-d44e55f66a77")
    ]
    assert event.reason == "ARF abuse"
    assert event.raw["fields"]["reported-domain"] == "example.com"


def test_arf_without_original_rcpt_to_uses_the_returned_to() -> None:
    data = sample("arf-complaint.eml").replace(
        b"Original-Rcpt-To: <reader@mailbox.example.net>\r\n", b""
    )
    [event] = parse_bounce(report(data))
    assert (event.type, event.recipient) == (EventType.COMPLAINED, "reader@mailbox.example.net")


def test_not_spam_feedback_is_no_complaint() -> None:
    data = sample("arf-complaint.eml").replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    [event] = parse_bounce(report(data))
    assert event.type is EventType.UNKNOWN


def test_an_out_of_office_reply_is_autoresponded_not_a_bounce() -> None:
    [event] = parse_bounce(report(sample("autoreply.eml")))
    assert outcomes([event]) == [("someone@example.org", "autoresponded", None, POSTFIX_ID)]
    assert event.reason == "autoreply"
    assert event.raw["fields"]["signal"] == "auto-submitted: auto-replied"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("malformed-dsn.eml", "a delivery-status report without per-recipient fields"),
    ],
)
def test_what_cannot_be_read_is_kept_as_unknown(name: str, reason: str) -> None:
    data = sample(name)
    [event] = parse_bounce(report(data))
    assert event.type is EventType.UNKNOWN
    assert event.reason == reason
    assert event.message_id == POSTFIX_ID  # still joined to its email, by the VERP address
    assert base64.b64decode(event.raw["message"]) == data  # kept whole for inspection
    assert event.raw["truncated"] is False


def test_a_block_with_an_unknown_action_is_unknown_for_that_recipient() -> None:
    data = sample("postfix-hard.eml").replace(
        b"Action: failed\r\nStatus: 5.2.2", b"Action: mangled\r\nStatus: 5.2.2"
    )
    events = parse_bounce(report(data))
    assert outcomes(events) == [
        ("nobody@example.org", "bounced", "hard", POSTFIX_ID),
        ("full@example.org", "unknown", None, POSTFIX_ID),
    ]


def test_a_huge_unreadable_report_is_kept_cut() -> None:
    data = sample("malformed-dsn.eml") + b"x" * (2 * MAX_KEPT_BYTES)
    [event] = parse_bounce(report(data))
    assert event.raw["truncated"] is True
    assert len(base64.b64decode(event.raw["message"])) == MAX_KEPT_BYTES


def test_a_report_cut_short_still_gives_its_bounces() -> None:
    # The listener cuts a message too large for a queue message; the report parts come first.
    data = sample("postfix-hard.eml")
    cut = data[: data.index(b"Hello there.")]
    assert outcomes(parse_bounce(report(cut)))[0] == (
        "nobody@example.org",
        "bounced",
        "hard",
        POSTFIX_ID,
    )


def test_the_same_report_gives_the_same_event_ids() -> None:
    first = parse_bounce(report(sample("postfix-hard.eml")))
    again = parse_bounce(report(sample("postfix-hard.eml")))
    assert [e.id for e in first] == [e.id for e in again]
    assert len({e.id for e in first}) == 2


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"source": "smtp", "message": "not base64 at all!"}, "not base64"),
        (
            {"source": "smtp", "message": base64.b64encode(b"\x00\x01binary").decode()},
            "not an email",
        ),
        ({"source": "smtp", "message": ""}, "not an email"),
        ({"source": "smtp"}, "without a `message`"),
    ],
)
def test_a_body_that_is_no_email_is_refused(body: dict[str, Any], complaint: str) -> None:
    with pytest.raises(EventFormatError, match=complaint):
        parse_bounce(body)
    with pytest.raises(EventFormatError, match=f"smtp: .*{complaint}"):
        parse_report(json.dumps(body))  # the consumer's entry point says the same


# --- the stand-in's reports read back ------------------------------------------------------------

ORIGINAL = (
    b"From: Sender <sender@example.com>\r\nTo: bounce@example.org\r\nSubject: Hi\r\n"
    b"Message-ID: <abc123@gomailpy>\r\n\r\nHello.\r\n"
)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("failed", ("bounce@example.org", "bounced", "hard", "abc123")),
        ("delayed", ("bounce@example.org", "deferred", None, "abc123")),
        ("complaint", ("bounce@example.org", "complained", None, "abc123")),
    ],
)
def test_standin_reports_read_back(kind: str, expected: tuple[str, str, str | None, str]) -> None:
    to = f"bounces+abc123@{DOMAIN}"
    if kind == "complaint":
        data = complaint_report(ORIGINAL, "bounce@example.org", to=to)
    else:
        data = delivery_report(ORIGINAL, "bounce@example.org", action=kind, to=to)
    assert outcomes(parse_bounce(report(data, to))) == [expected]


def test_mangled_reports_give_events_or_a_format_error_never_a_crash() -> None:
    # Byte-level damage to every sample: whatever comes out is events, or EventFormatError.
    samples = [sample(path.name) for path in sorted(SAMPLES.glob("*.eml"))]
    noise = [b"\r\n", b";", b"<", b">", b"=?utf-8?q?", b"\r\n\r\n", b"--", b":", b"\x00", b"\xff"]
    rnd = random.Random(15)
    for _ in range(400):
        data = bytearray(rnd.choice(samples))
        for _ in range(rnd.randint(1, 20)):
            at = rnd.randrange(len(data))
            if rnd.random() < 0.5:
                data[at] = rnd.randrange(256)
            else:
                data[at:at] = rnd.choice(noise)
        try:
            events = parse_bounce(report(bytes(data)))
        except EventFormatError:
            continue
        assert events and all(json.dumps(e.to_json()) for e in events)


# --- RFC 3464 as MTAs really write it ------------------------------------------------------------

STATUS_FIELDS = (
    "Reporting-MTA: dns; mx.example.net\r\n\r\n"
    "Original-Recipient: rfc822;first@example.org\r\n"
    "Final-Recipient: rfc822; first-alias@example.org\r\n"
    "Action: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <first@example.org>: Recipient address\r\n"
    "  rejected: User unknown\r\n\r\n"
    "Final-Recipient: <second@example.org>\r\n"
    "Action: delayed\r\nStatus: 4.2.2\r\n"
    "Diagnostic-Code: smtp; 452 4.2.2 Mailbox full\r\n"
)


def dsn(
    fields: str,
    *,
    top: str = "multipart/report; report-type=delivery-status",
    encoding: str | None = None,
) -> bytes:
    header = f"Content-Transfer-Encoding: {encoding}\r\n" if encoding else ""
    return (
        "From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\n"
        f'Message-ID: <dsn-1@mx.example.net>\r\nContent-Type: {top}; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        f"--B\r\nContent-Type: message/delivery-status\r\n{header}\r\n{fields}\r\n--B--\r\n"
    ).encode()


def shapes() -> dict[str, bytes]:
    quoted = STATUS_FIELDS.replace(
        "Recipient address\r\n  rejected", "Recipient address=\r\n rejected"
    )
    return {
        "as written": dsn(STATUS_FIELDS),
        "no report-type": dsn(STATUS_FIELDS, top="multipart/report"),
        "misspelt report-type": dsn(
            STATUS_FIELDS, top="multipart/report; report-typ=delivery-status"
        ),
        "multipart/mixed": dsn(STATUS_FIELDS, top="multipart/mixed"),
        "base64 part": dsn(base64.encodebytes(STATUS_FIELDS.encode()).decode(), encoding="base64"),
        "quoted-printable part": dsn(quoted, encoding="quoted-printable"),
        "no blank lines": dsn(STATUS_FIELDS.replace("\r\n\r\n", "\r\n")),
        "lower-case names": dsn(STATUS_FIELDS.replace("Final-Recipient", "final-recipient")),
    }


@pytest.mark.parametrize("shape", sorted(shapes()))
def test_dsns_in_every_shape_real_mtas_send(shape: str) -> None:
    events = parse_bounce(report(shapes()[shape]))
    assert [(e.recipient, e.type.value, e.subtype, e.reason, e.status) for e in events] == [
        # Original-Recipient (the address sent to) wins over Final-Recipient.
        ("first@example.org", "bounced", "hard", "userunknown", "5.1.1"),
        # No rfc822; type, angle brackets: still read; a delay is deferred, with its reason.
        ("second@example.org", "deferred", None, "mailboxfull", "4.2.2"),
    ]
    assert events[0].mta_response == (
        "550 5.1.1 <first@example.org>: Recipient address rejected: User unknown"
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # OpenSMTPD's "error", a comment after the action, "failure", no Action at all.
        ("Final-Recipient: rfc822; a@x.example\r\nAction: error\r\nStatus: 5.1.1\r\n", "bounced"),
        (
            "Final-Recipient: rfc822; a@x.example\r\nAction: failed (bad address)\r\nStatus: 5.1.1\r\n",
            "bounced",
        ),
        ("Final-Recipient: rfc822; a@x.example\r\nAction: failure\r\nStatus: 5.1.1\r\n", "bounced"),
        ("Final-Recipient: rfc822; a@x.example\r\nStatus: 5.1.1\r\n", "bounced"),
        ("Final-Recipient: rfc822; a@x.example\r\nStatus: 4.4.1\r\n", "deferred"),
        # The same recipient twice (a block per attempt): one event.
        (
            "Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n" * 3,
            "bounced",
        ),
    ],
)
def test_lenient_actions(fields: str, expected: str) -> None:
    [event] = parse_bounce(report(dsn(fields)))
    assert (event.recipient, event.type.value) == ("a@x.example", expected)


def test_a_policy_block_in_a_dsn_is_blocked_not_a_hard_bounce() -> None:
    # The old reader took every 5.x.x as hard: this recipient's mailbox is fine.
    fields = (
        "Final-Recipient: rfc822; fine@example.org\r\nAction: failed\r\nStatus: 5.7.1\r\n"
        "Diagnostic-Code: smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked"
        " using zen.spamhaus.org\r\n"
    )
    [event] = parse_bounce(report(dsn(fields)))
    assert (event.type, event.subtype, event.reason, event.status) == (
        EventType.BLOCKED,
        "soft",
        "blocked",
        "5.7.1",
    )


def test_an_arf_dmarc_failure_report_is_no_complaint() -> None:
    data = sample("arf-complaint.eml").replace(
        b"Feedback-Type: abuse", b"Feedback-Type: auth-failure"
    )
    [event] = parse_bounce(report(data))
    assert event.type is EventType.UNKNOWN


def test_an_arf_report_without_report_type_still_reads() -> None:
    data = sample("arf-complaint.eml").replace(b"report-type=feedback-report;", b"")
    [event] = parse_bounce(report(data))
    assert (event.type, event.recipient) == (EventType.COMPLAINED, "reader@mailbox.example.net")
