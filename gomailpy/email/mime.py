"""One `Envelope` -> one RFC 5322 message, built with the standard library's email package.

    message = build_message(envelope)     # email.message.EmailMessage
    raw = message_bytes(message)          # CRLF line ends, ready for SES RawData or SMTP DATA
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
"""

from __future__ import annotations

import base64
from email import message_from_bytes, policy
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import idna

from gomailpy.email.envelope import Envelope
from gomailpy.email.models import ALLOWED_HEADERS, Address, Email

MESSAGE_ID_DOMAIN = "gomailpy"

# cte_type="7bit": non-ASCII bodies go out quoted-printable or base64, never as raw 8-bit, so a
# message passes any relay whether or not it offers 8BITMIME. SMTPUTF8 implies 8BITMIME.
_ASCII_POLICY = policy.SMTP.clone(cte_type="7bit")
_UTF8_POLICY = policy.SMTPUTF8

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
            message[name] = value

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
    raw = envelope.email.raw
    assert raw is not None
    data = without_bcc_header(base64.b64decode(raw))  # queued before submission took it out
    front = f"{ID_HEADER}: {envelope.id}\r\n"
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].lower()
    if not head.startswith(b"message-id:") and b"\nmessage-id:" not in head:
        front += f"Message-ID: {message_id_header(envelope.id)}\r\n"
    verbatim = front.encode("ascii") + data
    message = message_from_bytes(verbatim, policy=policy.default)
    assert isinstance(message, EmailMessage)
    result = VerbatimMessage(policy=message.policy)
    result.__dict__.update(message.__dict__)
    result.verbatim = verbatim
    return result
