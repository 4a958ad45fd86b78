"""Providers sent to at their rates, for the whole cluster (the rules: pipeline.prepare.rates).

    rates = await open_rates(stack, settings, providers)     # heartbeats; closed with `stack`
    node = PipelineNode(settings, queues, rates.providers)   # each one paced
    pace = rates.gate(node.usable)                           # a step: pipeline.steps

- `PacedProvider` wraps a provider with a rate: each send waits for its turn
  (pipeline.prepare.rates.Pace) at this node's share; a send whose turn is further away than half
  its time limit is not started but answered THROTTLED (released to the queue, health untouched). A
  Throttling answer from the provider halves the share (AIMD).
- `RateGate`, the last step before the split, holds a batch while the providers' reservations run
  longer than half a send's time limit: the dispatch waits, the node's in-flight window fills and
  it stops reading, so mail beyond the rate waits in SQS, never in a node's memory.
- `Heartbeats` keeps `node#<id>` (TTL) on the status table, counts the live nodes and gives each
  provider its share: cluster rate / live nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack

from gomailpy import metrics
from gomailpy.config.settings import Settings
from gomailpy.email.envelope import Envelope
from gomailpy.errors import GomailError
from gomailpy.operating.controls import NODE_INDEX, NODE_PREFIX
from gomailpy.providers.base import Outcome, Provider, SendResult
from gomailpy.store.items import ItemTable, MemoryItemTable, open_item_table
from pipeline.periodic import PeriodicRefresh
from pipeline.prepare.rates import Pace, ProviderRate
from pipeline.prepare.ses_quota import SesQuota, open_ses_quota
from pipeline.sending.settlement import IterationReport, Step, Taken

log = logging.getLogger("gomailpy.pipeline")
Clock = Callable[[], float]


class PacedProvider:
    """A provider sent to at most at its rate share (see the module's docstring)."""

    def __init__(
        self, inner: Provider, rate: ProviderRate, *, max_wait_s: float, clock: Clock
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.rate = rate
        self.pace = Pace(rate=1.0)
        self.max_wait_s = max_wait_s
        self._clock = clock

    @property
    def timeout_s(self) -> float:
        return self.inner.timeout_s

    @property
    def max_concurrency(self) -> int | None:
        return self.inner.max_concurrency

    def share(self, now: float) -> float:
        self.rate.tick(now)
        share = self.rate.share()
        if share > 0:
            self.pace.rate = share
            metrics.PROVIDER_RATE_LIMIT.labels(self.name).set(share)
        return share

    async def send(self, envelope: Envelope) -> SendResult:
        now = self._clock()
        if self.share(now) > 0:
            wait = self.pace.reserve(now)
            if wait > self.max_wait_s:
                self.pace.cancel()
                return SendResult(
                    self.name,
                    Outcome.THROTTLED,
                    reason="not started: over this node's rate share; released",
                    retry_after_s=max(1, math.ceil(wait)),  # back about when its turn comes
                )
            if wait > 0:
                await asyncio.sleep(wait)
        result = await self.inner.send(envelope)
        if result.outcome is Outcome.THROTTLED and self.rate.limited:
            if self.rate.throttled(self._clock()):
                log.warning(
                    "provider %s throttled: its rate share is now %.2f/s",
                    self.name,
                    self.rate.share(),
                    extra={"provider": self.name},
                )
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()


class RateGate:
    """Holds a batch before the split while the rate-limited providers it would go to are
    booked for longer than `max_wait_s` / 2 (see the module's docstring)."""

    def __init__(
        self,
        paced: Mapping[str, PacedProvider],
        usable: Callable[[], list[str]],
        *,
        clock: Clock,
    ) -> None:
        self._paced = paced
        self._usable = usable
        self._clock = clock
        self._lock = asyncio.Lock()

    def _wait_s(self) -> float:
        """Seconds until the usable providers' bookings are short enough; 0 when any usable
        provider has no rate (it takes what the others cannot)."""
        names = self._usable()
        paced = [self._paced[n] for n in names if n in self._paced]
        now = self._clock()
        if not paced or len(paced) < len(names) or any(p.share(now) <= 0 for p in paced):
            return 0.0
        return max(p.pace.backlog_s(now) - p.max_wait_s / 2 for p in paced)

    async def __call__(self, taken: Taken, report: IterationReport) -> Taken:
        items, plan = taken
        if not items:
            return items, plan
        async with self._lock:  # batches take their turns in order
            wait = self._wait_s()
            while wait > 0:
                await asyncio.sleep(wait)
                wait = self._wait_s()
        return items, plan


class Heartbeats(PeriodicRefresh):
    """This node's `node#<id>` item (TTL 3 heartbeats) and the count of live nodes, every
    `steering.heartbeat_s`; a one-shot async context manager."""

    # keep beating after a bug: a silent node would lose its share to the others
    failure = "heartbeat failed"

    def __init__(
        self,
        table: ItemTable,
        rates: Mapping[str, ProviderRate],
        heartbeat_s: float,
        *,
        node_id: str | None = None,
        clock: Clock = time.time,
        quotas: Mapping[str, SesQuota] | None = None,
    ) -> None:
        super().__init__(heartbeat_s)
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self._table = table
        self._rates = rates
        self._clock = clock
        self._quotas = dict(quotas or {})
        self.live = 1

    async def _stop(self) -> None:
        if self._task is None:  # never started: no item of its own to take away
            return
        await super()._stop()
        with contextlib.suppress(GomailError, OSError):  # gone: the others take its share
            await self._table.delete(NODE_PREFIX + self.node_id)
            await self._table.remove_member(NODE_INDEX, self.node_id)

    async def refresh(self) -> None:
        await self.beat()

    async def beat(self) -> None:
        try:
            expires = self._clock() + 3 * self._every_s
            shares = {name: rate.share() for name, rate in self._rates.items()}
            item: dict[str, str | float] = {"at": self._clock(), "shares": json.dumps(shares)}
            left = {
                name: q.remaining_today
                for name, q in self._quotas.items()
                if q.remaining_today is not None
            }
            if left:
                item["quota_left"] = json.dumps(left)
            await self._table.put(NODE_PREFIX + self.node_id, item, expires_at=expires)
            await self._table.add_member(NODE_INDEX, self.node_id)
            live = 0
            for member in await self._table.members(NODE_INDEX):
                if await self._table.get(NODE_PREFIX + member) is not None:
                    live += 1
                else:  # expired: a node that died without saying so
                    await self._table.remove_member(NODE_INDEX, member)
        except (GomailError, OSError) as exc:
            log.warning("heartbeat failed (%s): keeping %d live node(s)", exc, self.live)
            return
        if live != self.live:
            log.info("%d live pipeline node(s): each takes 1/%d of every provider rate", live, live)
        self.live = max(1, live)
        metrics.LIVE_NODES.set(self.live)
        for rate in self._rates.values():
            rate.live_nodes = self.live


class Rates:
    """The paced providers of a node and its heartbeats."""

    def __init__(
        self,
        providers: dict[str, Provider],
        paced: dict[str, PacedProvider],
        quotas: Mapping[str, SesQuota] | None = None,
    ) -> None:
        self.providers = providers  # what the node sends through: paced where rated
        self.paced = paced
        self.quotas = dict(quotas or {})  # SES instance -> its account's quota

    def spent(self) -> set[str]:
        """Providers whose daily quota is nearly spent: traffic moves away
        (pipeline.sending.controls)."""
        return {name for name, quota in self.quotas.items() if quota.nearly_spent}

    def gate(self, usable: Callable[[], list[str]]) -> Step | None:
        """The step that holds batches beyond the rates (None: no provider is rated)."""
        if not self.paced:
            return None
        return RateGate(self.paced, usable, clock=time.monotonic)


async def open_rates(
    stack: AsyncExitStack,
    settings: Settings,
    providers: Mapping[str, Provider],
    table: ItemTable | None = None,
) -> Rates:
    """Pace every provider with a rate (`steering.rates`) and start the heartbeats on `table`
    (default: the status table; memory: this process alone)."""
    steering = settings.steering
    paced: dict[str, PacedProvider] = {}
    ses = {instance.name for instance in settings.providers.ses_instances()}
    for name, provider in providers.items():
        rate = steering.rate_for(name)
        if rate > 0 or (name in ses and steering.ses_quota):
            max_wait_s = min(settings.pipeline.send_timeout_s, provider.timeout_s) / 2
            paced[name] = PacedProvider(
                provider, ProviderRate(rate), max_wait_s=max_wait_s, clock=time.monotonic
            )
    quotas = {}
    if steering.ses_quota:
        for name in ses & set(paced):
            quotas[name] = await open_ses_quota(stack, settings, name, paced[name].rate)
    if paced:
        if table is None:
            table = await open_item_table(stack, settings) or MemoryItemTable()
        rates = {name: p.rate for name, p in paced.items()}
        beats = Heartbeats(table, rates, steering.heartbeat_s, quotas=quotas)
        await stack.enter_async_context(beats)
    wrapped: dict[str, Provider] = {name: paced.get(name, p) for name, p in providers.items()}
    return Rates(wrapped, paced, quotas)
