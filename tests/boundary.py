"""A provider that stands at the network boundary, for pipeline tests that script outcomes (and
for the benchmarks, which measure the node around it).

It implements the Provider protocol exactly as SES, SendGrid and SMTP do; everything of ours
(reader, splitter, health, dispatch, settling, the queues) runs for real around it. Tests that
need the real protocols use the real providers against the stand-ins instead.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import dataclass, field

from gomailpy.email.envelope import Envelope
from gomailpy.providers.base import Outcome, SendResult


@dataclass
class ScriptedProvider:
    name: str
    mode: str = "ok"  # ok | fail | hang | throttle | account
    permanent_ids: set[str] = field(default_factory=set)  # these emails are refused for good
    latency_s: float = 0.0
    timeout_s: float = math.inf  # no time limit of its own: pipeline.send_timeout_s applies
    max_concurrency: int | None = None  # no pool of its own: max_in_flight bounds its sends
    accepted: list[str] = field(default_factory=list)  # envelope ids, in order
    attempts: Counter[str] = field(default_factory=Counter)

    async def send(self, envelope: Envelope) -> SendResult:
        self.attempts[envelope.id] += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.mode == "hang":
            await asyncio.Event().wait()
        if envelope.id in self.permanent_ids:
            return SendResult(self.name, Outcome.PERMANENT, reason="550 no such user")
        if self.mode == "fail":
            return SendResult(self.name, Outcome.TRANSIENT, reason="503 service unavailable")
        if self.mode == "throttle":
            return SendResult(self.name, Outcome.THROTTLED, reason="429", retry_after_s=0)
        if self.mode == "account":
            return SendResult(self.name, Outcome.ACCOUNT, reason="sender not verified")
        self.accepted.append(envelope.id)
        return SendResult(self.name, Outcome.ACCEPTED, provider_message_id=f"{self.name}-{envelope.id}")

    async def aclose(self) -> None:
        pass
