"""What every provider is: a small async interface, and one way to report outcomes.

    class Provider(Protocol):
        name: str
        async def send(self, envelope: Envelope) -> SendResult: ...
        async def aclose(self) -> None: ...

A provider never raises for a refused or failed send: it classifies the outcome into a
`SendResult`, the same way for SES, SendGrid and SMTP, so the pipeline decides what to do from
`outcome` alone:

- ACCEPTED (SES MessageId, SendGrid 202, SMTP 250): delete it from the queue.
- TRANSIENT (connection error, timeout, 5xx, SMTP 4xx): retry later; counts against health.
- THROTTLED (429, SES "Maximum sending rate exceeded"): retry later, slower; health untouched.
- PERMANENT (the email is refused: bad recipient, malformed content): fail it for good; health
  untouched, since every provider would refuse it.
- ACCOUNT (this provider's account refused it: unverified sender, SendGrid 401/403, relay policy
  550): offer it to another provider; an operator must see it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from gomailpy.envelope import Envelope


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

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.ACCEPTED


@runtime_checkable
class Provider(Protocol):
    """Sends one email at a time; built once per process and reused (connections kept alive)."""

    name: str

    async def send(self, envelope: Envelope) -> SendResult: ...

    async def aclose(self) -> None: ...


async def within(provider: str, timeout_s: float, send: Awaitable[SendResult]) -> SendResult:
    """`send`, or a TRANSIENT result once `timeout_s` has passed: a hung server is an outage."""
    try:
        async with asyncio.timeout(timeout_s):
            return await send
    except TimeoutError:
        return SendResult(provider, Outcome.TRANSIENT, reason=f"timed out after {timeout_s:g}s")
