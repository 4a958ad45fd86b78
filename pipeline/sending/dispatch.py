"""Send through the providers: one `ProviderLane` per provider, and a second offer for emails a
provider's account refused.

A provider classifies the answers it understands (gomailpy.providers.base); its lane is the one
place that adds what a provider cannot promise about itself:
- a hard time limit per call, the tighter of `pipeline.send_timeout_s` and the provider's own
  `timeout_s`, so a hung provider becomes a TRANSIENT result long before the message's
  visibility timeout runs out. It counts only time the event loop ran (`ActiveDeadline`): a
  node frozen mid-send (SIGSTOP, a VM pause) reads the answer that arrived meanwhile when it
  wakes, instead of timing out on it, so the outcome it records is the provider's (the node
  holding the email meanwhile waits for exactly that: gomailpy.store.deliveries.intents);
- at most `provider.max_concurrency` calls at once (its connection pool), with the time limit
  starting only once a call has its slot: a send that waited in the pool's queue and timed out
  mid-transaction may have been delivered, and retrying it sends it twice;
- a lease check at the moment a send would start (`may_start`, pipeline.sending.lease): a send whose
  message's lease has less than the whole time limit left is not started at all but released,
  so that no send is still running when its message becomes visible to another node;
- a guard that turns any unexpected exception into a TRANSIENT result instead of losing the
  batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeAlias

from gomailpy import metrics
from gomailpy.email.envelope import Envelope
from gomailpy.providers.base import Outcome, Provider, SendResult
from pipeline.sending.health import CircuitState

log = logging.getLogger("gomailpy.pipeline")
_MAX_REASON = 300
# A deadline checks every STEP_S how much time passed; a gap longer than STEP_S + STALL_S means
# the loop did not run (the process was stopped): not counted.
STEP_S = 0.5
STALL_S = 1.0

# Asked with a send's whole time limit (seconds) just before it starts: may it start? (It may
# renew the message's lease first: pipeline.sending.lease.Leases.ready.)
MayStart: TypeAlias = Callable[[float], Awaitable[bool]]
# Told as each send finishes: (its index in the lane's batch, its result, seconds it took once
# started). pipeline.sending.inflight settles it from there, without waiting for the rest of the
# batch.
OnResult: TypeAlias = Callable[[int, SendResult, float], None]


class ProviderLane:
    """One provider's way out of the node: bounded in time, in concurrency and in start time.

    `in_flight` is shared by every lane of the node (`pipeline.max_in_flight` sends in all)."""

    def __init__(
        self,
        provider: Provider,
        *,
        timeout_s: float,
        in_flight: asyncio.Semaphore,
    ) -> None:
        self.provider = provider
        self.name = provider.name
        self._timeout_s = min(timeout_s, provider.timeout_s)
        self._in_flight = in_flight
        concurrency = provider.max_concurrency
        self.concurrency = concurrency or None  # sends at once; None: no pool of its own
        self._slots = asyncio.Semaphore(concurrency) if concurrency else None

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    async def send_all(
        self,
        envelopes: Sequence[Envelope],
        may_start: Sequence[MayStart] | None = None,
        on_result: OnResult | None = None,
    ) -> list[SendResult]:
        checks: Sequence[MayStart | None] = may_start or [None] * len(envelopes)
        sends = (
            self.send_one(e, c, index=i, on_result=on_result)
            for i, (e, c) in enumerate(zip(envelopes, checks, strict=True))
        )
        return list(await asyncio.gather(*sends))

    async def send_one(
        self,
        envelope: Envelope,
        may_start: MayStart | None = None,
        *,
        index: int = 0,
        on_result: OnResult | None = None,
    ) -> SendResult:
        result, seconds = await self._send_one(envelope, may_start)
        if on_result is not None:
            on_result(index, result, seconds)
        return result

    async def _send_one(
        self, envelope: Envelope, may_start: MayStart | None
    ) -> tuple[SendResult, float]:
        """The result, and the seconds the provider took (0 for a send not started)."""
        async with self._in_flight, self._slots or contextlib.nullcontext():
            if may_start is not None and not await may_start(self._timeout_s):
                metrics.PROVIDER_SENDS.labels(self.name, "not_started").inc()
                return SendResult(
                    self.name,
                    Outcome.THROTTLED,  # our own backlog or pause, not the provider's fault
                    reason="not started: its lease could run out mid-send; released",
                ), 0.0
            started = time.perf_counter()
            try:
                async with asyncio.timeout(None) as timeout:
                    deadline = ActiveDeadline(timeout, self._timeout_s)
                    try:
                        result = await self.provider.send(envelope)
                    finally:
                        deadline.cancel()
            except TimeoutError:
                result = SendResult(
                    self.name, Outcome.TRANSIENT, reason=f"timed out after {self._timeout_s:g} s"
                )
            except Exception as exc:  # a provider bug must not cost the batch
                log.exception(
                    "provider %s raised instead of answering",
                    self.name,
                    extra={"message_id": envelope.id, "provider": self.name},
                )
                reason = f"{type(exc).__name__}: {exc}"[:_MAX_REASON]
                result = SendResult(self.name, Outcome.TRANSIENT, reason=reason)
            seconds = time.perf_counter() - started
            metrics.PROVIDER_SEND_SECONDS.labels(self.name).observe(seconds)
            metrics.PROVIDER_SENDS.labels(self.name, result.outcome.value).inc()
            return result, seconds


class ActiveDeadline:
    """Expires `timeout` once `limit_s` seconds passed *while the event loop ran*.

    Checked every STEP_S (or what is left); a gap between checks longer than STEP_S + STALL_S
    is a stall (the process stopped, or its machine): not counted, and at least one STEP_S is
    left after it, so that an answer that arrived meanwhile is read before the limit. A loop
    merely slow (CPU starved, gaps under STALL_S) keeps the plain wall-clock limit."""

    def __init__(
        self,
        timeout: asyncio.Timeout,
        limit_s: float,
        *,
        step_s: float = STEP_S,
        stall_s: float = STALL_S,
    ) -> None:
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._left = limit_s
        self._step_s = step_s
        self._stall_s = stall_s
        self._last = self._loop.time()
        self.stalled_s = 0.0  # seconds not counted
        self._handle = self._loop.call_later(min(step_s, limit_s), self._check)

    def _check(self) -> None:
        now = self._loop.time()
        gap, self._last = now - self._last, now
        if gap > self._step_s + self._stall_s:
            self.stalled_s += gap
            self._left = max(self._left, self._step_s)
        else:
            self._left -= gap
        if self._left <= 0:
            self._timeout.reschedule(now)  # expires at once
        else:
            self._handle = self._loop.call_later(min(self._step_s, self._left), self._check)

    def cancel(self) -> None:
        self._handle.cancel()


async def offer_elsewhere(
    envelopes: Sequence[Envelope],
    results: Sequence[SendResult],
    lanes: Mapping[str, ProviderLane],
    healthy: Callable[[str], bool],
    rotation: int,
    may_start: Sequence[MayStart] | None = None,
) -> list[SendResult]:
    """Offer each email that a provider's *account* refused (unverified sender, revoked key,
    relay policy) at once to another healthy provider: it is not the email's fault, and another
    provider may well take it. Each gets one such second offer per delivery; what is refused
    again is retried later like any failure. Returns the results, second answers in place
    (each carrying the first answer's events before its own)."""
    second: dict[str, list[int]] = {}
    for index, result in enumerate(results):
        if result.outcome is not Outcome.ACCOUNT:
            continue
        others = [name for name in lanes if name != result.provider and healthy(name)]
        if others:
            second.setdefault(others[(rotation + index) % len(others)], []).append(index)
    answered = list(results)
    if not second:
        return answered
    answers = await asyncio.gather(
        *(
            lanes[name].send_all(
                [envelopes[i] for i in indexes],
                [may_start[i] for i in indexes] if may_start is not None else None,
            )
            for name, indexes in second.items()
        )
    )
    for indexes, batch in zip(second.values(), answers, strict=True):
        for index, result in zip(indexes, batch, strict=True):
            # The first answer's events (recipients its relay refused) stay: the second
            # provider's answer replaces its outcome, not what was learnt about the recipients.
            first = results[index].events
            answered[index] = dataclasses.replace(result, events=first + result.events)
    return answered


def announce_health(name: str, state: CircuitState) -> None:
    """A provider's circuit changed: its gauge, counter and log line."""
    metrics.PROVIDER_HEALTHY.labels(name).set(1 if state is CircuitState.HEALTHY else 0)
    metrics.PROVIDER_STATE_CHANGES.labels(name, state.value).inc()
    level = logging.WARNING if state is CircuitState.UNHEALTHY else logging.INFO
    log.log(level, "provider %s is now %s", name, state.value, extra={"provider": name})
