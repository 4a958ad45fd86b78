"""One pipeline node: read the queues, split by health, send, settle; repeat until told to stop.

    async with PipelineNode(settings, queues, providers) as node:   # resolves queue URLs
        await node.run()                                           # until node.stop()

Each iteration reads a pool (pipeline.reader), splits it across the provider workers by health
(pipeline.splitter, pipeline.health) and hands it to a dispatch task that sends, then settles
every message: deleted once a provider accepted it, released with a growing delay after a
transient failure, moved to the dead-letter queue with its reason when it failed for good or
cannot be read. The next iteration reads while earlier dispatches are still sending, up to
`max_in_flight` messages in all, so provider latency does not stall the node.

Nothing is deleted unless a provider accepted it or it was recorded in the dead-letter queue;
anything else comes back after its visibility timeout, also when the node is killed outright.

With a status store (gomailpy.status_store) each message is claimed before it is sent: a
message whose email was already sent (the node crashed, or its delete failed, after the send) is
deleted without a second send; one another node is still sending comes back later. The outcome
is recorded before the message is settled (sent, retrying, failed). With a claim check
(gomailpy.claim_check) a reference message is loaded from S3 after the claim, and its object is
deleted once the email was sent or dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from gomailpy import metrics
from gomailpy.claim_check import ClaimCheck, ClaimCheckError, ReferenceEnvelope, decode_message
from gomailpy.dlq import FAILURE_KIND, FAILURE_PROVIDER, FAILURE_REASON, FAILURE_SOURCE
from gomailpy.envelope import Envelope
from gomailpy.errors import EnvelopeError, QueueError
from gomailpy.providers.base import Outcome, Provider, SendResult
from gomailpy.queue import QueueClient, ReceivedMessage, queue_name
from gomailpy.settings import Settings
from gomailpy.status_store import Claim, ClaimResult, StatusStore, StatusStoreError
from pipeline.dispatch import Worker
from pipeline.health import Health, State, judge
from pipeline.reader import QueueReader
from pipeline.retry import retry_delay_s
from pipeline.splitter import WorkerView, split

log = logging.getLogger("gomailpy.pipeline")

# Called with each accepted envelope after its status was recorded and before its message is
# deleted. Tests pass one that raises, to crash a node between send and delete.
AfterSend = Callable[[Envelope], Awaitable[None] | None]


@dataclass
class IterationReport:
    read: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # provider -> accepted
    retried: int = 0
    failed: int = 0  # permanent failures, recorded in the dead-letter queue
    dead_lettered: int = 0  # unreadable messages
    already_sent: int = 0  # redelivered after their send: deleted without sending again
    changes: dict[str, State] = field(default_factory=dict)

    def summary(self) -> str:
        sent = ", ".join(f"{name}={n}" for name, n in sorted(self.sent.items())) or "none"
        changes = "".join(f"; {name} now {state}" for name, state in self.changes.items())
        duplicates = f"; already sent {self.already_sent}" if self.already_sent else ""
        return (
            f"iteration: read {self.read}; sent {sent}; retry later {self.retried};"
            f" failed {self.failed}; dead-lettered {self.dead_lettered}{duplicates}{changes}"
        )


@dataclass(slots=True)
class _Item:
    message: ReceivedMessage
    envelope: Envelope
    reference: ReferenceEnvelope | None = None  # set when the envelope came from S3


class PipelineNode:
    def __init__(
        self,
        settings: Settings,
        queues: QueueClient,
        providers: Mapping[str, Provider],
        *,
        status: StatusStore | None = None,
        claim_check: ClaimCheck | None = None,
        after_send: AfterSend | None = None,
    ) -> None:
        self.settings = settings
        self._queues = queues
        self._status = status
        self._claim_check = claim_check
        self._after_send = after_send
        pipeline = settings.pipeline
        self._in_flight = asyncio.Semaphore(pipeline.max_in_flight)
        configured = settings.providers.enabled()
        self.workers = {
            name: Worker(
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
            await self._release_now(answered)
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

    def views(self) -> list[WorkerView]:
        return [
            WorkerView(name, self.weights[name], self.health[name].healthy) for name in self.workers
        ]

    async def dispatch(self, messages: Sequence[ReceivedMessage]) -> IterationReport:
        report = IterationReport(read=len(messages))
        if not messages:
            return report
        settled: set[str] = set()
        try:
            items = await self._prepare(
                await self._decode(messages, report, settled), report, settled
            )
            self._rotation += 1
            assignment = split(items, self.views(), self._rotation)
            if not assignment:
                log.error("no provider is enabled: releasing %d message(s)", len(items))
            results = await asyncio.gather(
                *(
                    self.workers[name].send_all([i.envelope for i in batch])
                    for name, batch in assignment.items()
                )
            )
            outcomes: list[tuple[_Item, SendResult]] = []
            for (name, batch), batch_results in zip(assignment.items(), results, strict=True):
                outcomes += zip(batch, batch_results, strict=True)
                change = self.health[name].record(judge(batch_results))
                if change is not None:
                    self._health_changed(name, change)
                    report.changes[name] = change
            if not assignment:
                outcomes = [
                    (item, SendResult("none", Outcome.TRANSIENT, reason="no provider enabled"))
                    for item in items
                ]
            outcomes = await self._offer_elsewhere(outcomes)
            await self._settle(outcomes, report, settled)
        finally:
            unsettled = [m for m in messages if m.receipt_handle not in settled]
            if unsettled:  # cancelled (shutdown past its grace) or failed half-way
                await asyncio.shield(self._release_now(unsettled))
        self.iterations += 1
        log.log(
            logging.INFO if report.read else logging.DEBUG,
            "%s",
            report.summary(),
        )
        metrics.BATCH_SIZE.observe(report.read)
        return report

    async def _offer_elsewhere(
        self, outcomes: list[tuple[_Item, SendResult]]
    ) -> list[tuple[_Item, SendResult]]:
        """Offer each email that a provider's *account* refused (unverified sender, revoked
        key, relay policy) at once to another healthy provider: it is not the email's fault,
        and another provider may well take it. Each gets one such second offer per delivery;
        what is refused again is retried later like any failure."""
        second: dict[str, list[int]] = defaultdict(list)
        for index, (_, result) in enumerate(outcomes):
            if result.outcome is not Outcome.ACCOUNT:
                continue
            others = [
                name
                for name in self.workers
                if name != result.provider and self.health[name].healthy
            ]
            if others:
                second[others[(self._rotation + index) % len(others)]].append(index)
        if not second:
            return outcomes
        answers = await asyncio.gather(
            *(
                self.workers[name].send_all([outcomes[i][0].envelope for i in indexes])
                for name, indexes in second.items()
            )
        )
        offered = list(outcomes)
        for indexes, results in zip(second.values(), answers, strict=True):
            for index, result in zip(indexes, results, strict=True):
                offered[index] = (offered[index][0], result)
        return offered

    def _health_changed(self, name: str, state: State) -> None:
        metrics.PROVIDER_HEALTHY.labels(name).set(1 if state is State.HEALTHY else 0)
        metrics.PROVIDER_STATE_CHANGES.labels(name, state.value).inc()
        level = logging.WARNING if state is State.UNHEALTHY else logging.INFO
        log.log(level, "provider %s is now %s", name, state.value, extra={"provider": name})

    async def _decode(
        self, messages: Sequence[ReceivedMessage], report: IterationReport, settled: set[str]
    ) -> list[tuple[ReceivedMessage, Envelope | ReferenceEnvelope]]:
        decoded: list[tuple[ReceivedMessage, Envelope | ReferenceEnvelope]] = []
        for message in messages:
            try:
                decoded.append((message, decode_message(message.body)))
            except EnvelopeError as exc:
                if await self._dead_letter(message, "unreadable", str(exc), provider=""):
                    settled.add(message.receipt_handle)
                    report.dead_lettered += 1
                    metrics.DEAD_LETTERED.labels(queue_name(message.queue_url)).inc()
        return decoded

    async def _prepare(
        self,
        decoded: list[tuple[ReceivedMessage, Envelope | ReferenceEnvelope]],
        report: IterationReport,
        settled: set[str],
    ) -> list[_Item]:
        """Claim each message, settle those not to be sent now, load claim-checked envelopes."""
        claims = await asyncio.gather(*(self._claim(m, body.id) for m, body in decoded))
        deletes: dict[str, list[str]] = defaultdict(list)
        releases: dict[str, list[tuple[str, int]]] = defaultdict(list)
        sent_references: dict[str, ReferenceEnvelope] = {}  # receipt handle -> reference
        ready: list[tuple[ReceivedMessage, Envelope | ReferenceEnvelope]] = []
        for (message, body), claim in zip(decoded, claims, strict=True):
            extra = {"message_id": body.id}
            if claim.claim is Claim.ALREADY_SENT:
                deletes[message.queue_url].append(message.receipt_handle)
                if isinstance(body, ReferenceEnvelope):
                    sent_references[message.receipt_handle] = body
                report.already_sent += 1
                log.warning(
                    "email %s was already sent: deleting its message without sending again",
                    body.id,
                    extra=extra,
                )
            elif claim.claim is Claim.BUSY:
                delay = max(1, math.ceil(claim.retry_in_s))
                releases[message.queue_url].append((message.receipt_handle, delay))
                report.retried += 1
                log.info(
                    "email %s is being sent by another node; back in %d s",
                    body.id,
                    delay,
                    extra=extra,
                )
            else:
                ready.append((message, body))
        loaded = await asyncio.gather(*(self._load(body) for _, body in ready))
        items: list[_Item] = []
        for (message, body), result in zip(ready, loaded, strict=True):
            if isinstance(result, Envelope):
                reference = body if isinstance(body, ReferenceEnvelope) else None
                items.append(_Item(message, result, reference))
            elif isinstance(result, ClaimCheckError) and not result.missing:
                delay = self._retry_delay(message, None)
                releases[message.queue_url].append((message.receipt_handle, delay))
                report.retried += 1
                log.warning(
                    "email %s: %s; retrying in %d s",
                    body.id,
                    result,
                    delay,
                    extra={"message_id": body.id},
                )
                if self._status is not None:
                    await self._record(
                        body.id,
                        self._status.mark_retrying(body.id, message.receive_count, str(result)),
                    )
            else:
                if self._status is not None:
                    await self._record(body.id, self._status.mark_failed(body.id, str(result)))
                if await self._dead_letter(message, "unreadable", str(result), provider=""):
                    settled.add(message.receipt_handle)
                    report.dead_lettered += 1
                    metrics.DEAD_LETTERED.labels(queue_name(message.queue_url)).inc()
        for url, handles in deletes.items():
            done = await self._apply(url, "delete", handles)
            settled.update(done)
            await self._forget([sent_references[h] for h in done if h in sent_references])
        for url, changes in releases.items():
            settled.update(await self._apply(url, "release", changes))
        return items

    async def _claim(self, message: ReceivedMessage, message_id: str) -> ClaimResult:
        if self._status is None:
            return ClaimResult(Claim.CLAIMED)
        try:
            return await self._status.claim(
                message_id,
                attempt=message.receive_count,
                lease_s=self.settings.queues.visibility_timeout_s,
            )
        except StatusStoreError as exc:
            # Fail open: an unreachable status store must not stop the mail. The price is the
            # old at-least-once behaviour for this message.
            log.warning(
                "could not claim email %s (%s); sending anyway",
                message_id,
                exc,
                extra={"message_id": message_id},
            )
            return ClaimResult(Claim.CLAIMED)

    async def _load(self, body: Envelope | ReferenceEnvelope) -> Envelope | Exception:
        if isinstance(body, Envelope):
            return body
        if self._claim_check is None:
            return EnvelopeError(
                "a claim-check reference, but this node has no claim_check.bucket configured"
            )
        try:
            return await self._claim_check.load(body)
        except (ClaimCheckError, EnvelopeError) as exc:
            return exc

    async def _forget(self, references: Sequence[ReferenceEnvelope]) -> None:
        """Delete the S3 objects of emails that were sent or failed for good."""
        if self._claim_check is None or not references:
            return
        claim_check = self._claim_check
        results = await asyncio.gather(
            *(claim_check.delete(ref) for ref in references), return_exceptions=True
        )
        for ref, result in zip(references, results, strict=True):
            if isinstance(result, Exception):
                log.warning(
                    "could not delete %s/%s (%s); it stays in S3",
                    ref.ref.bucket,
                    ref.ref.key,
                    result,
                    extra={"message_id": ref.id},
                )

    async def _record(self, message_id: str, write: Awaitable[None]) -> None:
        """One status write; a failure is logged, never raised (the mail goes on)."""
        try:
            await write
        except StatusStoreError as exc:
            log.warning(
                "could not record the status of %s: %s",
                message_id,
                exc,
                extra={"message_id": message_id},
            )

    def _retry_delay(self, message: ReceivedMessage, retry_after_s: float | None) -> int:
        pipeline = self.settings.pipeline
        return retry_delay_s(
            message.receive_count,
            base_s=pipeline.retry_base_delay_s,
            max_s=pipeline.retry_max_delay_s,
            retry_after_s=retry_after_s,
        )

    async def _record_outcomes(self, outcomes: list[tuple[_Item, SendResult]]) -> None:
        """Write every outcome to the status store, concurrently, before anything is settled."""
        status = self._status
        if status is None:
            return
        last_delivery = self.settings.queues.max_receive_count
        writes: list[Awaitable[None]] = []
        for item, result in outcomes:
            message_id = item.envelope.id
            deliveries = item.message.receive_count
            where = f"{result.outcome.value} at {result.provider}: {result.reason}"
            if result.outcome is Outcome.ACCEPTED:
                write = status.mark_sent(
                    message_id, result.provider, result.provider_message_id or ""
                )
            elif result.outcome is Outcome.PERMANENT:
                write = status.mark_failed(message_id, where)
            elif deliveries >= last_delivery:
                # SQS moves it to the dead-letter queue instead of delivering it again.
                write = status.mark_failed(
                    message_id, f"gave up after {deliveries} deliveries; last: {where}"
                )
            else:
                write = status.mark_retrying(message_id, deliveries, where)
            writes.append(self._record(message_id, write))
        await asyncio.gather(*writes)

    async def _settle(
        self,
        outcomes: list[tuple[_Item, SendResult]],
        report: IterationReport,
        settled: set[str],
    ) -> None:
        await self._record_outcomes(outcomes)
        if self._after_send is not None:
            for item, result in outcomes:
                if result.outcome is Outcome.ACCEPTED:
                    hooked = self._after_send(item.envelope)
                    if hooked is not None:
                        await hooked
        deletes: dict[str, list[str]] = defaultdict(list)
        releases: dict[str, list[tuple[str, int]]] = defaultdict(list)
        references: dict[str, ReferenceEnvelope] = {}  # receipt handle -> sent reference
        for item, result in outcomes:
            message = item.message
            if result.outcome is Outcome.ACCEPTED:
                deletes[message.queue_url].append(message.receipt_handle)
                if item.reference is not None:
                    references[message.receipt_handle] = item.reference
                report.sent[result.provider] += 1
                log.debug(
                    "sent %s through %s (%s)",
                    item.envelope.id,
                    result.provider,
                    result.provider_message_id,
                    extra={"message_id": item.envelope.id, "provider": result.provider},
                )
            elif result.outcome is Outcome.PERMANENT:
                if await self._dead_letter(message, "permanent", result.reason, result.provider):
                    settled.add(message.receipt_handle)
                    report.failed += 1
                    metrics.EMAILS_FAILED.labels("permanent").inc()
                    if item.reference is not None:
                        await self._forget([item.reference])
                    log.warning(
                        "email %s failed for good at %s: %s",
                        item.envelope.id,
                        result.provider,
                        result.reason,
                        extra={"message_id": item.envelope.id, "provider": result.provider},
                    )
            else:
                delay = self._retry_delay(message, result.retry_after_s)
                releases[message.queue_url].append((message.receipt_handle, delay))
                report.retried += 1
                metrics.PIPELINE_RETRIES.labels(result.outcome.value).inc()
                log.info(
                    "email %s will be retried in %d s (%s at %s: %s)",
                    item.envelope.id,
                    delay,
                    result.outcome.value,
                    result.provider,
                    result.reason,
                    extra={"message_id": item.envelope.id, "provider": result.provider},
                )
        for url, handles in deletes.items():
            done = await self._apply(url, "delete", handles)
            settled.update(done)
            await self._forget([references[h] for h in done if h in references])
        for url, changes in releases.items():
            settled.update(await self._apply(url, "release", changes))

    async def _apply(self, url: str, operation: str, entries: Sequence[Any]) -> list[str]:
        """Delete or release in batches; return the receipt handles the queue took. One retry
        for entries it refused; what still fails comes back after its visibility timeout."""
        done: list[str] = []
        todo = list(entries)
        for attempt in range(2):
            try:
                if operation == "delete":
                    result = await self._queues.delete_batch(url, todo)
                else:
                    result = await self._queues.change_visibility_batch(url, todo)
            except QueueError as exc:
                log.warning("%s (attempt %d)", exc, attempt + 1, extra={"queue": queue_name(url)})
                continue
            # Entries are receipt handles (delete) or (receipt handle, seconds) (release).
            done += [
                str(todo[int(i)] if operation == "delete" else todo[int(i)][0]) for i in result.ok
            ]
            todo = [todo[int(i)] for i in result.failed]
            if not todo:
                break
        if todo:
            metrics.PIPELINE_SETTLE_FAILURES.labels(operation).inc(len(todo))
            log.error(
                "%s of %d message(s) on %s failed; they will come back after their visibility"
                " timeout%s",
                operation,
                len(todo),
                queue_name(url),
                " and may be sent twice" if operation == "delete" else "",
            )
        return done

    async def _release_now(self, messages: Sequence[ReceivedMessage]) -> None:
        by_queue: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for message in messages:
            by_queue[message.queue_url].append((message.receipt_handle, 0))
        for url, changes in by_queue.items():
            await self._apply(url, "release", changes)

    async def _dead_letter(
        self, message: ReceivedMessage, kind: str, reason: str, provider: str
    ) -> bool:
        """Copy a message with why it failed to its queue's dead-letter queue, then delete the
        original. False (and the message left alone, to come back) if either step failed."""
        try:
            dlq = await self._queues.dead_letter_url(message.queue_url)
            await self._queues.send(
                dlq,
                message.body,
                attributes={
                    FAILURE_KIND: kind,
                    FAILURE_REASON: reason[:1000],
                    FAILURE_PROVIDER: provider,
                    FAILURE_SOURCE: queue_name(message.queue_url),
                },
            )
        except QueueError as exc:
            log.error("could not dead-letter a message (%s); it stays on its queue", exc)
            return False
        if not await self._apply(message.queue_url, "delete", [message.receipt_handle]):
            return False  # it will be dead-lettered again: a duplicate in the DLQ, not a loss
        return True
