"""Settle messages: delete, release with a delay, dead-letter. Each step decides what to do with
its messages into a `Plan`; `Settlement.apply` is the one place that does it.

    plan = Plan()
    plan.delete(message, reference)        # sent (or sent before): off the queue, and off S3
    plan.release(message, delay_s)         # back on the queue after delay_s
    plan.dead_letter(message, FailureKind.PERMANENT, reason, provider="ses", message_id=...)
    await settlement.apply(plan, report, settled)   # `settled` gains the receipt handles taken

A dead letter is copied with its reason to the queue's dead-letter queue
(gomailpy.queues.deadletter) and only then deleted. Deletes and releases go in batches per queue,
with one retry for the entries the queue refused; what still fails comes back after its visibility
timeout (a delete that failed may mean a second send: logged and counted). Nothing is deleted unless
a provider accepted it, it was sent before, or its copy is in the dead-letter queue. A claim-checked
email's S3 object is deleted once its message was.

`settle` does this for a batch's send outcomes: all are recorded in the delivery store first (sent,
retrying, failed: one batched write), with the events the providers returned (`record_events`),
then accepted → delete, refused for good → dead-letter, anything else → release with a delay
that doubles per delivery (pipeline.sending.retry).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from gomailpy import metrics
from gomailpy.config.settings import Settings
from gomailpy.email.envelope import Envelope
from gomailpy.errors import QueueError, StoreError
from gomailpy.events import Event
from gomailpy.providers.base import Outcome, SendResult
from gomailpy.queues.claim_check import ClaimCheck, ReferenceEnvelope
from gomailpy.queues.deadletter import FailureKind, dead_letter
from gomailpy.queues.sqs import QueueClient, ReceivedMessage, queue_name
from gomailpy.store.deliveries import DeliveryRecord, DeliveryState, DeliveryStore, after_attempt
from gomailpy.webhooks.outbox import Outbox
from pipeline.sending.health import CircuitState
from pipeline.sending.lease import Leases
from pipeline.sending.retry import configured_retry_delay_s

log = logging.getLogger("gomailpy.pipeline")

T = TypeVar("T")

# Called with each accepted envelope after its status was recorded and before its message is
# deleted. Tests pass one that raises, to crash a node between send and delete.
AfterSend = Callable[[Envelope], Awaitable[None] | None]


@dataclass
class IterationReport:
    """What became of one batch's messages (and which providers changed state meanwhile)."""

    read: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # provider -> accepted
    retried: int = 0
    failed: int = 0  # permanent failures, recorded in the dead-letter queue
    dead_lettered: int = 0  # unreadable messages
    already_sent: int = 0  # redelivered after their send: deleted without sending again
    held: int = 0  # another node's send of them may have gone out: released until it is known
    changes: dict[str, CircuitState] = field(default_factory=dict)

    def summary(self) -> str:
        sent = ", ".join(f"{name}={n}" for name, n in sorted(self.sent.items())) or "none"
        changes = "".join(f"; {name} now {state}" for name, state in self.changes.items())
        duplicates = f"; already sent {self.already_sent}" if self.already_sent else ""
        held = f"; held {self.held}" if self.held else ""
        return (
            f"iteration: read {self.read}; sent {sent}; retry later {self.retried};"
            f" failed {self.failed}; dead-lettered {self.dead_lettered}{duplicates}{held}{changes}"
        )


@dataclass(slots=True)
class Item:
    """A message ready to send: its envelope, the S3 reference it was loaded from (if any), its
    delivery record as the node found it (its intent once written), when the node took it
    (epoch s), and whether another node's send of it may have gone out (`in_doubt`)."""

    message: ReceivedMessage
    envelope: Envelope
    reference: ReferenceEnvelope | None = None
    record: DeliveryRecord | None = None
    taken_at: float = 0.0
    in_doubt: bool = False
    intended: bool = False  # `record` is this node's intent, written: it has the `sending` entry


# Called with a batch's send outcomes once they are recorded: who each email went to, for the
# trust check on SMTP reports (set by pipeline.feedback; a failure is its own to log).
RecordSent = Callable[[Sequence[tuple[Item, SendResult]]], Awaitable[None]]
# Records events like the event consumer does: outcome store, then suppression (set by
# pipeline.feedback: EventConsumer.record). Raises StoreError when the store failed.
RecordEvents = Callable[[Sequence[Event]], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class _Letter:
    message: ReceivedMessage
    kind: FailureKind
    reason: str
    provider: str
    message_id: str | None
    reference: ReferenceEnvelope | None  # its S3 object goes once the message is deleted


@dataclass
class Plan:
    """What to do with each message of a batch; `Settlement.apply` does it."""

    deletes: list[tuple[ReceivedMessage, ReferenceEnvelope | None]] = field(default_factory=list)
    releases: list[tuple[ReceivedMessage, int]] = field(default_factory=list)
    dead_letters: list[_Letter] = field(default_factory=list)

    def delete(self, message: ReceivedMessage, reference: ReferenceEnvelope | None = None) -> None:
        self.deletes.append((message, reference))

    def release(self, message: ReceivedMessage, delay_s: int) -> None:
        self.releases.append((message, delay_s))

    def dead_letter(
        self,
        message: ReceivedMessage,
        kind: FailureKind,
        reason: str,
        *,
        provider: str = "",
        message_id: str | None = None,
        reference: ReferenceEnvelope | None = None,
    ) -> None:
        self.dead_letters.append(_Letter(message, kind, reason, provider, message_id, reference))


async def record_status(message_id: str, write: Awaitable[None]) -> None:
    """One delivery-store write; a failure is logged, never raised (the mail goes on)."""
    try:
        await write
    except StoreError as exc:
        extra = {"message_id": message_id}
        log.warning("could not record the status of %s: %s", message_id, exc, extra=extra)


async def write_records(status: DeliveryStore, records: Sequence[DeliveryRecord]) -> None:
    """One batched delivery-store write; a failure is logged, never raised (the mail goes on)."""
    if not records:
        return
    try:
        await status.put_many(records)
    except StoreError as exc:
        log.warning("could not record the status of %d email(s): %s", len(records), exc)


class Settlement:
    def __init__(
        self,
        settings: Settings,
        queues: QueueClient,
        leases: Leases,
        status: DeliveryStore | None = None,
        *,
        claim_check: ClaimCheck | None = None,
        after_send: AfterSend | None = None,
    ) -> None:
        self._settings = settings
        self._queues = queues
        self._leases = leases
        self._status = status
        self._claim_check = claim_check
        self._after_send = after_send
        self._webhooks = Outbox(settings, queues) if settings.webhooks.enabled else None
        self.record_sent: RecordSent | None = None  # pipeline.feedback sets it
        self.record_events: RecordEvents | None = None  # pipeline.feedback sets it

    async def settle(
        self,
        outcomes: Sequence[tuple[Item, SendResult]],
        report: IterationReport,
        settled: set[str],
    ) -> None:
        """Record each send outcome, then delete, dead-letter or release its message."""
        # What must be written before the messages go does not depend on each other: the
        # writes go at once, so that settling waits for the slowest of the status store, the
        # outcome store and the webhook queue instead of their sum (each log their failures).
        writes: list[Awaitable[None]] = [
            self._record_outcomes(outcomes),
            self._record_events([e for _, result in outcomes for e in result.events]),
        ]
        if self.record_sent is not None:
            writes.append(self.record_sent(outcomes))
        if self._webhooks is not None:  # sent / failed to the webhook queue: shared batch calls
            sends = [(i.envelope, i.message.receive_count, r) for i, r in outcomes]
            writes.append(self._webhooks.publish_sends(sends))
        await asyncio.gather(*writes)
        if self._after_send is not None:
            for item, result in outcomes:
                if result.outcome is Outcome.ACCEPTED:
                    hooked = self._after_send(item.envelope)
                    if hooked is not None:
                        await hooked
        plan = Plan()
        for item, result in outcomes:
            message, message_id = item.message, item.envelope.id
            extra = {"message_id": message_id, "provider": result.provider}
            if result.outcome is Outcome.ACCEPTED:
                plan.delete(message, item.reference)
                report.sent[result.provider] += 1
                log.debug(
                    "sent %s through %s (%s)",
                    message_id,
                    result.provider,
                    result.provider_message_id,
                    extra=extra,
                )
            elif result.outcome is Outcome.PERMANENT:
                plan.dead_letter(
                    message,
                    FailureKind.PERMANENT,
                    result.reason,
                    provider=result.provider,
                    message_id=message_id,
                    reference=item.reference,
                )
            else:
                delay = configured_retry_delay_s(
                    message.receive_count, self._settings.pipeline, result.retry_after_s
                )
                plan.release(message, delay)
                report.retried += 1
                metrics.PIPELINE_RETRIES.labels(result.outcome.value).inc()
                log.info(
                    "email %s will be retried in %d s (%s at %s: %s)",
                    message_id,
                    delay,
                    result.outcome.value,
                    result.provider,
                    result.reason,
                    extra=extra,
                )
        await self.apply(plan, report, settled)

    async def release_now(self, messages: Sequence[ReceivedMessage]) -> None:
        """Make messages visible again at once (shutdown, a batch that failed half-way)."""
        await self.apply(Plan(releases=[(m, 0) for m in messages]), IterationReport(), set())

    async def apply(self, plan: Plan, report: IterationReport, settled: set[str]) -> None:
        """Do what `plan` says; add the receipt handles the queue took to `settled` as it goes,
        so that a batch cancelled half-way knows what is left to release."""
        deletes = list(plan.deletes)
        copied: list[_Letter] = []
        for letter in plan.dead_letters:
            try:
                await dead_letter(
                    self._queues, letter.message, letter.kind, letter.reason, letter.provider
                )
            except QueueError as exc:
                log.error("could not dead-letter a message (%s); it stays on its queue", exc)
                continue
            copied.append(letter)
            # If this delete fails it is dead-lettered again: a duplicate there, not a loss.
            deletes.append((letter.message, letter.reference))
        for url, batch in _by_queue(deletes).items():
            done = await self._batched(url, "delete", [(m.receipt_handle, 0) for m, _ in batch])
            settled.update(done)
            await self._forget(
                [ref for m, ref in batch if ref is not None and m.receipt_handle in done]
            )
        # A message whose lease broke may be another node's by now: releasing it through our
        # stale receipt handle could end that node's hold. It comes back by itself instead.
        abandoned = [m for m, _ in plan.releases if not self._leases.valid(m)]
        settled.update(m.receipt_handle for m in abandoned)
        releases_left = [(m, d) for m, d in plan.releases if m.receipt_handle not in settled]
        for url, releases in _by_queue(releases_left).items():
            settled.update(
                await self._batched(url, "release", [(m.receipt_handle, d) for m, d in releases])
            )
        for letter in copied:
            if letter.message.receipt_handle in settled:
                _count_dead_letter(letter, report)
        # Settled: no longer this node's to keep (the heartbeat stops renewing them).
        touched = [m for m, _ in deletes] + [m for m, _ in plan.releases]
        self._leases.drop(m for m in touched if m.receipt_handle in settled)

    async def _batched(
        self, url: str, operation: Literal["delete", "release"], entries: list[tuple[str, int]]
    ) -> set[str]:
        """Delete, or release after (receipt handle, seconds), in batches; return the receipt
        handles the queue took. One retry for entries it refused."""
        done: set[str] = set()
        todo = entries
        for attempt in range(2):
            try:
                if operation == "delete":
                    result = await self._queues.delete_batch(url, [h for h, _ in todo])
                else:
                    result = await self._queues.change_visibility_batch(url, todo)
            except QueueError as exc:
                log.warning("%s (attempt %d)", exc, attempt + 1, extra={"queue": queue_name(url)})
                continue
            done.update(todo[int(i)][0] for i in result.ok)
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

    async def _record_events(self, events: Sequence[Event]) -> None:
        """What providers learnt about single recipients (an SMTP relay refusing one at RCPT
        time), whatever the outcome: here, not via the events queue, so the next try of the
        email already sees the suppression. Ids are stable: a retried send repeats none."""
        if events and self.record_events is not None:
            try:
                await self.record_events(events)
            except StoreError as exc:
                log.warning("%d event(s) of send results not recorded: %s", len(events), exc)

    async def _record_outcomes(self, outcomes: Sequence[tuple[Item, SendResult]]) -> None:
        """Write every outcome to the delivery store, in one batch, before anything is settled."""
        status = self._status
        if status is None:
            return
        last_delivery = self._settings.queues.max_receive_count
        now = time.time()
        records: list[DeliveryRecord | None] = []
        for item, result in outcomes:
            deliveries = item.message.receive_count
            where = f"{result.outcome.value} at {result.provider}: {result.reason}"
            if result.outcome is Outcome.ACCEPTED:
                state, reason = DeliveryState.SENT, None
            elif result.outcome is Outcome.PERMANENT:
                state, reason = DeliveryState.FAILED, where
            elif deliveries >= last_delivery:
                # SQS moves it to the dead-letter queue instead of delivering it again.
                state = DeliveryState.FAILED
                reason = f"gave up after {deliveries} deliveries; last: {where}"
            else:
                state, reason = DeliveryState.RETRYING, where
            records.append(
                after_attempt(
                    item.record,
                    item.envelope.id,
                    queued_at=item.envelope.created_at.timestamp(),
                    state=state,
                    now=now,
                    attempt=deliveries,
                    sending_at=None if item.intended else item.taken_at or now,
                    provider=result.provider,
                    provider_message_id=result.provider_message_id or "",
                    reason=reason,
                )
            )
        await write_records(status, [r for r in records if r is not None])


def _by_queue(
    entries: Sequence[tuple[ReceivedMessage, T]],
) -> dict[str, list[tuple[ReceivedMessage, T]]]:
    grouped: dict[str, list[tuple[ReceivedMessage, T]]] = defaultdict(list)
    for message, detail in entries:
        grouped[message.queue_url].append((message, detail))
    return grouped


def _count_dead_letter(letter: _Letter, report: IterationReport) -> None:
    if letter.kind is FailureKind.UNREADABLE:
        report.dead_lettered += 1
        metrics.DEAD_LETTERED.labels(queue_name(letter.message.queue_url)).inc()
        return
    report.failed += 1
    metrics.EMAILS_FAILED.labels("permanent").inc()
    log.warning(
        "email %s failed for good at %s: %s",
        letter.message_id,
        letter.provider,
        letter.reason,
        extra={"message_id": letter.message_id, "provider": letter.provider},
    )


# A batch between receiving and sending: the items still to send, and the plan for the rest.
Taken = tuple[list[Item], Plan]
# One step before sending (pipeline.steps): takes the batch as it stands, returns it.
Step = Callable[[Taken, IterationReport], Awaitable[Taken]]
