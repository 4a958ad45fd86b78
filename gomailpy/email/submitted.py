"""Messages submitted over SMTP (gomailpy.listeners.submission): kept as they were submitted.

    email = submitted_email(data, mail_from, rcpt_tos)   # an Email with `raw` set
    data = mime.render_bytes(envelope)   # SES, SMTP and Mailgun send its bytes as given (verbatim)

The whole RFC 5322 message travels in `Email.raw` (base64), and SES and the SMTP relay send
exactly those bytes (`mime.render_bytes`; `mime.build_message` defers to `mime.verbatim_message`),
with one header in front: `X-Gomailpy-Id` (and a `Message-ID` when the submitter gave none), so
events find the email. SendGrid's API cannot take a whole message: for it the parts are read out
of it (subject, text, HTML, attachments with inline Content-IDs) into the email's own fields, and
SendGrid builds its own MIME from them.

The envelope (MAIL FROM, RCPT TO) decides who receives it; the message's To and Cc headers
decide who is named: a RCPT named in To is the email's `to`, one named in Cc its `cc`, any other
its `bcc` (`header_roles`), so SendGrid, which writes its own headers, names no Bcc recipient
either. A `Bcc:` header the submitter left in is taken out before anything is kept or sent
(`mime.without_bcc_header`, which also takes it out of a message queued before that): every
copy would show it.

Pure: no aiosmtpd here, so the pipeline can import it without the `smtp` extra.
"""

from __future__ import annotations

import base64
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from typing import Any

from gomailpy.email.mime import ascii_domain, without_bcc_header
from gomailpy.email.models import MAX_NAME_LENGTH, Address, Attachment, Email, normalize_address

MAX_SUBJECT = 998


def _parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _text(value: Any) -> str:
    return " ".join(str(value or "").split())


def _attachments(message: EmailMessage, bodies: list[EmailMessage | None]) -> list[Attachment]:
    """Every leaf part but the text and HTML bodies, inline ones (multipart/related) too."""
    found = []
    leaves = [p for p in message.walk() if not p.is_multipart() and p not in bodies]
    for n, part in enumerate(leaves):
        assert isinstance(part, EmailMessage)
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        content_id = str(part.get("Content-ID", "")).strip().strip("<>") or None
        name = part.get_filename() or f"part-{n + 1}"
        found.append(
            Attachment.model_validate(
                {
                    "filename": name.replace("/", "_").replace("\\", "_")[:255],
                    "contentType": part.get_content_type(),
                    "content": base64.b64encode(data).decode("ascii"),
                    "contentId": content_id
                    if part.get_content_disposition() != "attachment"
                    else None,
                }
            )
        )
    return found


def _body(message: EmailMessage, subtype: str) -> EmailMessage | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        return None
    assert isinstance(part, EmailMessage)
    return part


def _content(part: EmailMessage | None) -> str | None:
    content = part.get_content() if part is not None else None
    return content if isinstance(content, str) else None


def _key(address: str) -> str:
    return ascii_domain(address).lower()


def _named(message: EmailMessage, field: str) -> dict[str, str]:
    """The addresses a To or Cc header names (by `_key`), with their display names."""
    named: dict[str, str] = {}
    for header in message.get_all(field, []):
        for address in getattr(header, "addresses", ()):
            try:
                key = _key(normalize_address(address.addr_spec))
            except ValueError:
                continue  # not an address: names no recipient
            name = _text(address.display_name).replace("\x00", "")
            named.setdefault(key, name[:MAX_NAME_LENGTH])
    return named


def header_roles(
    message: EmailMessage, recipients: list[Address]
) -> tuple[list[Address], list[Address], list[Address]]:
    """(to, cc, bcc): the envelope `recipients` as `message` names them (see the docstring)."""
    to_names, cc_names = _named(message, "To"), _named(message, "Cc")
    to: list[Address] = []
    cc: list[Address] = []
    bcc: list[Address] = []
    for recipient in recipients:
        key = _key(recipient.email)
        if key in to_names:
            to.append(Address(email=recipient.email, name=to_names[key]))
        elif key in cc_names:
            cc.append(Address(email=recipient.email, name=cc_names[key]))
        else:
            bcc.append(Address(email=recipient.email))
    return to, cc, bcc


def submitted_email(data: bytes, mail_from: str, rcpt_tos: list[str]) -> Email:
    """The email for one submitted message; pydantic's `ValidationError` if an address or a
    part cannot be carried (the listener answers 5xx)."""
    data = without_bcc_header(data)
    message = _parsed(data)
    bodies = [_body(message, "plain"), _body(message, "html")]
    text, html = _content(bodies[0]), _content(bodies[1])
    to, cc, bcc = header_roles(message, [Address(email=rcpt) for rcpt in rcpt_tos])
    return Email(
        sender=Address(email=mail_from),
        to=to,
        cc=cc,
        bcc=bcc,
        subject=_text(message.get("Subject"))[:MAX_SUBJECT],
        text=text if text is not None or html is not None else "",
        html=html,
        attachments=_attachments(message, bodies),
        raw=base64.b64encode(data).decode("ascii"),
    )


def as_named(email: Email) -> Email:
    """A submitted `email` with its recipients in the roles its headers give them (`to`, `cc`,
    `bcc`, as `submitted_email` puts them), whoever queued it: an email submitted before
    submission told them apart has every recipient in `to`. Any other email as it is."""
    if email.raw is None:
        return email
    head = BytesHeaderParser(policy=policy.default).parsebytes(base64.b64decode(email.raw))
    assert isinstance(head, EmailMessage)
    to, cc, bcc = header_roles(head, email.recipients)
    if (to, cc, bcc) == (email.to, email.cc, email.bcc):
        return email
    return email.model_copy(update={"to": to, "cc": cc, "bcc": bcc})
