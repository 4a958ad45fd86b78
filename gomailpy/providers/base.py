"""What every provider is: a small async interface, and one way to report outcomes.

    class Provider(Protocol):
        name: str
        timeout_s: float                # the longest one send may take
        max_concurrency: int | None     # sends it serves at once (its connection pool)
        async def send(self, envelope: Envelope) -> SendResult: ...
        async def aclose(self) -> None: ...

A provider classifies every answer it understands into a `SendResult`, the same way for SES,
SendGrid and SMTP, so the pipeline decides what to do from `outcome` alone:

- ACCEPTED (SES MessageId, SendGrid 202, SMTP 250): delete it from the queue.
- TRANSIENT (connection error, timeout, 5xx, SMTP 4xx): retry later; counts against health.
- THROTTLED (429, SES "Maximum sending rate exceeded"): retry later, slower; health untouched.
- PERMANENT (the email is refused: bad recipient, malformed content): fail it for good; health
  untouched, since every provider would refuse it.
- ACCOUNT (this provider's account refused it: unverified sender, SendGrid 401/403, relay policy
  550): offer it to another provider; an operator must see it.

A provider does not guard itself against hanging or against its own bugs: `send` may run past
`timeout_s` or raise something unforeseen. The one caller, the pipeline's `ProviderLane`
(pipeline.sending.dispatch), bounds every call with `timeout_s` and turns a timeout or an exception
into a TRANSIENT result, and starts at most `max_concurrency` calls at once. A send may be cancelled
at any point; a provider leaves nothing half-used behind (SMTP closes that connection).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import aiohttp

from gomailpy.email.envelope import Envelope
from gomailpy.events import Event


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    TRANSIENT = "transient"
    THROTTLED = "throttled"
    PERMANENT = "permanent"
    ACCOUNT = "account"


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one provider made of one email. `reason` is safe to log (no body, no secret)."""

    provider: str
    outcome: Outcome
    provider_message_id: str | None = None
    reason: str = ""
    retry_after_s: float | None = None
    # What the provider learnt about single recipients during the send, whatever the outcome
    # (SMTP: a recipient refused at RCPT time); the pipeline records them like any event.
    events: tuple[Event, ...] = ()
    # Every recipient refused at RCPT time, as (address, reply code, reply text), whatever the
    # outcome: what the sending provider learnt about the recipient's domain (the pipeline's
    # health per mailbox provider, pipeline.sending.mailbox_health).
    refused: tuple[tuple[str, int, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.ACCEPTED


@runtime_checkable
class Provider(Protocol):
    """Sends one email at a time; built once per process and reused (connections kept alive)."""

    name: str

    @property
    def timeout_s(self) -> float:
        """The longest one send may take (`providers.<name>.timeout_s`); the pipeline applies
        the tighter of this and `pipeline.send_timeout_s`."""
        ...

    @property
    def max_concurrency(self) -> int | None:
        """How many sends it serves at once (its connection pool), so that none waits for a
        connection inside its time limit; None: no limit of its own."""
        ...

    async def send(self, envelope: Envelope) -> SendResult: ...

    async def aclose(self) -> None: ...


def retry_after_s(headers: Any) -> float | None:
    """An HTTP API's wait hint on a 429: Retry-After (seconds or an HTTP date), else
    X-RateLimit-Reset (epoch seconds, as SendGrid sends it); None without either."""
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(retry_after).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            pass
    return None


def http_session(
    max_connections: int, timeout_s: float, authorization: str
) -> aiohttp.ClientSession:
    """The one aiohttp session of an HTTP provider instance (SendGrid, Mailgun): at most
    `max_connections` connections (the pipeline starts no more sends at once, so none waits for a
    connection inside its time limit), answers read whatever their status."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections),
        headers={"Authorization": authorization, "User-Agent": "gomailpy"},
        # The pipeline bounds the whole call with timeout_s; this only bounds connecting.
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout_s),
        raise_for_status=False,
    )
