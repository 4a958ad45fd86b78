"""The email model: gomail's request, validated per field with messages a person can act on."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gomailpy.email.envelope import Envelope
from gomailpy.email.models import MAX_NAME_LENGTH, MAX_RECIPIENTS, parse_send_request
from gomailpy.errors import EnvelopeError, InvalidEmailError, MalformedRequestError


def request(**fields: Any) -> dict[str, Any]:
    email = {"fromEmail": "from@example.com", "toEmail": "to@example.com", "body": "Hello"}
    email.update(fields)
    return {"email": {k: v for k, v in email.items() if v is not None}}


def errors_of(data: Any) -> dict[str, str]:
    with pytest.raises(InvalidEmailError) as caught:
        parse_send_request(data)
    return caught.value.errors


def test_gomail_request_is_accepted_unchanged() -> None:
    email = parse_send_request(
        {
            "email": {
                "fromEmail": "ana@example.com",
                "fromName": "Ana",
                "toEmail": "bo@example.org",
                "toName": "Bo",
                "subject": "Hi",
                "body": "Hello Bo",
            }
        }
    )
    assert email.sender.email == "ana@example.com"
    assert email.sender.name == "Ana"
    assert [(a.email, a.name) for a in email.to] == [("bo@example.org", "Bo")]
    assert (email.subject, email.text, email.html) == ("Hi", "Hello Bo", None)


@pytest.mark.parametrize(
    ("address", "normalized"),
    [
        ("Upper.Case@Example.COM", "Upper.Case@example.com"),  # gomail refused upper case
        ("someone@example.photography", "someone@example.photography"),  # long TLD
        ("用户@例子.广告", "用户@例子.广告"),  # internationalised
        ("josé@correo.es", "josé@correo.es"),
        ("  padded@example.com ", "padded@example.com"),
    ],
)
def test_addresses_gomail_wrongly_refused_are_valid(address: str, normalized: str) -> None:
    email = parse_send_request(request(toEmail=address))
    assert email.to[0].email == normalized


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"fromEmail": None}, {"fromEmail": "From email is required"}),
        ({"toEmail": None}, {"toEmail": "To email is required"}),
        ({"body": None}, {"body": "Body is required"}),
        ({"body": ""}, {"body": "Body is required"}),
        (
            {"fromEmail": "not-an-address"},
            {
                "fromEmail": "From email is not a valid email address: An email address must have an @-sign."
            },
        ),
        (
            {"toEmail": "a@b@c.com"},
            {
                "toEmail": "To email is not a valid email address: The part after the @-sign contains invalid characters: '@'."
            },
        ),
        (
            {"subject": "Hi\r\nBcc: victim@example.com"},
            {"subject": "Subject must not contain line breaks (CR or LF) or NUL characters"},
        ),
        (
            {"fromName": "Eve\nBcc: victim@example.com"},
            {"fromName": "From name must not contain line breaks (CR or LF) or NUL characters"},
        ),
        (
            {"toName": "x\r"},
            {"toName": "To name must not contain line breaks (CR or LF) or NUL characters"},
        ),
        (
            {"fromEmail": "a@example.com\r\nBcc: v@example.com"},
            {"fromEmail": "From email must not contain line breaks (CR or LF) or NUL characters"},
        ),
        (
            {"fromName": "n" * (MAX_NAME_LENGTH + 1)},
            {"fromName": f"From name must be at most {MAX_NAME_LENGTH} characters"},
        ),
        ({"subject": 5}, {"subject": "Subject: Input should be a valid string"}),
        (
            {"headers": {"Bcc": "v@example.com"}},
            {
                "headers": "Headers 'Bcc' is not allowed; allowed: X-* and in-reply-to, list-unsubscribe, list-unsubscribe-post, precedence, references"
            },
        ),
        (
            {"headers": {"X-Campaign": "a\r\nBcc: v@example.com"}},
            {"headers": "Headers X-Campaign must not contain line breaks (CR or LF)"},
        ),
        (
            {"cc": ["ok@example.com", "broken"]},
            {
                "cc": "Cc[1].email is not a valid email address: An email address must have an @-sign."
            },
        ),
        (
            {"attachments": [{"filename": "../etc/passwd", "content": "aGk="}]},
            {"attachments": "Attachments[0].filename must be a plain file name, without a path"},
        ),
        (
            {"attachments": [{"filename": "a.txt", "content": "not base64!"}]},
            {"attachments": "Attachments[0].content must be base64"},
        ),
        (
            {"bcc": [f"r{i}@example.com" for i in range(MAX_RECIPIENTS)]},
            {"toEmail": f"at most {MAX_RECIPIENTS} recipients in all"},
        ),
    ],
)
def test_invalid_fields_get_one_message_each(
    fields: dict[str, Any], expected: dict[str, str]
) -> None:
    assert errors_of(request(**fields)) == expected


def test_gomail_cases_bad_from_missing_to_empty_body_together() -> None:
    assert errors_of({"email": {"fromEmail": "nope", "body": ""}}) == {
        "body": "Body is required",
        "fromEmail": "From email is not a valid email address: An email address must have an @-sign.",
        "toEmail": "To email is required",
    }


@pytest.mark.parametrize("blank", ["", " ", "\t", " \r\n "])
def test_an_empty_or_blank_required_field_is_required(blank: str) -> None:
    # The original gomail form sends "" for an empty input: gomail's words, not "@-sign".
    assert errors_of(request(fromEmail=blank, toEmail=blank, body=blank)) == {
        "fromEmail": "From email is required",
        "toEmail": "To email is required",
        "body": "Body is required",
    }


def test_a_blank_body_is_fine_beside_an_html_body() -> None:
    email = parse_send_request(request(body="  ", html="<p>Hi</p>"))
    assert email.html == "<p>Hi</p>"
    assert errors_of(request(body="", html=" ")) == {"body": "Body is required"}


@pytest.mark.parametrize("char", ["\ufffe", "\uffff"])
@pytest.mark.parametrize(
    ("field", "label", "value"),
    [
        ("body", "Body", "Hello {}world"),
        ("subject", "Subject", "Hi {}"),
        ("fromName", "From name", "Ana {}"),
        ("toName", "To name", "{}Bo"),
        ("html", "HTML body", "<p>{}</p>"),
        ("headers", "Headers", {"X-Note": "a{}b"}),
        ("cc", "Cc", [{"email": "cc@example.com", "name": "C{}"}]),
    ],
)
def test_characters_a_queue_cannot_carry_are_refused_naming_the_field(
    char: str, field: str, label: str, value: Any
) -> None:
    filled = (
        value.format(char)
        if isinstance(value, str)
        else {"X-Note": f"a{char}b"}
        if field == "headers"
        else [{"email": "cc@example.com", "name": f"C{char}"}]
    )
    assert errors_of(request(**{field: filled})) == {
        field: f"{label} contains U+{ord(char):04X}, a character a queue cannot carry; remove it"
    }


def test_characters_json_escapes_and_astral_ones_are_carried() -> None:
    # C0 controls travel escaped in the envelope's JSON; U+FFFD and emoji are in SQS's set.
    email = parse_send_request(request(body="tab\t form\x0c bell\x07 \ufffd \U0001f600"))
    assert email.text == "tab\t form\x0c bell\x07 \ufffd \U0001f600"
    encoded = Envelope.wrap(email).encode()
    assert "\\f" in encoded and "\\u0007" in encoded and "\x0c" not in encoded


def test_unknown_fields_are_refused_by_name() -> None:
    errors = errors_of(request(trackingPixel="yes"))
    assert list(errors) == ["trackingPixel"]
    assert errors["trackingPixel"].startswith("Unknown field 'trackingPixel'; known fields are:")


@pytest.mark.parametrize(
    "data",
    [[], "email", None, 3, {}, {"email": "x"}, {"email": []}, {"email": {}, "extra": 1}],
)
def test_wrong_shape_is_malformed_not_invalid(data: Any) -> None:
    with pytest.raises(MalformedRequestError):
        parse_send_request(data)


def test_full_email_fields() -> None:
    attachment = base64.b64encode(b"%PDF-1.4 ...").decode()
    email = parse_send_request(
        request(
            body=None,
            html="<p>Hi</p>",
            to=["two@example.com", {"email": "three@example.com", "name": "Three"}],
            cc=["cc@example.com"],
            bcc=["bcc@example.com"],
            replyTo="reply@example.com",
            headers={"X-Campaign": "nov", "List-Unsubscribe": "<mailto:u@example.com>"},
            attachments=[
                {"filename": "a.pdf", "contentType": "application/PDF", "content": attachment}
            ],
        )
    )
    assert [a.email for a in email.recipients] == [
        "to@example.com",
        "two@example.com",
        "three@example.com",
        "cc@example.com",
        "bcc@example.com",
    ]
    assert email.text is None and email.html == "<p>Hi</p>"
    assert email.reply_to is not None and email.reply_to.email == "reply@example.com"
    assert email.attachments[0].content_type == "application/pdf"
    assert email.attachments[0].data() == b"%PDF-1.4 ..."
    assert email.attachments[0].size == len(b"%PDF-1.4 ...")


def test_envelope_round_trip() -> None:
    envelope = Envelope.wrap(parse_send_request(request(fromName="Zoë", subject="Grüße")))
    body = envelope.encode()
    assert '"v":1' in body and "Zoë" in body  # UTF-8 kept, not \u-escaped
    assert Envelope.decode(body) == envelope


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"v": 2, "id": "x"}', "unknown envelope version 2 (this node reads v1)"),
        ('{"id": "x"}', "unknown envelope version None (this node reads v1)"),
        (
            '{"v": 1, "id": "x", "created_at": "2026-01-01T00:00:00Z"}',
            "invalid envelope at email: Field required",
        ),
    ],
)
def test_unreadable_envelopes_say_why(body: str, reason: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        Envelope.decode(body)
    assert str(caught.value).startswith(reason)
