"""SMTP: one mail transaction per email, over a small pool of reused connections (aiosmtplib).

    async with SmtpProvider(settings.providers.smtp) as provider:  # connects on the first send
        result = await provider.send(envelope)
    # leaving it: QUIT on every idle connection

The pool holds at most `max_connections` connections: a send takes an idle connected client or
opens one (TLS, STARTTLS and login as configured), and gives it back once the transaction ends
with the server still talking (aiosmtplib has already sent RSET after a refused transaction). A
connection in an unknown state (timeout, protocol error) is closed, never reused. A pooled
connection the server has dropped since its last use (idle timeout, restart) fails with
`SMTPServerDisconnected` at the next MAIL FROM; the send then tries once on a fresh connection.

How replies map to outcomes (`classify_reply`), for a relay that submits on our behalf:

| reply                                                   | outcome   |
|---------------------------------------------------------|-----------|
| 250 for at least one recipient                          | ACCEPTED  |
| 4xx mentioning a rate ("rate", "too many", "throttl")   | THROTTLED |
| other 4xx                                               | TRANSIENT |
| 530/534/535/538 (authentication), 5.7.x (policy), text  | ACCOUNT   |
|   mentioning relaying or authentication; MAIL FROM 5xx  |           |
| other 5xx (5.1.x bad mailbox, 5.3.4 too big, ...)       | PERMANENT |
| connection refused/lost, timeouts, 4xx banner or HELO   | TRANSIENT |
| 5xx banner or HELO (the server will not talk to us)     | ACCOUNT   |

The rule: a refusal that is about *who we are* (authentication, relay permission, the sender
address we use, the relay's policy codes 5.7.x) is ACCOUNT, since another provider may accept
the same email; a refusal about *the email* (its recipient, size, content) is PERMANENT.
A message some recipients refused and others accepted is ACCEPTED (retrying would send it twice
to those who have it); the reason lists the refused ones.

A recipient refused at RCPT time is reported in `SendResult.events` (`refusal_events`): a 5xx
about the recipient is a synchronous bounce whatever the email's outcome, classified by reason
(gomailpy.bounce_reasons, the same rules as for DSNs): hard (which suppresses the
address) only for a bad address, soft for a full mailbox, `blocked` when the reason is about the
sender or the message (a policy, a blocklist: the address is fine). When the email is accepted
for others, nobody will try the refused ones again, so a refusal about the sender gives
`blocked`, another 4xx `bounced/soft` and another policy refusal `rejected`; when it is not
accepted at all, those are left out, since the email is retried or goes out elsewhere. Every
refusal is also in `SendResult.refused`, for the pipeline's health per mailbox provider.

With events on (`events.enabled`), the envelope sender is the VERP address
`bounces+<message id>@<events.bounce_domain>` (gomailpy.email.verp), so the relay's later DSNs reach
the bounce listener (gomailpy.listeners.bounces) naming the email. With `dkim` domains configured,
each message is DKIM-signed for its sender's domain (gomailpy.email.dkim).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterable

import aiosmtplib
from aiosmtplib import (
    SMTPConnectResponseError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupported,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)

from gomailpy.bounce_reasons import Category, classify
from gomailpy.bounce_reasons import outcome as bounce_outcome
from gomailpy.bulk.links import track_envelope
from gomailpy.config.bulk import BulkSettings
from gomailpy.config.feedback import EventsSettings
from gomailpy.config.providers import SmtpSettings
from gomailpy.config.settings import provider_var
from gomailpy.email.dkim import DkimSigner
from gomailpy.email.envelope import Envelope
from gomailpy.email.mime import (
    all_recipients,
    envelope_sender,
    needs_smtputf8,
    render_bytes,
)
from gomailpy.email.verp import verp_address
from gomailpy.events import Event, EventType, Subtype, iso, stable_id
from gomailpy.lifecycle import AsyncResource
from gomailpy.providers.base import Outcome, SendResult

NAME = "smtp"
_MAX_REASON = 300
_AUTH_CODES = frozenset({530, 534, 535, 538})
_ENHANCED_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_ACCOUNT_TEXT = ("relay", "authentication", "not authorized", "unauthorized")
_THROTTLE_TEXT = ("rate", "too many", "throttl")
_QUIT_TIMEOUT_S = 2.0


def classify_reply(code: int, message: str) -> Outcome:
    """The outcome of one refusing SMTP reply (see the table in the module docstring)."""
    lowered = message.lower()
    if 400 <= code < 500:
        if any(text in lowered for text in _THROTTLE_TEXT):
            return Outcome.THROTTLED
        return Outcome.TRANSIENT
    if 500 <= code < 600:
        enhanced = _ENHANCED_STATUS.match(message)
        if code in _AUTH_CODES or (enhanced is not None and enhanced.group(2) == "7"):
            return Outcome.ACCOUNT
        if any(text in lowered for text in _ACCOUNT_TEXT):
            return Outcome.ACCOUNT
        return Outcome.PERMANENT
    return Outcome.TRANSIENT  # not a refusal code at all: a confused server


def _reply(code: int, message: str) -> str:
    return f"{code} {message}".strip()[:_MAX_REASON]


def classify_error(exc: Exception) -> tuple[Outcome, str]:
    """(outcome, reason) for an exception aiosmtplib raised during connect or a transaction."""
    if isinstance(exc, SMTPRecipientsRefused):
        refusals = [(r.code, r.message) for r in exc.recipients]
        outcomes = {classify_reply(code, message) for code, message in refusals}
        detail = "; ".join(f"{r.recipient}: {_reply(r.code, r.message)}" for r in exc.recipients)
        reason = f"all recipients refused: {detail}"[:_MAX_REASON]
        # Any temporary refusal makes the whole email worth retrying.
        for outcome in (Outcome.TRANSIENT, Outcome.THROTTLED, Outcome.ACCOUNT):
            if outcome in outcomes:
                return outcome, reason
        return Outcome.PERMANENT, reason
    if isinstance(exc, SMTPSenderRefused):
        outcome = classify_reply(exc.code, exc.message)
        if outcome is Outcome.PERMANENT:
            outcome = Outcome.ACCOUNT  # the relay will not send as our sender: an account matter
        return outcome, f"sender refused: {_reply(exc.code, exc.message)}"
    if isinstance(exc, SMTPHeloError | SMTPConnectResponseError):
        # The server will not talk to us at all (a refusing banner or HELO): not the email's
        # fault, so never PERMANENT.
        outcome = Outcome.TRANSIENT if exc.code < 500 else Outcome.ACCOUNT
        return outcome, _reply(exc.code, exc.message)
    if isinstance(exc, SMTPResponseException):  # DATA, AUTH
        return classify_reply(exc.code, exc.message), _reply(exc.code, exc.message)
    if isinstance(exc, SMTPNotSupported):
        # The relay lacks what the configuration or the email needs (STARTTLS, AUTH, SMTPUTF8).
        return Outcome.ACCOUNT, f"not supported by the server: {exc}"[:_MAX_REASON]
    return Outcome.TRANSIENT, f"{type(exc).__name__}: {exc}"[:_MAX_REASON]


class SmtpProvider(AsyncResource):
    """Sends over SMTP with up to `max_connections` pooled connections; a one-shot async context
    manager (`gomailpy.lifecycle`) whose `aclose` ends them."""

    kind = NAME

    def __init__(
        self,
        settings: SmtpSettings,
        events: EventsSettings | None = None,
        bulk: BulkSettings | None = None,
        *,
        where: str | None = None,
    ) -> None:
        """`events`: with `events.enabled`, VERP envelope senders on `events.bounce_domain`.
        `bulk`: open and click tracking by gomailpy itself (gomailpy.bulk.links).
        Reads the DKIM keys (ConfigError when one cannot be used, naming the instance as
        `where` writes it, `providers[3] (relay-b)`; default: by name)."""
        self._bulk = bulk
        self._settings = settings
        self.name = settings.name  # the instance: labels, health, controls
        self._bounce_domain = events.bounce_domain if events and events.enabled else None
        self._dkim = DkimSigner.from_settings(
            settings.dkim,
            settings.dkim_keys,
            instance=where or f"providers ({settings.name})",
            variable=provider_var(settings.name, "dkim_keys"),
        )
        self.timeout_s = settings.timeout_s
        # The pipeline starts at most this many sends at once, so none waits for a connection
        # inside its time limit; `_slots` keeps the pool at that size for any other caller.
        self.max_concurrency = settings.max_connections
        self._slots = asyncio.Semaphore(settings.max_connections)
        # LIFO: the most recently used connection is the one least likely to have timed out.
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] = asyncio.LifoQueue()
        self._closed = False

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self._settings
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.use_tls,
            # Explicit: STARTTLS is used when configured and only then, so a server with a
            # certificate nobody validates is not tried "opportunistically".
            start_tls=s.start_tls,
            validate_certs=s.validate_certs,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            # None: the pipeline bounds the whole transaction with timeout_s, so a slow server
            # gives the same "timed out" as every other provider.
            timeout=None,
        )

    async def _connect(self) -> aiosmtplib.SMTP:
        client = self._new_client()
        try:
            await client.connect()  # STARTTLS and AUTH as configured
            if client.is_ehlo_or_helo_needed:
                # EHLO now rather than lazily in sendmail: a send checks the extensions first.
                try:
                    await client.ehlo()
                except SMTPHeloError as exc:
                    if not 500 <= exc.code < 600:
                        raise
                    await client.helo()  # an old server without ESMTP
        except BaseException:
            client.close()
            raise
        return client

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        """A connected client and whether it was reused from the pool."""
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client.is_connected:
                return client, True
            client.close()
        return await self._connect(), False

    async def send(self, envelope: Envelope) -> SendResult:
        async with self._slots:
            client: aiosmtplib.SMTP | None = None
            reusable = False
            try:
                client, reused = await self._checkout()
                try:
                    result = await self._transaction(client, envelope)
                except SMTPServerDisconnected:
                    if not reused:
                        raise
                    # The server dropped this pooled connection while it sat idle.
                    client.close()
                    client = None
                    client = await self._connect()
                    result = await self._transaction(client, envelope)
                reusable = True
                return result
            except SMTPException as exc:
                # A refusing reply leaves the session usable (aiosmtplib sent RSET);
                # anything else (disconnect, timeout) leaves it in an unknown state.
                reusable = isinstance(exc, SMTPResponseException | SMTPRecipientsRefused)
                outcome, reason = classify_error(exc)
                events: tuple[Event, ...] = ()
                refusals: list[tuple[str, int, str]] = []
                if isinstance(exc, SMTPRecipientsRefused):
                    refusals = [(r.recipient, r.code, r.message) for r in exc.recipients]
                    events = refusal_events(envelope.id, refusals, accepted=False)
                return SendResult(
                    self.name, outcome, reason=reason, events=events, refused=tuple(refusals)
                )
            except (OSError, ValueError) as exc:
                # OSError: no connection; ValueError: an address aiosmtplib will not put on the
                # wire (checked before anything is sent).
                outcome = Outcome.TRANSIENT if isinstance(exc, OSError) else Outcome.PERMANENT
                return SendResult(self.name, outcome, reason=f"{type(exc).__name__}: {exc}")
            finally:
                # Runs on cancellation (the send timeout) and on an unforeseen error too: a
                # client mid-transaction is closed, never pooled.
                if client is not None:
                    if reusable and client.is_connected and not self._closed:
                        self._idle.put_nowait(client)
                    else:
                        client.close()

    async def _transaction(self, client: aiosmtplib.SMTP, envelope: Envelope) -> SendResult:
        email = envelope.email
        options: list[str] = []
        if needs_smtputf8(email):
            if not client.supports_extension("smtputf8"):
                raise SMTPNotSupported("SMTPUTF8 (a non-ASCII local part) is not offered")
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        sender = envelope_sender(email)
        if self._bulk is not None and envelope.bulk is not None:
            envelope = track_envelope(envelope, self._bulk, time.time())
        data = self._dkim.sign(render_bytes(envelope), sender)
        refused, reply = await client.sendmail(
            self._return_path(envelope) or sender,
            all_recipients(email),
            data,
            mail_options=options,
        )
        reason = ""
        if refused:
            detail = "; ".join(
                f"{rcpt}: {_reply(r.code, r.message)}" for rcpt, r in refused.items()
            )
            reason = f"accepted, but refused for: {detail}"[:_MAX_REASON]
        refusals = [(rcpt, r.code, r.message) for rcpt, r in refused.items()]
        return SendResult(
            self.name,
            Outcome.ACCEPTED,
            provider_message_id=_queue_id(reply),
            reason=reason,
            events=refusal_events(envelope.id, refusals, accepted=True),
            refused=tuple(refusals),
        )

    def _return_path(self, envelope: Envelope) -> str | None:
        """The VERP envelope sender when events are on (None: the email's own sender)."""
        if self._bounce_domain is None:
            return None
        return verp_address(envelope.id, self._bounce_domain, instance=self.name)

    async def _stop(self) -> None:
        self._closed = True
        while not self._idle.empty():
            client = self._idle.get_nowait()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_QUIT_TIMEOUT_S):
                    await client.quit()  # polite; the server may have gone already
            client.close()


def refusal_events(
    message_id: str, refusals: Iterable[tuple[str, int, str]], *, accepted: bool
) -> tuple[Event, ...]:
    """Events for recipients refused at RCPT time, given as (address, code, text), of an email
    the relay `accepted` for others or not at all (see the module docstring)."""
    at = iso(time.time())
    events = []
    for recipient, code, text in refusals:
        outcome = classify_reply(code, text)
        reply = _reply(code, text)
        found = classify(reply)
        if outcome is Outcome.PERMANENT:
            kind, subtype = bounce_outcome(found)
        elif not accepted:
            continue  # retried, or sent elsewhere: its outcome is still to come
        elif found.category is Category.REFUSED:
            kind, subtype = EventType.BLOCKED, Subtype.SOFT.value  # the sender, not the address
        elif outcome is Outcome.ACCOUNT:
            kind, subtype = EventType.REJECTED, None
        else:
            kind, subtype = EventType.BOUNCED, Subtype.SOFT.value
        events.append(
            Event(
                # The same refusal on a later try of the same email is the same event.
                id=stable_id("smtp-rcpt", message_id, recipient.lower(), code),
                message_id=message_id,
                recipient=recipient,
                provider=NAME,
                type=kind,
                at=at,
                subtype=subtype,
                reason=found.reason.value,
                mta_response=reply,
                raw={"stage": "RCPT", "code": code, "message": text},
            )
        )
    return tuple(events)


def _queue_id(reply: str) -> str | None:
    # The reply to DATA often carries the relay's queue id ("2.0.0 Ok: queued as 4AbC12");
    # the whole reply text is kept, short, as the provider's id.
    reply = reply.strip()
    return reply[:200] or None
