"""SendGrid (v3 Web API): one `POST /v3/mail/send` per email, over one aiohttp session.

    async with SendGridProvider(settings.providers.sendgrid) as provider:  # in a running loop
        result = await provider.send(envelope)

The JSON payload is built with the `sendgrid` package's helpers (`payload_for`), so its shape
follows SendGrid's own library; the HTTP call is ours, on aiohttp, because that library's client
is blocking. One session per provider keeps connections alive (at most
`settings.max_connections`).

How answers map to outcomes:

| answer                                      | outcome                                      |
|---------------------------------------------|----------------------------------------------|
| 2xx (202)                                   | ACCEPTED, id from the X-Message-Id header    |
| 429                                         | THROTTLED, Retry-After or X-RateLimit-Reset  |
| 401, 403                                    | ACCOUNT (bad key, unverified sender)         |
| 404                                         | ACCOUNT (base_url points at no SendGrid)     |
| 400, 413                                    | PERMANENT (the email itself is refused)      |
| 5xx, other 4xx, connection errors, timeouts | TRANSIENT                                    |

An address with a non-ASCII local part is answered ACCOUNT without a call: SendGrid cannot carry
it (no SMTPUTF8), but an SMTP relay may, so another provider should have it.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from sendgrid.helpers.mail import (
    Attachment,
    Bcc,
    Category,
    Cc,
    Content,
    ContentId,
    CustomArg,
    Disposition,
    FileContent,
    FileName,
    FileType,
    From,
    Header,
    Mail,
    Personalization,
    ReplyTo,
    Subject,
    To,
)

from gomailpy.config.providers import SendGridSettings
from gomailpy.email.envelope import Envelope
from gomailpy.email.mime import ID_HEADER, ascii_domain, message_id_header, needs_smtputf8
from gomailpy.email.models import ALLOWED_HEADERS, Address, Email
from gomailpy.email.submitted import as_named
from gomailpy.lifecycle import AsyncResource
from gomailpy.providers.base import Outcome, SendResult, http_session, retry_after_s

NAME = "sendgrid"
SEND_PATH = "/v3/mail/send"
MESSAGE_ID_ARG = "gomailpy_id"  # SendGrid copies custom_args into every event it reports
INSTANCE_ARG = "gomailpy_provider"  # providers[].name of the instance that sent it
_MAX_REASON = 300
# SendGrid refuses a request that sets these itself (or any X-SG-* header).
_RESERVED_HEADERS = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)


def _unique(addresses: list[Address], seen: set[str]) -> list[Address]:
    # SendGrid answers 400 when one address appears twice across to, cc and bcc.
    kept = []
    for address in addresses:
        key = ascii_domain(address.email).lower()
        if key not in seen:
            seen.add(key)
            kept.append(address)
    return kept


# Set here from the envelope; a custom header of the same name never replaces them.
_OWN_HEADERS = frozenset({"x-gomailpy-id", "x-gomailpy-message-id"})


def _header_allowed(name: str) -> bool:
    lowered = name.lower()
    if lowered in _RESERVED_HEADERS or lowered in _OWN_HEADERS or lowered.startswith("x-sg-"):
        return False
    return lowered in ALLOWED_HEADERS or lowered.startswith("x-")


def personalizations(email: Email) -> list[Personalization]:
    """Who gets which copy. SendGrid writes each personalization's `to` and `cc` into the
    headers of its copy and needs a `to` in every one, so:
    - To recipients: one personalization, Bcc as its `bcc` (a copy naming none of them);
    - no To, but Cc: the first Cc stands as To (every copy named them all anyway);
    - Bcc only (every To and Cc suppressed, or submitted for Bcc alone): one personalization per
      Bcc recipient, whose copy names that recipient only. Never one Bcc as another's To.
    A submitted email's recipients take the roles its headers give them (`as_named`)."""
    email = as_named(email)
    seen: set[str] = set()
    to, cc, bcc = _unique(email.to, seen), _unique(email.cc, seen), _unique(email.bcc, seen)
    if not to:
        to, cc = cc[:1], cc[1:]
    if not to:
        return [_personalization([alone], [], []) for alone in bcc]
    return [_personalization(to, cc, bcc)]


def _personalization(to: list[Address], cc: list[Address], bcc: list[Address]) -> Personalization:
    personalization = Personalization()
    for address in to:
        personalization.add_to(To(ascii_domain(address.email), address.name or None))
    for address in cc:
        personalization.add_cc(Cc(ascii_domain(address.email), address.name or None))
    for address in bcc:
        personalization.add_bcc(Bcc(ascii_domain(address.email), address.name or None))
    return personalization


def payload_for(envelope: Envelope, instance: str | None = None) -> dict[str, Any]:
    """The v3 `/mail/send` JSON body for `envelope`, sent by the SendGrid instance `instance`
    (named in a custom arg, so its events find it; None: not named)."""
    email: Email = envelope.email
    mail = Mail()
    mail.from_email = From(ascii_domain(email.sender.email), email.sender.name or None)
    # SendGrid requires a non-empty subject; a single space stands for "no subject", which the
    # other providers send as an empty Subject header.
    mail.subject = Subject(email.subject or " ")

    for n, personalization in enumerate(personalizations(email)):
        mail.add_personalization(personalization, index=n)  # the default, 0, would reverse them

    # text/plain must come before text/html; content must not be empty.
    if email.text is not None or email.html is None:
        mail.add_content(Content("text/plain", email.text or " "))
    if email.html is not None:
        mail.add_content(Content("text/html", email.html))
    if email.reply_to is not None:
        mail.reply_to = ReplyTo(ascii_domain(email.reply_to.email), email.reply_to.name or None)
    for attachment in email.attachments:
        mail.add_attachment(
            Attachment(
                FileContent(attachment.content),  # already base64, as SendGrid wants it
                FileName(attachment.filename),
                FileType(attachment.content_type),
                Disposition("inline" if attachment.content_id else "attachment"),
                ContentId(attachment.content_id) if attachment.content_id else None,
            )
        )
    for name, value in email.headers.items():
        if _header_allowed(name):
            mail.add_header(Header(name, value))
    # custom_args come back in SendGrid's event webhook: the gomailpy id ties events to the API's
    # answer (gomailpy.feedback.sendgrid). The headers let a recipient's copy be traced the same
    # way.
    mail.add_custom_arg(CustomArg(MESSAGE_ID_ARG, envelope.id))
    if instance is not None:  # the SendGrid instance that sent it: its events say so
        mail.add_custom_arg(CustomArg(INSTANCE_ARG, instance))
    # A v3 request's own custom_args and categories (gomailpy.email.v3) ride along the same way.
    for key, value in (envelope.custom_args or {}).items():
        if key != MESSAGE_ID_ARG:
            mail.add_custom_arg(CustomArg(key, value))
    for category in envelope.categories or []:
        mail.add_category(Category(category))
    mail.add_header(Header("X-Gomailpy-Message-Id", message_id_header(envelope.id)))
    mail.add_header(Header(ID_HEADER, envelope.id))
    payload: dict[str, Any] = mail.get()
    if envelope.bulk is not None:  # SendGrid tracks for itself; unsubscribe links are gomailpy's
        payload["tracking_settings"] = {
            "click_tracking": {"enable": envelope.bulk.clicks, "enable_text": False},
            "open_tracking": {"enable": envelope.bulk.opens},
            "subscription_tracking": {"enable": False},
        }
    return payload


def classify_status(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.ACCEPTED
    if status == 429:
        return Outcome.THROTTLED
    if status in (401, 403, 404):
        return Outcome.ACCOUNT
    if status in (400, 413):
        return Outcome.PERMANENT
    return Outcome.TRANSIENT


def _error_messages(body: Any) -> str:
    # SendGrid answers {"errors": [{"message": ..., "field": ...}]}; messages name fields and
    # addresses, never the body, so they are safe to log.
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        parts = []
        for error in body["errors"]:
            if isinstance(error, dict):
                field = error.get("field")
                message = str(error.get("message", ""))
                parts.append(f"{field}: {message}" if field else message)
        return "; ".join(parts)
    return ""


class SendGridProvider(AsyncResource):
    """Sends through SendGrid's v3 API over one aiohttp session; a one-shot async context
    manager (`gomailpy.lifecycle`). Build it inside a running loop; `aclose` closes the session."""

    kind = NAME

    def __init__(self, settings: SendGridSettings) -> None:
        self._settings = settings
        self.name = settings.name  # the instance: labels, health, controls
        self.timeout_s = settings.timeout_s
        # The pipeline starts at most this many sends at once, so none waits for a connection
        # inside its time limit.
        self.max_concurrency = settings.max_connections
        self._url = settings.base_url.rstrip("/") + SEND_PATH
        api_key = settings.api_key.get_secret_value() if settings.api_key else ""
        self._session = http_session(
            settings.max_connections, settings.timeout_s, f"Bearer {api_key}"
        )

    async def _stop(self) -> None:
        await self._session.close()

    async def send(self, envelope: Envelope) -> SendResult:
        if needs_smtputf8(envelope.email):
            return SendResult(
                self.name, Outcome.ACCOUNT, reason="SendGrid cannot send to a non-ASCII local part"
            )
        try:
            # An instance named after its kind goes unnamed: the kind's events are its own.
            named = self.name if self.name != NAME else None
            payload = payload_for(envelope, named)
            async with self._session.post(self._url, json=payload) as response:
                status = response.status
                outcome = classify_status(status)
                if outcome is Outcome.ACCEPTED:
                    return SendResult(
                        self.name, outcome, provider_message_id=response.headers.get("X-Message-Id")
                    )
                try:
                    body: Any = await response.json(content_type=None)
                except (ValueError, aiohttp.ClientError):
                    body = None
                detail = _error_messages(body) or response.reason or ""
                return SendResult(
                    self.name,
                    outcome,
                    reason=f"HTTP {status}: {detail}"[:_MAX_REASON],
                    retry_after_s=retry_after_s(response.headers)
                    if outcome is Outcome.THROTTLED
                    else None,
                )
        except (aiohttp.ClientError, OSError) as exc:  # refused, reset, DNS: no answer at all
            return SendResult(self.name, Outcome.TRANSIENT, reason=f"{type(exc).__name__}: {exc}")
