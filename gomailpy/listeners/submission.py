"""SMTP submission: applications that speak SMTP hand their mail to gomailpy as to a relay.

    async with SubmissionListener(settings, queues, tls=context, port=2587) as listener:
        ...                                   # `gomail smtp` runs it until SIGTERM

- STARTTLS first, then AUTH PLAIN or LOGIN with username `apikey` and an API key with the
  scope `mail.send` (`api.api_keys`, `api.api_key_hashes`) as the password (as SendGrid's SMTP
  relay). Nothing else is accepted before both: 530. A wrong key, or one without the scope: 535.
  (With no key configured any password is taken, as the API takes requests without a key.)
- SIZE in EHLO (`MAX_MESSAGE_BYTES`); a larger message: 552. At most `MAX_RECIPIENTS` per
  message (452), `MAX_MESSAGES_PER_CONNECTION` per connection (421, then closed),
  `MAX_CONNECTIONS_PER_CLIENT` at once from one address (421 at connect), and a connection
  idle for `IDLE_TIMEOUT_S` is closed.
- RCPT of an address that is not one (syntax, as the API checks it): 553.
- DATA: the message becomes one email (gomailpy.email.submitted: kept byte for byte, but for a Bcc
  header; RCPTs its To and Cc headers do not name are its Bcc recipients), put on a queue
  (the configured ones in turn, the claim check for a large one), and only then answered
  250 with its message id. No queue takes it: 451, and the client keeps it. A message that
  cannot be carried (an address or part refused): 554. Nothing is half-accepted.

Production code that needs aiosmtpd: the optional extra `gomailpy[smtp]`. Only `gomail smtp`
imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import ssl
from collections import Counter
from typing import Any
from weakref import WeakKeyDictionary

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import ValidationError

from gomailpy.config.settings import MAIL_SEND, Settings
from gomailpy.email.envelope import Envelope as QueuedEnvelope
from gomailpy.email.envelope import new_message_id
from gomailpy.email.models import normalize_address
from gomailpy.email.submitted import submitted_email
from gomailpy.errors import ClaimCheckError, QueueError
from gomailpy.lifecycle import AsyncResource
from gomailpy.listeners.base import close_listener, listen, server_hostname, stop_on_signals
from gomailpy.queues.claim_check import ClaimCheck, open_claim_check
from gomailpy.queues.sqs import QueueClient, create_queue_client
from gomailpy.store.deliveries.ids import message_ids

log = logging.getLogger("gomailpy.submission")

USERNAME = "apikey"
MAX_MESSAGE_BYTES = 20 * 1024 * 1024
MAX_RECIPIENTS = 50  # as an email of the API (SES's limit)
MAX_MESSAGES_PER_CONNECTION = 100
MAX_CONNECTIONS_PER_CLIENT = 10
IDLE_TIMEOUT_S = 60.0
SQS_MAX_MESSAGE_BYTES = 262_144


class _Handler:
    """aiosmtpd's hooks (found by name): who may send, to whom, and what DATA does."""

    def __init__(self, listener: SubmissionListener) -> None:
        self._listener = listener
        self._messages: WeakKeyDictionary[Session, int] = WeakKeyDictionary()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        try:
            normalize_address(address)
        except ValueError as exc:
            return f"553 5.1.3 <{address}>: {exc}"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 Too many recipients (at most {MAX_RECIPIENTS})"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        sent = self._messages.get(session, 0)
        if sent >= MAX_MESSAGES_PER_CONNECTION:
            return f"421 4.7.0 At most {MAX_MESSAGES_PER_CONNECTION} messages per connection"
        answer = await self._listener.submit(
            envelope.original_content or b"", envelope.mail_from or "", list(envelope.rcpt_tos)
        )
        if answer.startswith("250"):
            self._messages[session] = sent + 1
        return answer


class _SubmissionSMTP(SMTP):
    """aiosmtpd's SMTP, refusing a client past its number of connections at once."""

    def __init__(self, listener: SubmissionListener, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listener = listener
        self._client: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._client is None:  # not again after STARTTLS
            peer = transport.get_extra_info("peername")
            self._client = str(peer[0]) if peer else "unknown"
            self._listener.connections[self._client] += 1
            if self._listener.connections[self._client] > MAX_CONNECTIONS_PER_CLIENT:
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(b"421 4.7.0 Too many connections from your address\r\n")
                transport.close()
                return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._client is not None:
            self._listener.connections[self._client] -= 1
            self._client = None
        super().connection_lost(error)


class SubmissionListener(AsyncResource):
    """Listens on `host:port` (port 0 picks a free one, then `port` is the real one)."""

    def __init__(
        self,
        settings: Settings,
        queues: QueueClient,
        *,
        tls: ssl.SSLContext,
        host: str = "127.0.0.1",
        port: int = 2587,
        claim_check: ClaimCheck | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.connections: Counter[str] = Counter()
        self._settings = settings
        self._queues = queues
        self._tls = tls
        self._keys_required = bool(settings.api.keys)
        self._keys = [  # those that may send (api.auth's scopes)
            bytes.fromhex(key.hash)
            for key in settings.api.keys
            if key.scopes is None or MAIL_SEND in key.scopes
        ]
        self._claim_check = claim_check
        self._ids = message_ids(settings.status) if settings.status.enabled else None
        self._urls: list[str] = []
        self._turn = 0
        self._server: asyncio.Server | None = None

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        hostname = await server_hostname()
        if not self._keys_required:
            log.warning("no API key is configured: SMTP submission takes any password")

        def protocol() -> SMTP:
            return _SubmissionSMTP(
                self,
                handler,
                hostname=hostname,
                data_size_limit=MAX_MESSAGE_BYTES,
                enable_SMTPUTF8=True,
                tls_context=self._tls,
                require_starttls=True,
                auth_required=True,
                auth_require_tls=True,
                authenticator=self._authenticate,
                timeout=IDLE_TIMEOUT_S,
                loop=loop,
            )

        self._server, self.port = await listen(protocol, self.host, self.port)
        log.info("SMTP submission on %s:%d (STARTTLS, AUTH)", self.host, self.port)

    async def _stop(self) -> None:
        if self._server is not None:
            await close_listener(self._server)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or data.login != USERNAME.encode():
            return AuthResult(success=False, handled=False)
        if self._keys_required and not self._known_key(data.password):
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True)

    def _known_key(self, password: bytes) -> bool:
        # As api.auth.KeyRing: SHA-256 of the key against every configured hash, in constant
        # time, all of them every time.
        digest = hashlib.sha256(password.strip()).digest()
        found = False
        for candidate in self._keys:
            found |= hmac.compare_digest(digest, candidate)
        return found

    async def submit(self, data: bytes, mail_from: str, rcpt_tos: list[str]) -> str:
        """Queue one submitted message; the SMTP answer to its DATA."""
        try:
            email = submitted_email(data, mail_from, rcpt_tos)
        except (ValidationError, ValueError) as exc:
            return f"554 5.6.0 The message cannot be carried: {str(exc).splitlines()[0]}"
        message_id = (self._ids.new() if self._ids is not None else None) or new_message_id()
        envelope = QueuedEnvelope.wrap(email, message_id=message_id)
        body = envelope.encode()
        try:
            if len(body.encode("utf-8")) > SQS_MAX_MESSAGE_BYTES:
                if self._claim_check is None:
                    return "552 5.3.4 Message too large to queue (no claim_check.bucket)"
                body = (await self._claim_check.store(envelope, body)).encode()
            queue = await self._enqueue(body)
        except (QueueError, ClaimCheckError) as exc:
            log.warning("submission from <%s> not queued, answered 451: %s", mail_from, exc)
            return "451 4.3.0 Could not queue the message; try again later"
        log.info("submitted email queued", extra={"message_id": message_id, "queue": queue})
        return f"250 2.0.0 Ok: queued as {message_id}"

    async def _enqueue(self, body: str) -> str:
        """Put `body` on a configured queue, starting from the next one in turn; QueueError
        (the last one's) when none takes it."""
        if not self._urls:
            self._urls = await self._queues.resolve_all()
        self._turn += 1
        last: QueueError | None = None
        for n in range(len(self._urls)):
            url = self._urls[(self._turn + n) % len(self._urls)]
            try:
                await self._queues.send(url, body)
                return url
            except QueueError as exc:
                last = exc
        assert last is not None
        raise last


async def run_submission(settings: Settings, tls: ssl.SSLContext, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT (`gomail smtp`)."""
    stop = stop_on_signals()
    async with contextlib.AsyncExitStack() as stack:
        queues = await stack.enter_async_context(create_queue_client(settings))
        claim_check = await open_claim_check(stack, settings)
        await stack.enter_async_context(
            SubmissionListener(
                settings, queues, tls=tls, host=host, port=port, claim_check=claim_check
            )
        )
        await stop.wait()
    log.info("SMTP submission stopped")


def tls_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """The server side of STARTTLS from a PEM certificate (chain) and its key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context
