"""An SMTP server standing in for a relay: records what it receives, fails on demand.

    async with SmtpStandIn() as server:          # 127.0.0.1, a free port
        server.port                              # the real port
        server.mode = "fail"                     # next transactions answer 451
        server.messages[0].rcpt_tos              # what arrived
        server.connections                       # how many connections were opened
    SmtpStandIn(delay_s=0.1)                     # answers each message's DATA 100 ms late

It runs aiosmtpd's protocol on the running event loop (no thread), so a test and the server
share one loop. Modes:

- "ok": accept every message (250);
- "fail": answer DATA with 451 (a temporary failure);
- "reject": refuse every recipient with 550 5.1.1 (a bad mailbox: the email's fault);
- "relay-denied": refuse every recipient with 550 5.7.1 relaying denied (the account's fault);
- "hang": accept the connection and the envelope, but never answer DATA;
- "block-domain": as "ok", except that every recipient at BLOCKED_DOMAIN (blocked.example.net)
  is refused at RCPT time with 550 5.7.1 blocked by policy: a mailbox provider that refuses this
  relay's mail, as the pipeline's health per mailbox provider sees it
  (pipeline.sending.mailbox_health).

In mode "ok", recipients choose what happens to them by their local part, as at every stand-in
(gomailpy_local.standins.events.outcome_for): `reject…` is refused at RCPT time (550 5.1.1);
for `bounce…`, `complain…` and `defer…` the message is accepted, and then, like a real relay,
the stand-in mails a report to the message's envelope sender — a DSN `failed` 5.1.1, an ARF
abuse report, a DSN `delayed` 4.4.1 (gomailpy_local.standins.reports) — at `report_to` (the
bounce listener's host and port, whatever the envelope sender's domain; None: no reports).
A report that finds no server is tried again a few times; `reports` lists what was sent.

`delay_s` holds each accepted message's answer that long (a relay 100 ms away, as benches need:
bench.scale --provider-latency-ms); connections wait independently of each other.

`stop()` closes every open connection too, so a client sees the server go away; `start()` again
binds the same port (a restarted relay).
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from gomailpy_local.standins.control import StandIn
from gomailpy_local.standins.events import BOUNCE, COMPLAIN, DEFER, outcome_for
from gomailpy_local.standins.reports import complaint_report, delivery_report, mail_report

MODES = ("ok", "fail", "reject", "relay-denied", "hang", "block-domain")
BLOCKED_DOMAIN = "blocked.example.net"  # refused by policy in mode "block-domain"
REJECT = "reject"  # a local part starting with it is refused at RCPT time
REPORT_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
_HOSTNAME = "standin.localhost"  # fixed: aiosmtpd would otherwise resolve the FQDN per connection


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message the stand-in accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    message_id: str | None
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def headers(self) -> email.message.Message:
        return email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(self.data)

    def to_json(self) -> dict[str, Any]:
        return {
            "mail_from": self.mail_from,
            "rcpt_tos": self.rcpt_tos,
            "message_id": self.message_id,
            "size": len(self.data),
            "received_at": self.received_at.isoformat(),
            "data": self.data.decode("utf-8", errors="replace"),
        }


@dataclass(frozen=True, slots=True)
class SentReport:
    """A report the stand-in mailed (or failed to: `error`)."""

    outcome: str  # bounce | complain | defer
    recipient: str
    to: str
    error: str | None = None


class _Handler:
    """aiosmtpd's hooks: where the mode takes effect."""

    def __init__(self, owner: SmtpStandIn) -> None:
        self._owner = owner

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self._owner.mode == "reject":
            return "550 5.1.1 Recipient address rejected: no such mailbox (stand-in)"
        if self._owner.mode == "relay-denied":
            return "550 5.7.1 Relaying denied (stand-in)"
        if self._owner.mode == "block-domain" and address.lower().endswith("@" + BLOCKED_DOMAIN):
            return f"550 5.7.1 <{address}>: blocked by policy (stand-in)"
        if address.rpartition("@")[0].lower().startswith(REJECT):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown (stand-in)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        mode = self._owner.mode
        if mode == "fail":
            return "451 4.3.0 Temporary failure, try again later (stand-in)"
        if mode == "hang":
            await self._owner.stopping.wait()  # never answers; stop() ends the wait
            return "421 4.3.2 Shutting down (stand-in)"
        if self._owner.delay_s > 0:
            await asyncio.sleep(self._owner.delay_s)
        data = envelope.original_content or b""
        header = email.parser.BytesHeaderParser().parsebytes(data)
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=data,
            message_id=header.get("Message-ID"),
        )
        self._owner.messages.append(mail)
        self._owner.report_on(mail)
        return f"250 2.0.0 Ok: queued as standin-{len(self._owner.messages)}"


class _CountingSMTP(SMTP):
    """aiosmtpd's protocol, telling the stand-in about every connection it opens and loses."""

    def __init__(self, owner: SmtpStandIn, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # STARTTLS calls this again on the same connection
        super().connection_made(transport)
        if first:
            self._owner.connections += 1
            self._owner._live.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._owner._live.discard(self)
        super().connection_lost(error)

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SmtpStandIn(StandIn):
    """An in-loop SMTP server on `host`; see the module docstring."""

    modes: tuple[str, ...] = MODES

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: str = "ok",
        report_to: tuple[str, int] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.host = host
        self.delay_s = delay_s  # how long each message's DATA waits for its answer
        self.port = port  # 0 until started: then the real port, kept across restarts
        self.report_to = report_to  # (host, port) of the bounce listener; None: no reports
        self.reports: list[SentReport] = []
        self._reporting: set[asyncio.Task[None]] = set()
        self.messages: list[ReceivedMail] = []
        self.connections = 0
        self.stopping = asyncio.Event()
        self._mode = "ok"
        self.set_mode(mode)
        self._server: asyncio.Server | None = None
        self._live: set[_CountingSMTP] = set()

    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        handler = _Handler(self)

        def protocol() -> _CountingSMTP:
            return _CountingSMTP(
                self,
                handler=handler,
                hostname=_HOSTNAME,
                enable_SMTPUTF8=True,
                loop=loop,
            )

        self._server = await loop.create_server(protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def report_on(self, mail: ReceivedMail) -> None:
        """Mail the reports `mail`'s recipients ask for (see the module docstring), in the
        background: the relay has answered 250 already."""
        if self.report_to is None or mail.mail_from in ("", "<>"):  # no report on a report
            return
        for recipient in mail.rcpt_tos:
            outcome = outcome_for(recipient)
            if outcome == BOUNCE:
                data = delivery_report(mail.data, recipient, action="failed", to=mail.mail_from)
            elif outcome == DEFER:
                data = delivery_report(mail.data, recipient, action="delayed", to=mail.mail_from)
            elif outcome == COMPLAIN:
                data = complaint_report(mail.data, recipient, to=mail.mail_from)
            else:
                continue
            task = asyncio.create_task(self._send_report(outcome, recipient, mail.mail_from, data))
            self._reporting.add(task)
            task.add_done_callback(self._reporting.discard)

    async def _send_report(self, outcome: str, recipient: str, to: str, data: bytes) -> None:
        assert self.report_to is not None
        host, port = self.report_to
        try:
            await mail_report(
                data, to=to, host=host, port=port, retry_delays_s=REPORT_RETRY_DELAYS_S
            )
            error = None
        except Exception as exc:  # recorded for whoever looks: a relay's reports can fail too
            error = f"{type(exc).__name__}: {exc}"
        self.reports.append(SentReport(outcome, recipient, to, error))

    async def stop(self) -> None:
        for task in list(self._reporting):
            task.cancel()
        await asyncio.gather(*self._reporting, return_exceptions=True)
        if self._server is None:
            return
        self.stopping.set()
        self._server.close()
        for connection in list(self._live):
            connection.drop()  # Server.close() alone leaves open connections running
        await self._server.wait_closed()
        self._server = None
        await asyncio.sleep(0)  # let the dropped connections' handlers see the cancellation
