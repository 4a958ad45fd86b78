"""One pipeline node: a loop that reads, prepares, splits, sends, judges and settles; repeated
until told to stop.

    async with PipelineNode(settings, queues, providers) as node:   # resolves queue URLs
        await node.run()                                           # until node.stop()

Each iteration reads a pool (pipeline.reader) and hands it to a dispatch task, which
- prepares it: decodes, claims and loads each message (pipeline.intake);
- splits what is ready across the providers by health (pipeline.splitter);
- sends through each provider's lane (pipeline.dispatch);
- judges each provider's part of the batch (pipeline.health);
- settles every message: deleted, released with a delay, or dead-lettered (pipeline.settlement).
The next iteration reads while earlier dispatches are still sending, up to `max_in_flight`
messages in all, so provider latency does not stall the node.

Nothing is deleted unless a provider accepted it, it was sent before, or it was recorded in the
dead-letter queue; anything else comes back after its visibility timeout, also when the node is
killed outright. A dispatch cancelled or failed half-way releases what it had not settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Self

from gomailpy import metrics
from gomailpy.claim_check import ClaimCheck
from gomailpy.deliveries import DeliveryStore
from gomailpy.errors import QueueError
from gomailpy.providers.base import Outcome, Provider, SendResult
from gomailpy.queue import QueueClient, ReceivedMessage
from gomailpy.settings import Settings
from pipeline.dispatch import ProviderLane, offer_elsewhere
from pipeline.health import CircuitState, Health, judge
from pipeline.intake import Intake
from pipeline.reader import QueueReader
from pipeline.settlement import AfterSend, Item, IterationReport, Settlement
from pipeline.splitter import ProviderView, split

__all__ = ["AfterSend", "IterationReport", "PipelineNode"]

log = logging.getLogger("gomailpy.pipeline")


class PipelineNode:
    def __init__(
        self,
        settings: Settings,
        queues: QueueClient,
        providers: Mapping[str, Provider],
        *,
        status: DeliveryStore | None = None,
        claim_check: ClaimCheck | None = None,
        after_send: AfterSend | None = None,
    ) -> None:
        self.settings = settings
        self._queues = queues
        pipeline = settings.pipeline
        self._in_flight = asyncio.Semaphore(pipeline.max_in_flight)
        configured = settings.providers.enabled()
        self.lanes = {
            name: ProviderLane(
                provider,
                timeout_s=pipeline.send_timeout_s,
                in_flight=self._in_flight,
                # A send starting later could still run when its message reappears elsewhere.
                start_deadline_s=settings.queues.visibility_timeout_s / 2,
            )
            for name, provider in providers.items()
        }
        self.weights = {
            name: configured[name].weight if name in configured else 1.0 for name in providers
        }
        self.health = {
            name: Health(pipeline.healthy_threshold, pipeline.unhealthy_threshold)
            for name in providers
        }
        for name in providers:
            metrics.PROVIDER_HEALTHY.labels(name).set(1)
        self.urls: list[str] = []
        self._reader = QueueReader(
            queues,
            max_readers_per_queue=pipeline.max_readers_per_queue,
            idle_wait_s=settings.queues.wait_time_s,
        )
        self._intake = Intake(settings, status=status, claim_check=claim_check)
        self._settlement = Settlement(
            settings, queues, status=status, claim_check=claim_check, after_send=after_send
        )
        self._rotation = 0
        self._pending = 0  # messages read and not yet settled
        self._capacity_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._dispatches: set[asyncio.Task[IterationReport]] = set()
        self.last_iteration_ok = False
        self.iterations = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.resolve_queues()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
        await self.drain()

    async def resolve_queues(self) -> None:
        """Resolve queue URLs, waiting (with backoff) while the queue server is unreachable."""
        delay = 0.5
        while not self._stopping.is_set():
            try:
                self.urls = await self._queues.resolve_all()
                return
            except QueueError as exc:
                log.warning("queues not reachable yet (%s); retrying in %.1f s", exc, delay)
                await self._sleep(delay)
                delay = min(delay * 2, 10.0)

    def stop(self) -> None:
        """Stop reading; `run` returns once messages in flight are settled."""
        self._stopping.set()
        self._capacity_freed.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        pipeline = self.settings.pipeline
        error_backoff = 0.0
        while not self._stopping.is_set():
            started = time.monotonic()
            room = pipeline.max_in_flight - self._pending
            if room <= 0:
                self._capacity_freed.clear()
                await self._capacity_freed.wait()
                continue
            pool = await self._read_unless_stopped(room)
            if pool is None:
                break
            if pool.messages:
                self._start_dispatch(pool.messages)
            if self.urls and len(pool.unreachable) == len(self.urls):
                # The queue server is away: back off instead of spinning on errors.
                error_backoff = min(max(error_backoff * 2, 0.5), 10.0)
                self.last_iteration_ok = False
            else:
                error_backoff = 0.0
                self.last_iteration_ok = True
            elapsed = time.monotonic() - started
            metrics.ITERATION_SECONDS.observe(elapsed)
            # The floor applies when reads came back short: full ones mean more is waiting.
            floor = 0.0 if self._reader.busy else pipeline.min_iteration_duration_s
            await self._sleep(max(floor - elapsed, error_backoff))
        await self.drain()

    async def drain(self) -> None:
        """Wait for dispatches in flight; past the grace period cancel them, which releases
        their unsettled messages back to the queue at once."""
        answered = await self._reader.aclose()
        if answered:  # long polls that answered after the last iteration: not ours to keep
            await self._settlement.release_now(answered)
        if not self._dispatches:
            return
        _, late = await asyncio.wait(
            set(self._dispatches), timeout=self.settings.pipeline.shutdown_grace_s
        )
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)

    async def _read_unless_stopped(self, room: int) -> Any:
        read = asyncio.create_task(self._reader.read(self.urls, room))
        stopped = asyncio.create_task(self._stopping.wait())
        done, _ = await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if read in done:
            stopped.cancel()
            return read.result()
        read.cancel()  # the long polls it waits on stay with the reader; drain() closes them
        with contextlib.suppress(asyncio.CancelledError):
            await read
        return None

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._stopping.wait()

    def _start_dispatch(self, messages: list[ReceivedMessage]) -> None:
        self._pending += len(messages)
        task = asyncio.create_task(self.dispatch(messages))
        self._dispatches.add(task)

        def done(t: asyncio.Task[IterationReport]) -> None:
            self._dispatches.discard(t)
            self._pending -= len(messages)
            self._capacity_freed.set()

        task.add_done_callback(done)

    async def run_iteration(self) -> IterationReport:
        """One whole iteration, awaited to the end: read, split, send, settle (for tests and
        tools; `run` overlaps iterations instead)."""
        if not self.urls:
            await self.resolve_queues()
        pool = await self._reader.read(self.urls, self.settings.pipeline.max_in_flight)
        return await self.dispatch(pool.messages)

    # -- one batch ---------------------------------------------------------------------------

    def views(self) -> list[ProviderView]:
        return [
            ProviderView(name, self.weights[name], self.health[name].healthy)
            for name in self.lanes
        ]

    async def dispatch(self, messages: Sequence[ReceivedMessage]) -> IterationReport:
        """Prepare, split, send, judge and settle one batch; release what was left unsettled."""
        report = IterationReport(read=len(messages))
        if not messages:
            return report
        settled: set[str] = set()  # receipt handles deleted or released so far
        try:
            items, plan = await self._intake.take(messages, report)
            await self._settlement.apply(plan, report, settled)  # those not to be sent now
            outcomes = await self._send(items, report)
            await self._settlement.settle(outcomes, report, settled)
        finally:
            unsettled = [m for m in messages if m.receipt_handle not in settled]
            if unsettled:  # cancelled (shutdown past its grace) or failed half-way
                await asyncio.shield(self._settlement.release_now(unsettled))
        self.iterations += 1
        log.log(logging.INFO if report.read else logging.DEBUG, "%s", report.summary())
        metrics.BATCH_SIZE.observe(report.read)
        return report

    async def _send(
        self, items: list[Item], report: IterationReport
    ) -> list[tuple[Item, SendResult]]:
        """Split the items by health, send each share through its lane, judge every provider
        on its share, and offer what a provider's account refused to another."""
        self._rotation += 1
        assignment = split(items, self.views(), self._rotation)
        if not assignment:
            log.error("no provider is enabled: releasing %d message(s)", len(items))
            unsent = SendResult("none", Outcome.TRANSIENT, reason="no provider enabled")
            return [(item, unsent) for item in items]
        answers = await asyncio.gather(
            *(
                self.lanes[name].send_all([i.envelope for i in batch])
                for name, batch in assignment.items()
            )
        )
        sent: list[Item] = []
        results: list[SendResult] = []
        for (name, batch), batch_results in zip(assignment.items(), answers, strict=True):
            sent += batch
            results += batch_results
            change = self.health[name].record(judge(batch_results))
            if change is not None:
                self._health_changed(name, change)
                report.changes[name] = change
        results = await offer_elsewhere(
            [i.envelope for i in sent],
            results,
            self.lanes,
            lambda name: self.health[name].healthy,
            self._rotation,
        )
        return list(zip(sent, results, strict=True))

    def _health_changed(self, name: str, state: CircuitState) -> None:
        metrics.PROVIDER_HEALTHY.labels(name).set(1 if state is CircuitState.HEALTHY else 0)
        metrics.PROVIDER_STATE_CHANGES.labels(name, state.value).inc()
        level = logging.WARNING if state is CircuitState.UNHEALTHY else logging.INFO
        log.log(level, "provider %s is now %s", name, state.value, extra={"provider": name})
