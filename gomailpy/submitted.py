"""Messages submitted over SMTP (gomailpy.submission): kept as they were submitted.

    email = submitted_email(data, mail_from, rcpt_tos)   # an Email with `raw` set
    message = verbatim_message(envelope)                 # SES and SMTP send its bytes as given

The whole RFC 5322 message travels in `Email.raw` (base64), and SES and the SMTP relay send
exactly those bytes (`mime.build_message` defers to `verbatim_message`), with one header in
front: `X-Gomailpy-Id` (and a `Message-ID` when the submitter gave none), so events find the
email. SendGrid's API cannot take a whole message: for it the parts are read out of it (subject,
text, HTML, attachments with inline Content-IDs) into the email's own fields, and SendGrid
builds its own MIME from them. The envelope (MAIL FROM, RCPT TO) decides who receives it; the
message's To and Cc headers are left as written, Bcc recipients appear in neither.

Pure: no aiosmtpd here, so the pipeline can import it without the `smtp` extra.
"""

from __future__ import annotations

import base64
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from gomailpy.envelope import Envelope
from gomailpy.mime import ID_HEADER, message_id_header
from gomailpy.models import Address, Attachment, Email

MAX_SUBJECT = 998


class VerbatimMessage(EmailMessage):
    """A parsed message whose bytes are the submitted ones, not a re-serialisation."""

    verbatim: bytes = b""

    def as_bytes(self, unixfrom: bool = False, policy: Any = None) -> bytes:
        return self.verbatim


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


def submitted_email(data: bytes, mail_from: str, rcpt_tos: list[str]) -> Email:
    """The email for one submitted message; pydantic's `ValidationError` if an address or a
    part cannot be carried (the listener answers 5xx)."""
    message = _parsed(data)
    bodies = [_body(message, "plain"), _body(message, "html")]
    text, html = _content(bodies[0]), _content(bodies[1])
    return Email(
        sender=Address(email=mail_from),
        to=[Address(email=rcpt) for rcpt in rcpt_tos],
        subject=_text(message.get("Subject"))[:MAX_SUBJECT],
        text=text if text is not None or html is not None else "",
        html=html,
        attachments=_attachments(message, bodies),
        raw=base64.b64encode(data).decode("ascii"),
    )


def verbatim_message(envelope: Envelope) -> EmailMessage:
    """The submitted message of `envelope`, to be sent byte for byte (see the docstring)."""
    raw = envelope.email.raw
    assert raw is not None
    data = base64.b64decode(raw)
    front = f"{ID_HEADER}: {envelope.id}\r\n"
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].lower()
    if not head.startswith(b"message-id:") and b"\nmessage-id:" not in head:
        front += f"Message-ID: {message_id_header(envelope.id)}\r\n"
    verbatim = front.encode("ascii") + data
    message = _parsed(verbatim)
    result = VerbatimMessage(policy=message.policy)
    result.__dict__.update(message.__dict__)
    result.verbatim = verbatim
    return result
