"""The bounce listener: an SMTP server that takes the reports relays mail back, and queues them.

    async with create_queue_client(settings) as queues, BounceListener(settings, queues) as server:
        server.port                       # listening on events.bounce_host:events.bounce_port
    # `gomail bounces --config FILE` runs it until SIGTERM (run_bounce_listener)

The bounce domain's MX points here. With events on, every SMTP send names its email in its
envelope sender (`bounces+<message id>@<events.bounce_domain>`, gomailpy.email.verp), where a relay
sends its DSNs (RFC 3464) and some mailbox providers their complaints (ARF, RFC 5965); feedback
loops that register one fixed address use the plain `bounces@<events.bounce_domain>`.

- Mail to a `mailto:` unsubscribe address (`unsubscribe+<token>@<events.bounce_domain>`, in
  every `List-Unsubscribe` header when `bulk` is on: gomailpy.bulk.headers) unsubscribes its
  sender as the one-click POST does (gomailpy.bulk.unsubscribes): the token's MAC names the
  recipient it was issued to, who must be the envelope sender or, failing that (a gateway that
  rewrites the envelope sender), an address of the From header. The subject and body are not
  read (RFC 2369, RFC 8058). RCPT refuses a malformed or expired token (550 5.1.1 / 5.7.1) and
  a null sender; DATA refuses a token no sender matches (550 5.7.1); nothing is recorded then.
  Accepted, the `unsubscribed` event goes on the events queue (the event consumer suppresses
  the recipient for the token's group, or for everything, and webhooks fire), and only once
  SQS holds it is the answer 250; 451 otherwise. One transaction carries one kind of mail:
  a report's recipient after an unsubscribe's (or the other way) is answered 452, sent again
  in a transaction of its own.
- RCPT for any other address: 550 (this is no open relay, and nothing else is read here).
- DATA: the whole message goes on the events queue as `{"source": "smtp", "receivedAt",
  "mailFrom", "rcptTo", "message": <base64>}`, and only once SQS holds it is the answer 250;
  if the queue cannot take it, 451 — the relay keeps the report and tries again. Nothing is
  parsed here: the pipeline's event consumer reads it (gomailpy.feedback.dsn), and one that cannot
  be read ends in the events dead-letter queue with its reason, never lost.
- Size: a message over `MAX_MESSAGE_BYTES` is refused (552, by aiosmtpd); one that fits that
  but not a queue message is cut at `MAX_QUEUED_BYTES` and marked `"truncated": true`. A
  report's own parts come before the returned original, so what is cut is the original's tail.

Production code that needs aiosmtpd: the optional extra `gomailpy[smtp]`. Only
`gomail bounces` imports this module (the API and the pipeline never do).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from gomailpy.bulk.batcher import EventBatcher
from gomailpy.bulk.hits import unsubscribed
from gomailpy.bulk.unsubscribes import mailto_token, mailto_unsubscribe, record_unsubscribes
from gomailpy.config.settings import Settings
from gomailpy.email.verp import is_bounce_address
from gomailpy.errors import QueueError, TokenError
from gomailpy.events import Event
from gomailpy.lifecycle import AsyncResource
from gomailpy.listeners.base import close_listener, listen, server_hostname, stop_on_signals
from gomailpy.queues.sqs import QueueClient, create_queue_client

log = logging.getLogger("gomailpy.bounces")

MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # SIZE offered in EHLO; more is refused with 552
# What fits one SQS message (256 KiB) once base64 (4/3) and the JSON around it are added.
MAX_QUEUED_BYTES = (256 * 1024 - 8 * 1024) * 3 // 4
MAX_RECIPIENTS = 20  # a report has one; more is someone probing
MAX_FROM_ADDRESSES = 10  # of a From header tried against an unsubscribe token
REFUSED = {
    400: "550 5.1.1 <{}>: no such unsubscribe address here",
    403: "550 5.7.1 <{}>: this unsubscribe address was not issued to the sender",
    410: "550 5.7.1 <{}>: this unsubscribe address has expired",
}


def queue_body(
    data: bytes, mail_from: str, rcpt_tos: list[str], received_at: float
) -> dict[str, Any]:
    """The events-queue body for one received message (cut to `MAX_QUEUED_BYTES`)."""
    body: dict[str, Any] = {
        "source": "smtp",
        "receivedAt": received_at,
        "mailFrom": mail_from,
        "rcptTo": rcpt_tos,
        "message": base64.b64encode(data[:MAX_QUEUED_BYTES]).decode("ascii"),
    }
    if len(data) > MAX_QUEUED_BYTES:
        body["truncated"] = True
    return body


class _Handler:
    """aiosmtpd's hooks (it finds them by name): who may receive, and what DATA does."""

    def __init__(self, listener: BounceListener) -> None:
        self._listener = listener

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        listener = self._listener
        unsubscribing = listener.is_unsubscribe_address(address)
        if not unsubscribing and not is_bounce_address(address, listener.bounce_domain):
            return f"550 5.1.1 <{address}>: no such bounce address here"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        if envelope.rcpt_tos and listener.is_unsubscribe_address(envelope.rcpt_tos[0]) != (
            unsubscribing
        ):
            return "452 4.5.3 One kind of mail per transaction: send this one on its own"
        if unsubscribing:
            refusal = listener.check_unsubscribe(address, envelope.mail_from)
            if refusal is not None:
                return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        # aiosmtpd keeps the null sender of DSNs as "<>": queued as "".
        mail_from = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        if envelope.rcpt_tos and self._listener.is_unsubscribe_address(envelope.rcpt_tos[0]):
            return await self._listener.unsubscribe(data, mail_from, envelope.rcpt_tos)
        return await self._listener.enqueue(data, mail_from, envelope.rcpt_tos)


def from_addresses(data: bytes) -> list[str]:
    """The addresses of a message's From header (at most MAX_FROM_ADDRESSES); [] when it has
    none that can be read. Only the header block is parsed."""
    try:
        header = BytesHeaderParser().parsebytes(data).get_all("From") or []
        found = [a for _, a in getaddresses([str(h) for h in header]) if "@" in a]
    except Exception:  # a hostile header is no sender, never a failed transaction
        return []
    return found[:MAX_FROM_ADDRESSES]


class BounceListener(AsyncResource):
    """Listens on `events.bounce_host:events.bounce_port` (or `host`/`port`; port 0 picks a
    free one, then `port` is the real one) and queues every report it accepts."""

    def __init__(
        self,
        settings: Settings,
        queues: QueueClient,
        *,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        events = settings.events
        self.bounce_domain = events.bounce_domain
        self.host = events.bounce_host if host is None else host
        self.port = events.bounce_port if port is None else port
        self._queue = events.queue
        self._queues = queues
        self._queue_url: str | None = None
        self._server: asyncio.Server | None = None
        self._bulk = settings.bulk
        # Only `put` is used (the answer waits for the queue), never the batching.
        self._events = EventBatcher(queues, events.queue)

    async def _start(self) -> None:
        # Resolved now, so that a missing events queue stops the listener at once rather than
        # answering 451 to every relay (`gomail init` creates it).
        self._queue_url = await self._queues.resolve(self._queue)
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        hostname = await server_hostname()

        def protocol() -> SMTP:
            return SMTP(
                handler,
                hostname=hostname,
                data_size_limit=MAX_MESSAGE_BYTES,
                enable_SMTPUTF8=True,
                loop=loop,
            )

        self._server, self.port = await listen(protocol, self.host, self.port)
        log.info(
            "bounce listener on %s:%d for *@%s -> %s",
            self.host,
            self.port,
            self.bounce_domain,
            self._queue,
        )

    async def _stop(self) -> None:
        if self._server is not None:
            await close_listener(self._server)

    def is_unsubscribe_address(self, address: str) -> bool:
        return self._bulk.enabled and mailto_token(address, self.bounce_domain) is not None

    def check_unsubscribe(self, address: str, mail_from: str | None) -> str | None:
        """RCPT's refusal of an unsubscribe `address`, or None. A token the envelope sender
        does not match may still match the From header: DATA decides."""
        if mail_from in (None, "", "<>"):
            return "550 5.7.1 An unsubscribe needs a sender (not an automatic reply)"
        try:
            mailto_unsubscribe(address, [mail_from], self._bulk, self.bounce_domain, time.time())
        except TokenError as exc:
            if exc.status != 403:
                return REFUSED.get(exc.status, REFUSED[400]).format(address)
        return None

    async def unsubscribe(self, data: bytes, mail_from: str, rcpt_tos: list[str]) -> str:
        """Record the unsubscribes of one message; the SMTP answer to its DATA."""
        now = time.time()
        senders = [mail_from, *from_addresses(data)]
        events: dict[str, Event] = {}
        for address in rcpt_tos:
            try:
                link = mailto_unsubscribe(address, senders, self._bulk, self.bounce_domain, now)
            except TokenError as exc:
                log.warning("unsubscribe mail from <%s> refused: %s", mail_from, exc)
                return REFUSED.get(exc.status, REFUSED[400]).format(address)
            event = unsubscribed(link, link.group, now, "mailto")
            events[event.id] = event
        try:
            await record_unsubscribes(
                list(events.values()), suppression=None, batcher=self._events, late=False
            )
        except QueueError as exc:
            log.warning("unsubscribe from <%s> not queued, answered 451: %s", mail_from, exc)
            return "451 4.3.0 Could not record the unsubscribe; try again later"
        for event in events.values():
            log.info("unsubscribe of %s (%s) queued", event.recipient, event.subtype)
        return "250 2.0.0 Unsubscribed"

    async def enqueue(self, data: bytes, mail_from: str, rcpt_tos: list[str]) -> str:
        """Put one received message on the events queue; the SMTP answer to its DATA."""
        assert self._queue_url is not None, "enter the listener first"
        body = queue_body(data, mail_from, list(rcpt_tos), time.time())
        try:
            sqs_id = await self._queues.send(self._queue_url, json.dumps(body))
        except QueueError as exc:
            log.warning("report from <%s> not queued, answered 451: %s", mail_from, exc)
            return "451 4.3.0 Could not queue the report; try again later"
        log.info(
            "report from <%s> for %s queued (%d bytes%s)",
            mail_from,
            ", ".join(rcpt_tos),
            len(data),
            ", truncated" if body.get("truncated") else "",
        )
        return f"250 2.0.0 Queued as {sqs_id}"


async def run_bounce_listener(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT (`gomail bounces`)."""
    stop = stop_on_signals()
    async with (
        create_queue_client(settings) as queues,
        BounceListener(settings, queues),
    ):
        await stop.wait()
    log.info("bounce listener stopped")
