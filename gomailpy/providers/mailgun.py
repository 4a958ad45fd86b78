"""Mailgun: one `POST /v3/<domain>/messages.mime` per email, over one aiohttp session.

    async with MailgunProvider(settings.providers["mailgun-eu"]) as provider:  # in a running loop
        result = await provider.send(envelope)

The message is the one `gomailpy.email.mime` builds (so Mailgun sends exactly what SES and SMTP
would), uploaded as the `message` file of a multipart/form-data request, as Mailgun's API
reference for `messages.mime` asks. Mailgun takes the envelope recipients of a MIME send from the
`to` fields only, so `to` is every recipient, Bcc included (the message itself has no Bcc
header). Authentication is HTTP Basic, user `api`, password the API key. One session per
provider keeps connections alive (at most `max_connections`).

Events: each send carries the custom variables `v:gomailpy-id` (the email) and
`v:gomailpy-provider` (the instance, unless it is named after its kind), which Mailgun hands back
in every event of that email as `user-variables` (gomailpy.feedback.mailgun). A v3 request's
categories become `o:tag` (Mailgun keeps three per message); bulk tracking settings become
`o:tracking-opens` and `o:tracking-clicks`.

How answers map to outcomes:

| answer                                                        | outcome                   |
|---------------------------------------------------------------|---------------------------|
| 200 {"id": "<...>", "message": "Queued. Thank you."}          | ACCEPTED, id without <>   |
| 200 without an id (a base_url that is no messages endpoint)   | ACCOUNT                   |
| 429                                                           | THROTTLED, Retry-After    |
| 401, 403 (bad key, domain not allowed large batches)          | ACCOUNT                   |
| 404 (domain not found: wrong domain or region)                | ACCOUNT                   |
| 400 "Domain ... is not allowed to send" (sandbox, unverified) | ACCOUNT                   |
| other 400, 413 (the email itself is refused)                  | PERMANENT                 |
| 5xx, other 4xx, connection errors, timeouts                   | TRANSIENT                 |
| a non-ASCII local part, without a call                        | ACCOUNT                   |

Mailgun answers errors as `{"message": "..."}`; that text names parameters and domains, never
the body, so it is kept as the reason.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import aiohttp

from gomailpy.config.providers import MailgunSettings
from gomailpy.email.envelope import Envelope
from gomailpy.email.mime import all_recipients, needs_smtputf8, render_bytes
from gomailpy.lifecycle import AsyncResource
from gomailpy.providers.base import Outcome, SendResult, http_session, retry_after_s

NAME = "mailgun"
API_USER = "api"  # Mailgun's Basic auth user name; the password is the API key
MESSAGE_ID_VARIABLE = "gomailpy-id"  # sent as v:gomailpy-id, back as user-variables
INSTANCE_VARIABLE = "gomailpy-provider"  # providers[].name of the instance that sent it
MAX_TAGS = 3  # Mailgun keeps at most three tags per message
_MAX_REASON = 300
_ACCOUNT_REFUSALS = ("is not allowed to send",)  # 400s about the domain, not the email


def basic_auth(api_key: str) -> str:
    """The Authorization header of Mailgun's HTTP Basic auth: user `api`, the key as password."""
    return "Basic " + base64.b64encode(f"{API_USER}:{api_key}".encode()).decode("ascii")


def send_path(domain: str) -> str:
    """`/v3/<domain>/messages.mime`; the domain is quoted whole, so it stays one path segment
    (settings allow only host names anyway)."""
    return f"/v3/{quote(domain, safe='')}/messages.mime"


def form_for(envelope: Envelope, raw: bytes, instance: str | None = None) -> aiohttp.FormData:
    """The multipart/form-data body of one `messages.mime` request for `envelope`, whose whole
    message is `raw`; `instance`: the Mailgun instance to name in a custom variable (None: not
    named)."""
    form = aiohttp.FormData(quote_fields=False)
    for address in all_recipients(envelope.email):  # the envelope: Bcc included
        form.add_field("to", address)
    form.add_field(
        "message", raw, filename="message.mime", content_type="message/rfc822"
    )  # a file upload, as messages.mime requires
    form.add_field(f"v:{MESSAGE_ID_VARIABLE}", envelope.id)
    if instance is not None:
        form.add_field(f"v:{INSTANCE_VARIABLE}", instance)
    for tag in (envelope.categories or [])[:MAX_TAGS]:
        form.add_field("o:tag", tag)
    if envelope.bulk is not None:  # gomailpy's unsubscribe links stay; Mailgun tracks or not
        form.add_field("o:tracking-opens", "yes" if envelope.bulk.opens else "no")
        form.add_field("o:tracking-clicks", "yes" if envelope.bulk.clicks else "no")
    return form


def classify_status(status: int, message: str = "") -> Outcome:
    if 200 <= status < 300:
        return Outcome.ACCEPTED
    if status == 429:
        return Outcome.THROTTLED
    if status in (401, 403, 404):
        return Outcome.ACCOUNT
    if status == 400 and any(text in message for text in _ACCOUNT_REFUSALS):
        return Outcome.ACCOUNT
    if status in (400, 413):
        return Outcome.PERMANENT
    return Outcome.TRANSIENT


def _message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return ""


def provider_message_id(answer_id: Any) -> str | None:
    """The message id of a 200's `id` ("<2024...@mg.example.com>") as Mailgun's events write
    it (`message.headers.message-id`, without angle brackets)."""
    if not isinstance(answer_id, str) or not answer_id.strip("<> "):
        return None
    return answer_id.strip().removeprefix("<").removesuffix(">")


class MailgunProvider(AsyncResource):
    """Sends through Mailgun's `messages.mime` over one aiohttp session; a one-shot async
    context manager (`gomailpy.lifecycle`). Build it inside a running loop; `aclose` closes the
    session."""

    kind = NAME

    def __init__(self, settings: MailgunSettings) -> None:
        self._settings = settings
        self.name = settings.name  # the instance: labels, health, controls
        self.timeout_s = settings.timeout_s
        self.max_concurrency = settings.max_connections
        self._url = settings.base_url.rstrip("/") + send_path(settings.domain)
        api_key = settings.api_key.get_secret_value() if settings.api_key else ""
        self._session = http_session(
            settings.max_connections, settings.timeout_s, basic_auth(api_key)
        )

    async def _stop(self) -> None:
        await self._session.close()

    async def send(self, envelope: Envelope) -> SendResult:
        if needs_smtputf8(envelope.email):
            # As for SendGrid: an SMTP relay with SMTPUTF8 may take it; Mailgun may not.
            return SendResult(
                self.name, Outcome.ACCOUNT, reason="Mailgun cannot send to a non-ASCII local part"
            )
        try:
            raw = render_bytes(envelope)
            # An instance named after its kind goes unnamed: the kind's events are its own.
            named = self.name if self.name != NAME else None
            form = form_for(envelope, raw, named)
            async with self._session.post(self._url, data=form) as response:
                status = response.status
                try:
                    body: Any = await response.json(content_type=None)
                except (ValueError, aiohttp.ClientError):
                    body = None
                message = _message(body)
                outcome = classify_status(status, message)
                if outcome is Outcome.ACCEPTED:
                    found = provider_message_id(body.get("id")) if isinstance(body, dict) else None
                    if found is None:
                        # Mailgun answers 200 "Mailgun Magnificent API" to a path it does not
                        # serve: nothing was queued, and every email would go the same way.
                        return SendResult(
                            self.name,
                            Outcome.ACCOUNT,
                            reason=f"HTTP {status} without a message id: is base_url Mailgun's"
                            " API?",
                        )
                    return SendResult(self.name, outcome, provider_message_id=found)
                detail = message or response.reason or ""
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
