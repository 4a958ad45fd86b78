"""Send through the providers: one `ProviderLane` per provider, and a second offer for emails a
provider's account refused.

A provider classifies the answers it understands (gomailpy.providers.base); its lane is the one
place that adds what a provider cannot promise about itself:
- a hard time limit per call, the tighter of `pipeline.send_timeout_s` and the provider's own
  `timeout_s`, so a hung provider becomes a TRANSIENT result long before the message's
  visibility timeout runs out;
- at most `provider.max_concurrency` calls at once (its connection pool), with the time limit
  starting only once a call has its slot: a send that waited in the pool's queue and timed out
  mid-transaction may have been delivered, and retrying it sends it twice;
- a start deadline: a send that could not start within `start_deadline_s` of the batch (half
  the visibility timeout) is not started at all but released, so that no send is still running
  when its message becomes visible to another node;
- a guard that turns any unexpected exception into a TRANSIENT result instead of losing the
  batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from gomailpy import metrics
from gomailpy.envelope import Envelope
from gomailpy.providers.base import Outcome, Provider, SendResult

log = logging.getLogger("gomailpy.pipeline")
_MAX_REASON = 300


class ProviderLane:
    """One provider's way out of the node: bounded in time, in concurrency and in start time.

    `in_flight` is shared by every lane of the node (`pipeline.max_in_flight` sends in all)."""

    def __init__(
        self,
        provider: Provider,
        *,
        timeout_s: float,
        in_flight: asyncio.Semaphore,
        start_deadline_s: float | None = None,
    ) -> None:
        self.provider = provider
        self.name = provider.name
        self._timeout_s = min(timeout_s, provider.timeout_s)
        self._in_flight = in_flight
        concurrency = provider.max_concurrency
        self._slots = asyncio.Semaphore(concurrency) if concurrency else None
        self._start_deadline_s = start_deadline_s

    async def send_all(self, envelopes: Sequence[Envelope]) -> list[SendResult]:
        deadline = (
            time.monotonic() + self._start_deadline_s if self._start_deadline_s else None
        )
        return list(await asyncio.gather(*(self.send_one(e, deadline) for e in envelopes)))

    async def send_one(self, envelope: Envelope, deadline: float | None = None) -> SendResult:
        async with self._in_flight, self._slots or contextlib.nullcontext():
            if deadline is not None and time.monotonic() > deadline:
                metrics.PROVIDER_SENDS.labels(self.name, "not_started").inc()
                return SendResult(
                    self.name,
                    Outcome.THROTTLED,  # our own backlog, not the provider's fault
                    reason="not started in time (provider busy); released for another try",
                )
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self._timeout_s):
                    result = await self.provider.send(envelope)
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
            metrics.PROVIDER_SEND_SECONDS.labels(self.name).observe(time.perf_counter() - started)
            metrics.PROVIDER_SENDS.labels(self.name, result.outcome.value).inc()
            return result


async def offer_elsewhere(
    envelopes: Sequence[Envelope],
    results: Sequence[SendResult],
    lanes: Mapping[str, ProviderLane],
    healthy: Callable[[str], bool],
    rotation: int,
) -> list[SendResult]:
    """Offer each email that a provider's *account* refused (unverified sender, revoked key,
    relay policy) at once to another healthy provider: it is not the email's fault, and another
    provider may well take it. Each gets one such second offer per delivery; what is refused
    again is retried later like any failure. Returns the results, second answers in place."""
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
        *(lanes[name].send_all([envelopes[i] for i in indexes]) for name, indexes in second.items())
    )
    for indexes, batch in zip(second.values(), answers, strict=True):
        for index, result in zip(indexes, batch, strict=True):
            answered[index] = result
    return answered
