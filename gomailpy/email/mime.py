"""One `Envelope` -> one RFC 5322 message, built with the standard library's email package.

    raw = render_bytes(envelope)          # CRLF line ends, ready for SES RawData or SMTP DATA
    message = build_message(envelope)     # email.message.EmailMessage (the email package's build)
    raw = message_bytes(message)          # its bytes
    all_recipients(envelope.email)        # the SMTP RCPT / SES Destinations list (to, cc, bcc)

What goes in the headers: From (with display name), To, Cc, Reply-To, Subject, Date (the
envelope's creation time), Message-ID (`<envelope id@gomailpy>`, so a message can be traced from
the API's answer to the recipient's mailbox), X-Gomailpy-Id (the message id, which bounces and
provider events are joined by), and allow-listed custom headers. Bcc recipients
never appear in a header: they are only in the envelope (`all_recipients`). An email with no To
left (only Cc or Bcc recipients) says `To: undisclosed-recipients:;` rather than name anyone.

Internationalised mail: display names and subjects are RFC 2047-encoded; domains are written in
their IDNA (xn--) form, which every server reads. Only a non-ASCII *local part* needs SMTPUTF8
(RFC 6531): such a message is built with `policy.SMTPUTF8` (UTF-8 headers) and
`needs_smtputf8` tells the SMTP provider to ask for the extension.

`render_bytes` writes the message directly, without the email package, when that is plainly
safe: printable ASCII headers (addresses in dot-atom form, no encoded-word look-alike `=?`), no
attachments, no SMTPUTF8. The email package parses every header it is given
(`EmailPolicy.header_store_parse`, `HeaderRegistry`): two thirds of the SMTP path's CPU per
email (bench/README.md, perf-node). Anything else takes `build_message`; both give the same
message once parsed (tests/test_mime_direct.py). Every byte written directly is printable ASCII
in headers, so no value can start a header of its own, and lines are folded at 78 characters
where a space allows, never past 998 (RFC 5322 2.1.1): a value that cannot fit is left to the
email package.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from email import message_from_bytes, policy, quoprimime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Final

import idna

from gomailpy.email.envelope import Envelope
from gomailpy.email.models import ALLOWED_HEADERS, Address, Email

MESSAGE_ID_DOMAIN = "gomailpy"

# cte_type="7bit": non-ASCII bodies go out quoted-printable or base64, never as raw 8-bit, so a
# message passes any relay whether or not it offers 8BITMIME. SMTPUTF8 implies 8BITMIME.
# refold_source "none": a value stored with `set_raw` (a custom header this module folded itself,
# see `_set_custom_header`) is written as given; values set by assignment are header objects and
# are folded by the policy as before.
_ASCII_POLICY = policy.SMTP.clone(cte_type="7bit", refold_source="none")
_UTF8_POLICY = policy.SMTPUTF8.clone(refold_source="none")

# Headers built here from the email's own fields; a custom header never replaces them.
_STRUCTURAL_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "sender",
        "return-path",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "x-gomailpy-id",
    }
)
# The To of a message sent to Cc or Bcc recipients only: an empty group (RFC 5322 3.4).
UNDISCLOSED = "undisclosed-recipients:;"
# Every message names its email: provider events and bounces are joined to it by this header.
ID_HEADER = "X-Gomailpy-Id"


def message_id_header(envelope_id: str) -> str:
    return f"<{envelope_id}@{MESSAGE_ID_DOMAIN}>"


def ascii_domain(address: str) -> str:
    """`address` with its domain in IDNA (xn--) form; the local part is left as it is."""
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"


def needs_smtputf8(email: Email) -> bool:
    """True when an address has a non-ASCII local part, which only SMTPUTF8 can carry."""
    addresses = [email.sender, *email.recipients]
    if email.reply_to is not None:
        addresses.append(email.reply_to)
    return any(not a.email.rpartition("@")[0].isascii() for a in addresses)


def all_recipients(email: Email) -> list[str]:
    """Every envelope recipient (to, cc, bcc), domains in IDNA form, each address once."""
    seen: set[str] = set()
    result: list[str] = []
    for recipient in email.recipients:
        address = ascii_domain(recipient.email)
        if address.lower() not in seen:  # the same mailbox twice would get two copies
            seen.add(address.lower())
            result.append(address)
    return result


def envelope_sender(email: Email) -> str:
    """The SMTP MAIL FROM / SES Source address."""
    return ascii_domain(email.sender.email)


def _header_address(address: Address) -> HeaderAddress:
    local, _, domain = ascii_domain(address.email).rpartition("@")
    # username/domain rather than addr_spec: the parser behind addr_spec refuses a non-ASCII
    # local part even where SMTPUTF8 allows it.
    return HeaderAddress(display_name=address.name, username=local, domain=domain)


def _is_allowed_header(name: str) -> bool:
    # The API validates headers already; checked again because a queue message may come from
    # anything that can write to the queue.
    lowered = name.lower()
    if lowered in _STRUCTURAL_HEADERS:
        return False
    return lowered in ALLOWED_HEADERS or lowered.startswith("x-")


def build_message(envelope: Envelope) -> EmailMessage:
    """The whole MIME message for `envelope` (see the module docstring for what is in it)."""
    if envelope.email.raw is not None:  # submitted over SMTP: sent as it came
        return verbatim_message(envelope)
    email = envelope.email
    message = EmailMessage(policy=_UTF8_POLICY if needs_smtputf8(email) else _ASCII_POLICY)
    message["From"] = _header_address(email.sender)
    message["To"] = [_header_address(a) for a in email.to] if email.to else UNDISCLOSED
    if email.cc:
        message["Cc"] = [_header_address(a) for a in email.cc]
    if email.reply_to is not None:
        message["Reply-To"] = _header_address(email.reply_to)
    message["Subject"] = email.subject
    message["Date"] = format_datetime(envelope.created_at)
    message["Message-ID"] = message_id_header(envelope.id)
    message[ID_HEADER] = envelope.id
    for name, value in email.headers.items():
        if _is_allowed_header(name) and not any(ch in value for ch in "\r\n\x00"):
            _set_custom_header(message, name, value)

    # text first, html as the preferred alternative; an email with neither gets an empty text
    # part so the message is still well-formed.
    if email.text is not None or email.html is None:
        message.set_content(email.text or "")
        if email.html is not None:
            message.add_alternative(email.html, subtype="html")
    else:
        message.set_content(email.html, subtype="html")

    for attachment in email.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        # add_attachment turns the message into multipart/mixed around the body built above
        inline = attachment.content_id is not None  # HTML refers to it as cid:<content_id>
        message.add_attachment(
            attachment.data(),
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
            disposition="inline" if inline else "attachment",
            cid=f"<{attachment.content_id}>" if inline else None,
        )
    return message


def _set_custom_header(message: EmailMessage, name: str, value: str) -> None:
    """A custom header, folded at its spaces when it is plain ASCII. The email package would
    write a word longer than a line (a List-Unsubscribe `<https://…token…>`, RFC 2369/8058) as
    RFC 2047 encoded words, which no mailbox provider reads as a URL; what is not plain is
    left to it (encoded words are then the right thing)."""
    folded = None
    if _HEADER_NAME.fullmatch(name) and name.lower() not in _REGISTRY_NAMES:
        folded = _direct_text(name, value)
    if folded is None or not value:
        message[name] = value
        return
    message.set_raw(name, folded[len(name) + 2 : -len(_CRLF)])


# -- written directly ----------------------------------------------------------------------------

# RFC 5322 atext: what a dot-atom local part and an unquoted display-name word are made of.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_PHRASE = re.compile(rf"{_ATEXT}+(?: {_ATEXT}+)*")  # words the parser gives back as they are
_DOMAIN = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")  # no address literals ([1.2.3.4])
# Printable ASCII words, single spaces: unfolding gives back exactly this. No tabs, runs of
# spaces or edge spaces (the parser may not keep them as they were): the email package's turn.
_PLAIN_VALUE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 ftext: printable, no colon
# Names the email package parses as structured headers (dates, addresses, MIME): such a custom
# header is left to it, so that it reads the value as it always did.
_REGISTRY_NAMES = frozenset(
    {"orig-date", "resent-date", "resent-from", "resent-sender", "resent-to", "resent-cc"}
    | {"resent-bcc"}
)
_FOLD_AT: Final = 78  # where lines are folded when a space allows (RFC 5322's SHOULD)
_MAX_LINE: Final = 998  # RFC 5322's MUST, CRLF excluded
_CRLF = "\r\n"


def _fold(name: str, pieces: list[str], separator: str) -> str | None:
    """`name: piece, piece...` (separator ", " or " ") as header lines folded before the
    separator's space where a line would pass 78 characters; None if a line passes 998."""
    line = f"{name}: {pieces[0]}"
    lines = []
    joint = separator.rstrip()  # what stays at a line's end when folded: "," or nothing
    for piece in pieces[1:]:
        if len(line) + len(separator) + len(piece) <= _FOLD_AT:
            line += separator + piece
        else:
            lines.append(line + joint)
            line = " " + piece  # the folding white space: unfolded, it is the separator's space
    lines.append(line)
    if any(len(text) > _MAX_LINE for text in lines):
        return None
    return _CRLF.join(lines) + _CRLF


def _direct_address(address: Address) -> str | None:
    """`Name <local@domain>` as the header carries it; None when the email package must write
    it (a local part or domain that is not plain, a name it would encode)."""
    local, _, domain = ascii_domain(address.email).rpartition("@")
    if not (_DOT_ATOM.fullmatch(local) and _DOMAIN.fullmatch(domain)):
        return None
    name = address.name
    if not name:
        return f"{local}@{domain}"
    if not _PLAIN_VALUE.fullmatch(name) or "=?" in name:
        return None
    if not _PHRASE.fullmatch(name):  # specials ("Doe, J." ): a quoted string
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{local}@{domain}>"


def _direct_addresses(name: str, addresses: list[Address]) -> str | None:
    written = [_direct_address(a) for a in addresses]
    if any(w is None for w in written):
        return None
    pieces = [w for w in written if w is not None]
    # every address but the last carries its comma; folding happens after one
    return _fold(name, pieces, ", ")


def _direct_text(name: str, value: str) -> str | None:
    """An unstructured header (Subject, a custom header): None unless a plain value."""
    if not value:
        return f"{name}: {_CRLF}"
    if not _PLAIN_VALUE.fullmatch(value) or "=?" in value:
        return None
    return _fold(name, value.split(" "), " ")


def _text_part(text: str, subtype: str) -> tuple[str, bytes]:
    """The Content-Type and Content-Transfer-Encoding lines and the encoded body of one text
    part, chosen as the email package chooses them (email.contentmanager, cte_type 7bit): 7bit
    when ASCII in lines of at most 78 characters, else the shorter of quoted-printable and
    base64, of the text with CRLF line ends."""
    lines = text.encode("utf-8").splitlines()
    head = f'Content-Type: text/{subtype}; charset="utf-8"{_CRLF}'
    if max((len(line) for line in lines), default=0) <= _FOLD_AT and all(
        line.isascii() for line in lines
    ):
        body = b"\r\n".join(lines) + b"\r\n"
        return head + f"Content-Transfer-Encoding: 7bit{_CRLF}", body
    embedded = b"\r\n".join(lines) + b"\r\n"
    quoted = quoprimime.body_encode(embedded.decode("latin-1"), 76, eol=_CRLF).encode("ascii")
    # the email package's own base64 line: 76 characters, from 57 bytes
    encoded = b"".join(
        binascii.b2a_base64(embedded[at : at + 57]).replace(b"\n", b"\r\n")
        for at in range(0, len(embedded), 57)
    )
    if len(quoted) > len(encoded):
        return head + f"Content-Transfer-Encoding: base64{_CRLF}", encoded
    if not quoted.endswith(b"\r\n"):
        quoted += b"\r\n"
    return head + f"Content-Transfer-Encoding: quoted-printable{_CRLF}", quoted


def direct_bytes(envelope: Envelope) -> bytes | None:
    """The message of `envelope` written without the email package, or None when it is not
    plainly safe to (see the module docstring): then `build_message` writes it."""
    email = envelope.email
    if email.raw is not None or email.attachments or needs_smtputf8(email):
        return None
    if email.text == "" or not _DOT_ATOM.fullmatch(envelope.id):
        return None  # an empty body: the email package's way; an id that is not an atom
    head = []
    sender = _direct_addresses("From", [email.sender])
    to = _direct_addresses("To", email.to) if email.to else f"To: {UNDISCLOSED}{_CRLF}"
    cc = _direct_addresses("Cc", email.cc) if email.cc else ""
    reply_to = _direct_addresses("Reply-To", [email.reply_to]) if email.reply_to else ""
    subject = _direct_text("Subject", email.subject)
    if sender is None or to is None or cc is None or reply_to is None or subject is None:
        return None
    head += [sender, to, cc, reply_to, subject]
    head.append(f"Date: {format_datetime(envelope.created_at)}{_CRLF}")
    head.append(f"Message-ID: {message_id_header(envelope.id)}{_CRLF}")
    head.append(f"{ID_HEADER}: {envelope.id}{_CRLF}")
    for name, value in email.headers.items():
        if not _is_allowed_header(name) or any(ch in value for ch in "\r\n\x00"):
            continue  # as build_message: dropped
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _REGISTRY_NAMES:
            return None
        line = _direct_text(name, value)
        if line is None:
            return None
        head.append(line)

    parts = []
    if email.text is not None or email.html is None:
        parts.append(_text_part(email.text or "", "plain"))
        if email.html is not None:
            parts.append(_text_part(email.html, "html"))
    else:
        parts.append(_text_part(email.html, "html"))
    if len(parts) == 1:
        part_head, body = parts[0]
        head.append(part_head)
        head.append(f"MIME-Version: 1.0{_CRLF}")
        return "".join(head).encode("ascii") + b"\r\n" + body
    boundary = "=_" + secrets.token_hex(16)
    while any(boundary.encode("ascii") in body for _, body in parts):  # as likely as a collision
        boundary = "=_" + secrets.token_hex(16)
    head.append(f"MIME-Version: 1.0{_CRLF}")
    head.append(f'Content-Type: multipart/alternative;{_CRLF} boundary="{boundary}"{_CRLF}')
    delimiter = f"--{boundary}{_CRLF}".encode("ascii")
    out = ["".join(head).encode("ascii"), b"\r\n"]
    for part_head, body in parts:
        out += [delimiter, part_head.encode("ascii"), b"\r\n", body, b"\r\n"]
    out.append(f"--{boundary}--{_CRLF}".encode("ascii"))
    return b"".join(out)


def render_bytes(envelope: Envelope) -> bytes:
    """The message of `envelope` as sent (CRLF line ends, for SES RawData, SMTP DATA, Mailgun's
    MIME): written directly when plainly safe, else by the email package (`build_message`);
    a message submitted over SMTP is its own bytes."""
    if envelope.email.raw is not None:
        return _verbatim_bytes(envelope)
    direct = direct_bytes(envelope)
    if direct is not None:
        return direct
    return message_bytes(build_message(envelope))


def message_bytes(message: EmailMessage) -> bytes:
    """The message as sent on the wire: CRLF line ends, headers folded per its policy."""
    return message.as_bytes()


_BCC_HEADERS = frozenset({b"bcc", b"resent-bcc"})


def without_bcc_header(data: bytes) -> bytes:
    """`data` without its Bcc (and Resent-Bcc) header fields, folded lines included; every
    other byte as it was. The same bytes when it has none."""
    # Only the header block is split: the body (up to 20 MB) is never copied line by line.
    ends = [i + len(sep) // 2 for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep)) >= 0]
    head_end = min(ends, default=len(data))
    kept: list[bytes] = []
    dropping = found = False
    at = 0
    for line in data[:head_end].splitlines(keepends=True):
        if not line.strip(b"\r\n"):  # a blank line ends the header block
            break
        if line[:1] not in (b" ", b"\t"):  # a new field, not the continuation of one
            dropping = line.split(b":", 1)[0].strip().lower() in _BCC_HEADERS
            found |= dropping
        if not dropping:
            kept.append(line)
        at += len(line)
    return b"".join(kept) + data[at:] if found else data


class VerbatimMessage(EmailMessage):
    """A parsed message whose bytes are the submitted ones, not a re-serialisation."""

    verbatim: bytes = b""

    def as_bytes(self, unixfrom: bool = False, policy: Any = None) -> bytes:
        return self.verbatim


def verbatim_message(envelope: Envelope) -> EmailMessage:
    """The message submitted over SMTP (gomailpy.email.submitted) of `envelope`, to be sent
    byte for byte, with `X-Gomailpy-Id` (and a `Message-ID` when it had none) in front."""
    verbatim = _verbatim_bytes(envelope)
    message = message_from_bytes(verbatim, policy=policy.default)
    assert isinstance(message, EmailMessage)
    result = VerbatimMessage(policy=message.policy)
    result.__dict__.update(message.__dict__)
    result.verbatim = verbatim
    return result


def _verbatim_bytes(envelope: Envelope) -> bytes:
    # What verbatim_message sends, without parsing the message (up to 20 MB) to get there.
    raw = envelope.email.raw
    assert raw is not None
    data = without_bcc_header(base64.b64decode(raw))  # queued before submission took it out
    front = f"{ID_HEADER}: {envelope.id}\r\n"
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].lower()
    if not head.startswith(b"message-id:") and b"\nmessage-id:" not in head:
        front += f"Message-ID: {message_id_header(envelope.id)}\r\n"
    return front.encode("ascii") + data
