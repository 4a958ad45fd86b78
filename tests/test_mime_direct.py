"""The direct MIME writer (gomailpy.email.mime.direct_bytes) against the email package's build.

For generated emails, what `render_bytes` sends, parsed by the email package, is the message
`build_message` gives (the same headers, parts, types, charsets and decoded bodies); whatever a
value holds (CR, LF, NUL, non-ASCII, encoded-word look-alikes), the direct writer either writes
no header but those the email asks for, in lines of at most 998 characters, or leaves the email
to the email package.
"""

from __future__ import annotations

import email.message
from datetime import UTC, datetime
from email import message_from_bytes, policy
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gomailpy.email.envelope import Envelope
from gomailpy.email.mime import build_message, direct_bytes, message_bytes, render_bytes
from gomailpy.email.models import Address, Attachment, Email
from tests.support import make_envelope

# Characters that matter to headers: specials, quotes, escapes, encoded-word marks, white space
# of every kind, line breaks, NUL, and some non-ASCII.
_TRICKY = list(" abcXYZ019.,;:\"\\()<>@[]'=?_-\t\r\n\x00é€中")
_words = st.text(alphabet=st.sampled_from(_TRICKY), max_size=40)
_plain = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 .,'()-]{0,40}", fullmatch=True)
_long_word = st.from_regex(r"[a-z]{60,120}", fullmatch=True)
_value = st.one_of(
    _plain,
    _words,
    st.lists(st.one_of(_plain, _long_word), min_size=1, max_size=30).map(" ".join),
    st.text(max_size=60),
)
_atom = st.from_regex(r"[a-z0-9+_-]{1,12}", fullmatch=True)
_local = st.lists(_atom, min_size=1, max_size=3).map(".".join)
_domain = st.sampled_from(
    ["example.com", "mail.example.org", "b\u00fccher.example", "xn--bcher-kva.example"]
)


@st.composite
def _address(draw: st.DrawFn) -> Address:
    name = draw(st.one_of(st.just(""), _plain, _words))
    return Address.model_construct(email=f"{draw(_local)}@{draw(_domain)}", name=name)


_body = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.lists(st.one_of(_plain, _long_word, st.just("")), max_size=20).map("\n".join),
    st.lists(_plain, max_size=10).map("\r\n".join),
)
_HEADER_NAMES = ["X-Tag", "X-Campaign", "List-Unsubscribe", "In-Reply-To", "References"]


@st.composite
def envelopes(draw: st.DrawFn, *, raw_values: bool = False) -> Envelope:
    """An envelope as a queue may bring it: `model_construct` skips the API's checks, so values
    may hold anything (a queue message need not come from the API)."""
    to = draw(st.lists(_address(), max_size=6))
    cc = draw(st.lists(_address(), max_size=4))
    bcc = draw(st.lists(_address(), max_size=2))
    if not (to or cc or bcc):
        bcc = [Address.model_construct(email="hidden@example.com", name="")]
    text, html = draw(_body), draw(_body)
    if text is None and html is None:
        text = draw(_plain)
    headers = draw(st.dictionaries(st.sampled_from(_HEADER_NAMES), _value, max_size=4))
    fields: dict[str, Any] = {
        "sender": draw(_address()),
        "to": to,
        "cc": cc,
        "bcc": bcc,
        "reply_to": draw(st.one_of(st.none(), _address())),
        "subject": draw(_value),
        "text": text,
        "html": html,
        "headers": headers,
        "attachments": [],
        "template": None,
        "raw": None,
    }
    return Envelope(
        id=draw(st.uuids()).hex if draw(st.booleans()) else str(draw(st.uuids())),
        created_at=datetime(2026, 12, 5, 7, 0, draw(st.integers(0, 59)), tzinfo=UTC),
        email=Email.model_construct(**fields),
    )


def _parse(data: bytes) -> email.message.EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def _shape(message: email.message.EmailMessage) -> list[Any]:
    """What a recipient's client reads from a parsed message: every header but the MIME ones
    by name and value (white space runs as one space: the email package reads a value it
    folded right after the colon with a leading space), then each part's type, charset and
    decoded content."""
    mime = {"content-type", "content-transfer-encoding", "mime-version"}
    headers = sorted(
        (k.lower(), " ".join(str(v).split())) for k, v in message.items() if k.lower() not in mime
    )
    parts = [
        (
            part.get_content_type(),
            part.get_content_charset(),
            part.get_content() if not part.is_multipart() else None,
        )
        for part in message.walk()
    ]
    return [headers, parts, message.is_multipart()]


def _fallback(envelope: Envelope) -> bytes | None:
    try:
        return message_bytes(build_message(envelope))
    except (ValueError, TypeError, IndexError):  # the email package refuses such a value
        return None


_settings = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    report_multiple_bugs=False,
)


@_settings
@given(envelopes())
def test_the_direct_message_parses_as_the_email_packages_does(envelope: Envelope) -> None:
    direct = direct_bytes(envelope)
    assume(direct is not None)
    assert direct is not None
    fallback = _fallback(envelope)
    assert fallback is not None, "written directly, but the email package refuses it"
    parsed = _parse(direct)
    assert _shape(parsed) == _shape(_parse(fallback))
    # and exactly the values asked for: a plain value comes back as it was
    assert parsed["Subject"] == envelope.email.subject
    for name, value in envelope.email.headers.items():
        if not any(ch in value for ch in "\r\n\x00"):
            assert parsed[name] == value


@_settings
@given(envelopes())
def test_no_value_makes_a_header_and_no_line_passes_998(envelope: Envelope) -> None:
    direct = direct_bytes(envelope)
    if direct is None:
        return
    head, _, _ = direct.partition(b"\r\n\r\n")
    for line in direct.split(b"\r\n"):
        assert len(line) <= 998
    assert b"\n" not in direct.replace(b"\r\n", b"")  # every line ends CRLF, no bare CR or LF
    assert b"\r" not in direct.replace(b"\r\n", b"")
    assert head.isascii() and b"\x00" not in head
    email_ = envelope.email
    expected = {"from", "to", "subject", "date", "message-id", "x-gomailpy-id", "mime-version"}
    expected |= {"content-type"} | ({"cc"} if email_.cc else set())
    expected |= {"reply-to"} if email_.reply_to is not None else set()
    expected |= {
        name.lower()
        for name, value in email_.headers.items()
        if not any(ch in value for ch in "\r\n\x00")
    }
    if email_.text is None or email_.html is None:
        expected.add("content-transfer-encoding")
    names = [k.lower() for k in _parse(direct).keys()]
    assert set(names) == expected
    assert len(names) == len(set(names))  # nothing written twice, no second From


def test_a_typical_email_is_written_directly_and_bcc_stays_out() -> None:
    envelope = make_envelope(1, bcc=["hidden@example.net"])
    data = render_bytes(envelope)
    assert data == direct_bytes(envelope)
    assert b"hidden@example.net" not in data
    assert _shape(_parse(data)) == _shape(_parse(message_bytes(build_message(envelope))))


def test_what_is_not_plain_goes_to_the_email_package() -> None:
    base = make_envelope(1)

    def changed(**fields: Any) -> Envelope:
        return base.model_copy(update={"email": base.email.model_copy(update=fields)})

    attachment = Attachment.model_validate({"filename": "a.txt", "content": "aGk="})
    for envelope in (
        changed(subject="Grüße"),  # RFC 2047
        changed(subject="=?utf-8?q?x?="),  # would be read as an encoded word
        changed(sender=Address(email="s@example.com", name="Zoë")),
        changed(to=[Address(email="jöe@example.com")]),  # SMTPUTF8
        changed(attachments=[attachment]),
        changed(headers={"X-Tag": "a  b"}),  # a run of spaces
    ):
        assert direct_bytes(envelope) is None
        sent = _parse(render_bytes(envelope))
        assert _shape(sent) == _shape(_parse(message_bytes(build_message(envelope))))
        assert sent["X-Gomailpy-Id"] == envelope.id


def test_a_name_with_specials_is_quoted() -> None:
    base = make_envelope(1)
    envelope = base.model_copy(
        update={
            "email": base.email.model_copy(
                update={"sender": Address(email="s@example.com", name='Doe, "J." \\ Co')}
            )
        }
    )
    data = direct_bytes(envelope)
    assert data is not None
    assert _parse(data)["From"].addresses[0].display_name == 'Doe, "J." \\ Co'
