"""build_message: what a recipient's mail client will read, parsed back with the stdlib."""

from __future__ import annotations

import base64
import email
import email.policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

from gomailpy.email.envelope import Envelope
from gomailpy.email.mime import all_recipients, build_message, message_bytes, needs_smtputf8
from gomailpy.email.models import Address, Attachment, Email, parse_send_request


def envelope_of(**fields: object) -> Envelope:
    base: dict[str, object] = {
        "sender": Address(email="sender@example.com", name="The Sender"),
        "to": [Address(email="to@example.com", name="To Person")],
        "subject": "Hello",
        "text": "plain body",
    }
    base.update(fields)
    return Envelope.wrap(Email.model_validate(base), message_id="msg-123")


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_headers_from_the_email_fields() -> None:
    envelope = envelope_of(
        to=[Address(email="a@example.com", name="A"), Address(email="b@example.com")],
        cc=[Address(email="c@example.com", name="C")],
        bcc=[Address(email="hidden@example.com", name="Hidden")],
        reply_to=Address(email="reply@example.com"),
    )
    raw = message_bytes(build_message(envelope))
    message = parse(raw)

    assert message["From"] == "The Sender <sender@example.com>"
    assert [a.addr_spec for a in message["To"].addresses] == ["a@example.com", "b@example.com"]
    assert message["To"].addresses[0].display_name == "A"
    assert message["Cc"] == "C <c@example.com>"
    assert message["Reply-To"] == "reply@example.com"
    assert message["Subject"] == "Hello"
    assert message["Message-ID"] == "<msg-123@gomailpy>"
    assert parsedate_to_datetime(message["Date"]) == envelope.created_at.replace(microsecond=0)
    assert message["Bcc"] is None
    assert b"hidden@example.com" not in raw and b"Hidden" not in raw
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


def test_all_recipients_are_to_cc_and_bcc_once_each() -> None:
    envelope = envelope_of(
        to=[Address(email="a@example.com"), Address(email="b@example.com")],
        cc=[Address(email="c@example.com"), Address(email="A@example.com")],
        bcc=[Address(email="d@example.com")],
    )
    assert all_recipients(envelope.email) == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
    ]


def test_text_only_is_a_single_plain_part() -> None:
    message = parse(message_bytes(build_message(envelope_of(text="just text"))))
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "just text"


def test_html_only_is_a_single_html_part() -> None:
    message = parse(message_bytes(build_message(envelope_of(text=None, html="<b>hi</b>"))))
    assert message.get_content_type() == "text/html"
    assert "<b>hi</b>" in message.get_content()


def test_text_and_html_are_alternatives_with_text_first() -> None:
    message = parse(message_bytes(build_message(envelope_of(text="plain", html="<p>rich</p>"))))
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    body = message.get_body(preferencelist=("html",))
    assert body is not None and "<p>rich</p>" in body.get_content()


def test_attachments_make_a_mixed_message() -> None:
    pdf = b"%PDF-1.4 not really a pdf \x00\xff"
    envelope = envelope_of(
        text="see attached",
        html="<p>see attached</p>",
        attachments=[
            Attachment(
                filename="report.pdf",
                content_type="application/pdf",
                content=base64.b64encode(pdf).decode(),
            ),
            Attachment(filename="notes.txt", content=base64.b64encode(b"notes").decode()),
        ],
    )
    message = parse(message_bytes(build_message(envelope)))
    assert message.get_content_type() == "multipart/mixed"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and body.get_content().strip() == "see attached"
    attachments = list(message.iter_attachments())
    assert [(a.get_filename(), a.get_content_type()) for a in attachments] == [
        ("report.pdf", "application/pdf"),
        ("notes.txt", "application/octet-stream"),
    ]
    assert attachments[0].get_content() == pdf


def test_only_allow_listed_custom_headers_are_written() -> None:
    envelope = envelope_of(
        headers={
            "X-Campaign": "spring",
            "List-Unsubscribe": "<mailto:unsubscribe@example.com>",
            "Bcc": "sneaky@example.com",
            "From": "forged@example.com",
            "Received": "from nowhere",
        }
    )
    raw = message_bytes(build_message(envelope))
    message = parse(raw)
    assert message["X-Campaign"] == "spring"
    assert message["List-Unsubscribe"] == "<mailto:unsubscribe@example.com>"
    assert message.get_all("From") == ["The Sender <sender@example.com>"]
    assert message["Received"] is None and message["Bcc"] is None
    assert b"sneaky@example.com" not in raw


def test_international_names_subject_and_domains_are_encoded_as_ascii() -> None:
    envelope = envelope_of(
        sender=Address(email="jorg@bücher.example", name="Jörg Müller, Esq."),
        to=[Address(email="zoe@example.com", name="Zoë 山田")],
        subject="Grüße aus Köln — " + "lang " * 30,
        text="Schöne Grüße",
        attachments=[Attachment(filename="résumé.txt", content=base64.b64encode(b"x").decode())],
    )
    assert not needs_smtputf8(envelope.email)
    raw = message_bytes(build_message(envelope))
    assert raw.isascii()  # names, subject and body encoded: any relay carries it
    message = parse(raw)
    sender = message["From"].addresses[0]
    assert sender.display_name == "Jörg Müller, Esq."
    assert sender.addr_spec == "jorg@xn--bcher-kva.example"
    assert message["To"].addresses[0].display_name == "Zoë 山田"
    assert message["Subject"] == envelope.email.subject
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and body.get_content().strip() == "Schöne Grüße"
    assert [a.get_filename() for a in message.iter_attachments()] == ["résumé.txt"]
    assert all_recipients(envelope.email) == ["zoe@example.com"]


def test_non_ascii_local_part_needs_smtputf8() -> None:
    envelope = envelope_of(to=[Address(email="用户@例子.example", name="用户")])
    assert needs_smtputf8(envelope.email)
    raw = message_bytes(build_message(envelope))
    assert "用户".encode() in raw  # UTF-8 headers (RFC 6532), not encoded words
    message = email.message_from_string(raw.decode("utf-8"), policy=email.policy.SMTPUTF8)
    assert isinstance(message, EmailMessage)
    to = message["To"].addresses[0]
    assert to.username == "用户" and to.domain == "xn--fsqu00a.example"
    assert all_recipients(envelope.email) == ["用户@xn--fsqu00a.example"]


def test_a_request_from_the_api_builds_a_message() -> None:
    email_model = parse_send_request(
        {
            "email": {
                "fromEmail": "from@example.com",
                "fromName": "From",
                "toEmail": "to@example.com",
                "subject": "Subject",
                "body": "Body",
                "bcc": ["secret@example.com"],
            }
        }
    )
    envelope = Envelope.wrap(email_model)
    raw = message_bytes(build_message(envelope))
    assert parse(raw)["Message-ID"] == f"<{envelope.id}@gomailpy>"
    assert b"secret@example.com" not in raw
    assert all_recipients(email_model) == ["to@example.com", "secret@example.com"]
