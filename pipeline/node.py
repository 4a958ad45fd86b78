"""One pipeline node: a loop that reads, prepares, splits, sends, judges and settles until stopped.

    async with PipelineNode(settings, queues, providers) as node:   # resolves queue URLs
        await node.run()                                           # until node.stop()

Each iteration reads a pool (pipeline.reading.reader) and hands it to a dispatch task, which
- holds a lease on each message until it is settled (pipeline.sending.lease: a heartbeat renews it);
- prepares it: decodes, skips what was sent before, loads each message (pipeline.reading.intake),
  then runs the steps before sending, in their order (pipeline.steps);
- splits what is ready across the providers by health (pipeline.sending.splitter), keeping each
  recipient domain's mail off a provider blocked or deferred there
  (pipeline.sending.domain_steering);
- sends through each provider's lane (pipeline.sending.dispatch), judges each one's part
  (pipeline.sending.health);
- settles every message: deleted, released with a delay, or dead-lettered
  (pipeline.sending.settlement).
Later iterations read while earlier dispatches send, within a window sized by Little's law, and
each message is settled once its own send finished (pipeline.sending.inflight): latency does not
stall.

Nothing is deleted unless a provider accepted it, it was sent before, or it is in the dead-letter
queue; the rest comes back after its visibility timeout, also when the node is killed outright.

When every provider the node may use is held for its reputation (pipeline.sending.reputation),
sending **pauses**: the node stops reading (every receive would count towards the queue's
`max_receive_count`, and so towards the dead-letter queue), stops its long polls, releases what
it had read but not sent, and checks every PAUSE_CHECK_S for a hold that ended or was released.
The pause is logged at CRITICAL once as it starts (its end at WARNING) and exported as
`gomailpy_sending_paused{reason="reputation"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Self

from gomailpy import metrics
from gomailpy.config.settings import Settings
from gomailpy.errors import QueueError
from gomailpy.providers.base import Outcome, Provider, SendResult
from gomailpy.queues.claim_check import ClaimCheck
from gomailpy.queues.sqs import MAX_BATCH, QueueClient, ReceivedMessage
from gomailpy.store.deliveries import DeliveryStore
from pipeline.reading.ages import note_ages
from pipeline.reading.intake import Intake
from pipeline.reading.reader import QueueReader
from pipeline.sending.controls import Steer, unsteered
from pipeline.sending.dispatch import MayStart, ProviderLane, announce_health, offer_elsewhere
from pipeline.sending.domain_steering import DomainSteering
from pipeline.sending.health import Health, judge
from pipeline.sending.inflight import InFlightWindow, SettleAsTheyFinish
from pipeline.sending.lease import Leases
from pipeline.sending.settlement import AfterSend, Item, IterationReport, Settlement, Step
from pipeline.sending.splitter import ProviderView, paused, sharing_views, split

__all__ = ["AfterSend", "IterationReport", "PipelineNode"]

log = logging.getLogger("gomailpy.pipeline")

# Receives answering within this long of the first one are dispatched together: each dispatch
# makes its own per-batch calls (the status store's reads, the splitter), so a dispatch per
# receive of 10 tripled the delivery store's calls per email (bench.status_store).
DISPATCH_LINGER_S = 0.02
PAUSE_CHECK_S = 0.5  # while paused: how often to look for a hold that ended or was released
PAUSED_BY_REPUTATION = "reputation"


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
        node_id: str | None = None,
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
        # health per mailbox provider: fed by send results and events (pipeline.feedback)
        self.domains = DomainSteering(settings.steering.domains, self.lanes)
        self.urls: list[str] = []
        self.leases = Leases(queues, settings.queues.visibility_timeout_s, pipeline.send_timeout_s)
        self._reader = QueueReader(
            queues,
            max_readers_per_queue=pipeline.max_readers_per_queue,
            idle_wait_s=settings.queues.wait_time_s,
            on_receive=self.leases.hold,  # kept from the receive on, also while a poll waits
        )
        self._intake = Intake(settings, status=status, claim_check=claim_check, node_id=node_id)
        self.node_id = self._intake.node_id
        self.settlement = Settlement(
            settings, queues, self.leases, status, claim_check=claim_check, after_send=after_send
        )
        self.steps: list[Step] = []  # between intake and the split: pipeline.steps.create_steps
        self.steering: Steer = unsteered  # the operator's controls: pipeline.steering
        self._rotation = 0
        self._capacity_freed = asyncio.Event()
        pools = [lane.concurrency for lane in self.lanes.values()]
        self.window = InFlightWindow(
            pipeline.max_in_flight,
            on_free=self._capacity_freed.set,
            # what the lanes can send at once, when every provider has a pool
            senders=sum(p for p in pools if p) if pools and all(pools) else None,
        )
        self._stopping = asyncio.Event()
        self._dispatches: set[asyncio.Task[IterationReport]] = set()
        self._arrived: list[ReceivedMessage] = []  # received, waiting DISPATCH_LINGER_S
        self._arrived_timer: asyncio.TimerHandle | None = None
        self.last_iteration_ok = False
        self.iterations = 0
        self.paused_by: str | None = None  # why sending is paused (PAUSED_BY_*), None: sending
        metrics.SENDING_PAUSED.labels(PAUSED_BY_REPUTATION).set(0)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.leases.start()
        await self.resolve_queues()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
        try:
            await self.drain()
        finally:  # the heartbeat outlives the drain: it keeps the last sends' leases
            await self.leases.aclose()

    async def resolve_queues(self) -> None:
        """Resolve queue URLs, waiting (with backoff) while the queue server is unreachable."""
        delay = 0.5
        while not self._stopping.is_set():
            try:
                pinned = self.settings.regions.pinned(self.settings.queues.urls)  # regions.pipeline
                self.urls = [await self._queues.resolve(entry) for entry in pinned]
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
        self.leases.start()  # the heartbeat, unless `async with` started it
        polls_stopped = False
        while not self._stopping.is_set():
            if self.check_pause():
                if not polls_stopped:  # open long polls would take mail during the pause
                    # Let them answer rather than cut them (see QueueReader.aclose); what they
                    # bring goes back at once. read() opens new ones on resume.
                    answered = await self._reader.aclose(wait_s=self._reader.poll_answer_s())
                    await self.settlement.release_now(answered)
                    polls_stopped = True
                await self._sleep(PAUSE_CHECK_S)
                continue
            polls_stopped = False
            started = time.monotonic()
            room = self.window.room()
            # Read a full receive's worth or wait: a window bounded by what the lanes can send
            # frees a few places at a time, and a receive per freed place or two cost a node
            # with 100 ms providers twice the SQS calls per email (bench.scale).
            if room < min(MAX_BATCH, self.window.limit()):
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
        await self.leases.aclose()

    async def drain(self) -> None:
        """Wait for dispatches in flight and for the open long polls to answer; past the grace
        period cancel the dispatches, which releases their unsettled messages back to the queue
        at once. What the polls bring is released at once too: another node sends it."""
        grace = self.settings.pipeline.shutdown_grace_s
        if self._reader.open_polls:
            log.info(
                "stopping: waiting up to %.0f s for %d open long polls to answer",
                min(grace, self._reader.poll_answer_s()),
                self._reader.open_polls,
            )
        polls = asyncio.create_task(
            self._reader.aclose(wait_s=min(grace, self._reader.poll_answer_s()))
        )
        if self._dispatches:
            _, late = await asyncio.wait(set(self._dispatches), timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        answered = await polls
        if answered:  # long polls that answered after the last iteration: not ours to keep
            await self.settlement.release_now(answered)

    async def _read_unless_stopped(self, room: int) -> Any:
        # Each receive's messages are dispatched as it answers (with those answering within
        # DISPATCH_LINGER_S of it), not with the pool's slowest.
        read = asyncio.create_task(self._reader.read(self.urls, room, self._arrive))
        stopped = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._dispatch_arrived()  # the pool is complete (or the node stops): no more wait
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

    def _arrive(self, messages: list[ReceivedMessage]) -> None:
        self._arrived += messages
        if self._arrived_timer is None:
            loop = asyncio.get_running_loop()
            self._arrived_timer = loop.call_later(DISPATCH_LINGER_S, self._dispatch_arrived)

    def _dispatch_arrived(self) -> None:
        if self._arrived_timer is not None:
            self._arrived_timer.cancel()
            self._arrived_timer = None
        if self._arrived:
            messages, self._arrived = self._arrived, []
            self._start_dispatch(messages)

    def _start_dispatch(self, messages: list[ReceivedMessage]) -> None:
        self.window.hold(messages)
        task = asyncio.create_task(self.dispatch(messages))
        self._dispatches.add(task)
        task.add_done_callback(self._dispatches.discard)
        task.add_done_callback(lambda _: self.window.release(messages))  # those not settled yet

    async def run_iteration(self) -> IterationReport:
        """One whole iteration, awaited to the end: read, split, send, settle (for tests and
        tools; `run` overlaps iterations instead). Paused: reads nothing."""
        if self.check_pause():
            return IterationReport()
        if not self.urls:
            await self.resolve_queues()
        pool = await self._reader.read(self.urls, self.settings.pipeline.max_in_flight)
        return await self.dispatch(pool.messages)

    # -- one batch ---------------------------------------------------------------------------

    def views(self) -> list[ProviderView]:
        health = self.health
        views = [
            ProviderView(n, self.weights[n], health[n].healthy, health[n].held is not None)
            for n in self.lanes
        ]
        return self.steering(views)

    def check_pause(self) -> bool:
        """Whether sending is paused: every provider the node may use is held for its
        reputation. Logs and exports the change when it starts or ends."""
        views = self.views()
        reason = PAUSED_BY_REPUTATION if paused(views) else None
        if reason != self.paused_by:
            metrics.SENDING_PAUSED.labels(PAUSED_BY_REPUTATION).set(1 if reason else 0)
            if reason is not None:
                log.critical(
                    "sending paused: every provider is held for its bounce or complaint rate"
                    " (%s); the mail stays on the queues until a hold ends or an operator"
                    " releases one (`gomail provider release NAME`)",
                    "; ".join(f"{v.name}: {self.health[v.name].held}" for v in views),
                )
            else:
                log.warning("sending resumed: %s", ", ".join(v.name for v in views if not v.held))
        self.paused_by = reason
        return reason is not None

    def usable(self) -> list[str]:
        """The providers the split may use now (health, the operator's controls, and no hold for
        reputation)."""
        return [v.name for v in self.views() if not v.held]

    async def dispatch(self, messages: Sequence[ReceivedMessage]) -> IterationReport:
        """Prepare, split, send, judge and settle one batch; release what was left unsettled."""
        report = IterationReport(read=len(messages))
        if not messages:
            return report
        settled: set[str] = set()  # receipt handles deleted or released so far
        self.leases.hold(messages)
        try:
            taken = await self._intake.take(messages, report)
            for step in self.steps:  # schedule, suppress, render, pace (pipeline.steps)
                taken = await step(taken, report)
            items, plan = taken
            await self.settlement.apply(plan, report, settled)  # those not to be sent now
            outcomes = await self._send(items, report, settled)
            await self.settlement.settle(outcomes, report, settled)
        finally:
            unsettled = [m for m in messages if m.receipt_handle not in settled]
            if unsettled:  # cancelled (shutdown past its grace) or failed half-way
                await asyncio.shield(self.settlement.release_now(unsettled))
            self.leases.drop(messages)
            self._intake.done(messages)
        self.iterations += 1
        log.log(logging.INFO if report.read else logging.DEBUG, "%s", report.summary())
        metrics.BATCH_SIZE.observe(report.read)
        return report

    async def _send(
        self, items: list[Item], report: IterationReport, settled: set[str]
    ) -> list[tuple[Item, SendResult]]:
        """Split by health, send each share through its lane (settling as sends finish), judge
        each provider, offer what an account refused to another; return what is left to settle."""
        early = SettleAsTheyFinish(self.settlement, report, settled, self.window)
        note_ages(items)  # gomailpy_queue_oldest_message_age_seconds
        self._rotation += 1
        views = self.views()
        assignment = split(items, views, self._rotation)
        if not assignment and paused(views):
            # Held since these were read: not sent, not failed; dispatch releases them at once
            # and the loop stops reading (check_pause).
            log.warning("every provider is held: %d message(s) back to the queue", len(items))
            return []
        if not assignment:
            log.error("no provider is enabled: releasing %d message(s)", len(items))
            unsent = SendResult("none", Outcome.TRANSIENT, reason="no provider enabled")
            return [(item, unsent) for item in items]
        # Per recipient domain: mail kept off a provider blocked or deferred there.
        candidates = [v.name for v in sharing_views(views)]
        assignment = self.domains.steer(assignment, candidates, self._rotation)
        # Renew now the leases too short for a whole send (messages that waited in intake, or
        # came from a long poll that answered late); each send checks its lease as it starts.
        need_s = max(lane.timeout_s for lane in self.lanes.values())
        await self.leases.ensure([i.message for i in items], need_s)
        # Intent before send: a stall or crash from here on leaves a record that says so.
        assigned = [i for batch in assignment.values() for i in batch]
        await self._intake.intend(assigned, self._lease_end)
        answers = await asyncio.gather(
            *(
                self.lanes[name].send_all(
                    [i.envelope for i in batch], self._checks(batch), early.watch(batch)
                )
                for name, batch in assignment.items()
            )
        )
        sent: list[Item] = []
        results: list[SendResult] = []
        for (name, batch), batch_results in zip(assignment.items(), answers, strict=True):
            sent += batch
            results += batch_results
            self.domains.observe_results(zip(batch, batch_results, strict=True))
            change = self.health[name].record(judge(batch_results))
            if change is not None:
                announce_health(name, change)
                report.changes[name] = change
        first = results
        results = await offer_elsewhere(
            [i.envelope for i in sent],
            results,
            self.lanes,
            lambda name: name in {v.name for v in self.views() if v.healthy and not v.held},
            self._rotation,
            self._checks(sent),
        )
        self.domains.observe_results(
            (item, second)
            for item, once, second in zip(sent, first, results, strict=True)
            if second is not once
        )
        return await early.rest(list(zip(sent, results, strict=True)))

    def _lease_end(self, message: ReceivedMessage) -> float | None:
        """When the lease on `message` ends (epoch s); None when it is gone."""
        left = self.leases.remaining_s(message)
        if left == -math.inf:
            return None
        if left == math.inf:  # not held (run_iteration's callers): at most one visibility
            left = self.settings.queues.visibility_timeout_s
        return time.time() + left

    def _checks(self, items: Sequence[Item]) -> list[MayStart]:
        return [partial(self.leases.ready, i.message) for i in items]  # checked at each start
