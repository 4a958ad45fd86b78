"""The event consumer: what providers reported after sending, read from the events queue.

    feedback = await open_feedback(stack, settings, queues, node, status)
    feedback.screen      # the suppression step, for pipeline.steps (None: no suppression list)

Every pipeline node runs one (with `events.enabled`). `events.consumers` long polls on the
events queue (`events.queue`, batches of 10), each handling its batch before it polls again,
so at most `consumers` × 10 reports are in hand at once; they run beside the email readers and
never take one of their slots, so a flood of events never holds up sending. Per batch:
- parse each body (gomailpy.feedback.parse); one no parser can read is copied with its reason to
  the events dead-letter queue (`<events queue><queues.dlq_suffix>`), then deleted;
- record the events (the outcome store: a report seen twice is kept once), apply the
  suppression rules to them, and let the reputation guard count the new ones. An SMTP report
  (DSN, ARF: anyone can mail one to the bounce listener) counts for neither unless its
  recipient is one its email was sent to (gomailpy.feedback.trust); it is kept all the same,
  and the log says why it did not suppress; the node's health per mailbox provider
  (pipeline.sending.domain_steering) counts the new trusted ones too, and so do the engagement
  counters per provider (gomailpy.feedback.engagement: opens, clicks, unsubscribes, complaints);
- delete the batch. If the store could not be written, nothing is deleted: the reports come
  back after their visibility timeout (at-least-once; every step is idempotent).

`open_feedback` also makes the suppression step (pipeline.prepare.suppress, one of pipeline.steps)
whenever a suppression list is configured, events or not: an operator's entries count too; and, with
events and a suppression list, has settlement record who each email sent through an SMTP relay
went to (`record_sent`), which is what an SMTP report is checked against; and, whenever there is
an outcome store, has settlement record the events of send results (`record_events`, through
`EventConsumer.record`: outcome store, suppression rules).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from gomailpy import metrics
from gomailpy.config.settings import Settings
from gomailpy.errors import EventFormatError, QueueError, StoreError
from gomailpy.events import Event
from gomailpy.feedback.engagement import count_engagement
from gomailpy.feedback.parse import parse_report
from gomailpy.feedback.trust import sent_through_smtp, vouched
from gomailpy.lifecycle import AsyncResource, cancel_and_wait
from gomailpy.providers.base import SendResult
from gomailpy.queues.deadletter import FailureKind, dead_letter
from gomailpy.queues.sqs import MAX_BATCH, QueueClient, ReceivedMessage
from gomailpy.store.backends import open_event_stores
from gomailpy.store.deliveries import DeliveryStore
from gomailpy.store.events import EventStore
from gomailpy.store.suppressions import SuppressionStore
from gomailpy.webhooks.outbox import with_webhooks
from pipeline.node import PipelineNode
from pipeline.prepare.suppress import RecipientScreen
from pipeline.sending.domain_steering import DomainSteering
from pipeline.sending.reputation import ReputationGuard
from pipeline.sending.settlement import Item

log = logging.getLogger("gomailpy.events")

MAX_BACKOFF_S = 10.0


class EventConsumer(AsyncResource):
    """Reads the events queue until closed (see the module's docstring)."""

    def __init__(
        self,
        settings: Settings,
        queues: QueueClient,
        *,
        outcomes: EventStore | None,
        suppression: SuppressionStore | None,
        reputation: ReputationGuard | None = None,
        domains: DomainSteering | None = None,
        deliveries: DeliveryStore | None = None,
    ) -> None:
        self._settings = settings
        self._deliveries = deliveries  # joins gomailpy's own hits to the provider that sent
        self._queues = queues
        self._outcomes = outcomes
        self._suppression = suppression
        self._reputation = reputation
        self._domains = domains
        self._tasks: list[asyncio.Task[None]] = []
        self.recorded = 0  # new events recorded (tests, bench)
        self.dead_lettered = 0

    async def _start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._poll(), name=f"events-{n}")
            for n in range(self._settings.events.consumers)
        ]

    async def _stop(self) -> None:
        # Cancelling may interrupt a batch half-way: what was not deleted comes back.
        await cancel_and_wait(self._tasks)

    async def _poll(self) -> None:
        backoff = 0.0
        busy = False  # the last receive came back full: more is waiting, no need to long poll
        while True:
            try:
                url = await self._queues.resolve(self._settings.events.queue)
                messages = await self._queues.receive(url, wait_time_s=0 if busy else None)
                busy = len(messages) == MAX_BATCH
                if messages:
                    await self.handle(messages)
                elif self._reputation is not None:
                    self._reputation.evaluate()
                backoff = 0.0
            except QueueError as exc:
                backoff = min(max(backoff * 2, 0.5), MAX_BACKOFF_S)
                log.warning("events queue: %s; again in %.1f s", exc, backoff)
            except Exception:  # never let one bad batch end the consumer
                backoff = min(max(backoff * 2, 0.5), MAX_BACKOFF_S)
                log.exception("event consumer: unexpected error; again in %.1f s", backoff)
            if backoff:
                await asyncio.sleep(backoff)

    async def handle(self, messages: Sequence[ReceivedMessage]) -> None:
        """Parse, record and settle one batch of reports."""
        events: list[Event] = []
        readable: list[ReceivedMessage] = []
        unreadable: list[tuple[ReceivedMessage, str]] = []
        for message in messages:
            try:
                events += parse_report(message.body)
                readable.append(message)
            except EventFormatError as exc:
                unreadable.append((message, str(exc)))
        done = [m.receipt_handle for m in await self._dead_letter(unreadable)]
        if events:
            try:
                trusted, refused = await vouched(events, self._outcomes)
                for event, why in refused:
                    log.warning(
                        "%s report kept, not suppressing: %s",
                        event.provider,
                        why,
                        extra={"message_id": event.message_id, "event": event.id},
                    )
                new = await self.record(events, suppressing=trusted)
                if self._domains is not None:  # reports only: send results count in the node
                    vouched_for = {e.id for e in trusted}
                    self._domains.observe_events(e for e in new if e.id in vouched_for)
            except StoreError as exc:
                log.warning("%d event(s) not recorded (%s): they come back later", len(events), exc)
                readable = []
        done += [m.receipt_handle for m in readable]
        if done:
            result = await self._queues.delete_batch(messages[0].queue_url, done)
            if result.failed:
                log.warning(
                    "%d event report(s) not deleted: recorded again later", len(result.failed)
                )

    async def record(
        self, events: Sequence[Event], *, suppressing: Sequence[Event] | None = None
    ) -> list[Event]:
        """Record events, apply the suppression rules, count the new ones; return the new.
        `suppressing`: those of `events` the rules and the reputation guard may act on (all
        by default)."""
        new = list(events) if self._outcomes is None else await self._outcomes.record(events)
        acting = events if suppressing is None else suppressing
        trusted = {e.id for e in acting}
        if self._reputation is not None:  # counted once: a redelivered batch has nothing new
            self._reputation.observe([e for e in new if e.id in trusted])
        await count_engagement(
            [e for e in new if e.id in trusted],
            self._deliveries,
            machine_window_s=self._settings.bulk.machine_window_s,
        )
        for event in new:
            metrics.EVENTS_RECORDED.labels(event.provider, event.type.value).inc()
        self.recorded += len(new)
        if self._suppression is not None:  # all of them: applying one again changes nothing
            for entry in await self._suppression.apply(acting):
                log.info("suppressed: %s", entry.describe())
        return new

    async def _dead_letter(
        self, unreadable: Sequence[tuple[ReceivedMessage, str]]
    ) -> list[ReceivedMessage]:
        """Copy each unreadable report with its reason to the events DLQ; return those copied."""
        copied = []
        for message, reason in unreadable:
            try:
                await dead_letter(self._queues, message, FailureKind.UNREADABLE, reason)
            except QueueError as exc:
                log.error("could not dead-letter an event report (%s); it stays", exc)
                continue
            copied.append(message)
            self.dead_lettered += 1
            metrics.EVENT_REPORTS_DEAD_LETTERED.inc()
            log.warning("event report dead-lettered: %s", reason)
        return copied


@dataclass(frozen=True, slots=True)
class Feedback:
    """What `open_feedback` opened: the event consumer (None without `events.enabled`) and the
    suppression step (None without a suppression list)."""

    consumer: EventConsumer | None
    screen: RecipientScreen | None


async def open_feedback(
    stack: AsyncExitStack,
    settings: Settings,
    queues: QueueClient,
    node: PipelineNode,
    status: DeliveryStore | None,
) -> Feedback:
    """The suppression step (for pipeline.steps) and, with `events.enabled`, the event consumer,
    started (closed with `stack`); settlement's hooks that record events. All need a store
    (`status.backend` memory or dynamodb)."""
    stores = with_webhooks(settings, queues, await open_event_stores(stack, settings))
    screen = None
    if stores.suppression is not None:
        screen = RecipientScreen(stores.suppression, outcomes=stores.outcomes, status=status)
    if not settings.events.enabled:
        if stores.outcomes is not None:  # no consumer, but what a provider reports still counts
            recorder = EventConsumer(
                settings, queues, outcomes=stores.outcomes, suppression=stores.suppression
            )  # never entered: it records, it does not poll
            node.settlement.record_events = recorder.record
        return Feedback(None, screen)
    if stores.outcomes is None:
        log.warning("events.enabled, but status.backend is none: events are parsed, not kept")
    if stores.outcomes is not None and stores.suppression is not None:
        node.settlement.record_sent = SentRecipients(stores.outcomes)
    reputation = ReputationGuard(settings.reputation, node.health)
    consumer = EventConsumer(
        settings,
        queues,
        outcomes=stores.outcomes,
        suppression=stores.suppression,
        reputation=reputation,
        domains=node.domains,
        deliveries=status,
    )
    # Events in send results (recipients refused at RCPT time) go the same way as reports.
    node.settlement.record_events = consumer.record
    return Feedback(await stack.enter_async_context(consumer), screen)


class SentRecipients:
    """Settlement's `record_sent`: who each email an SMTP relay accepted went to, as gomailpy
    `sent` events in the outcome store (one write per email, concurrently). A failed write is
    logged, never raised: the email was sent; only a genuine bounce for it will not suppress."""

    def __init__(self, outcomes: EventStore, *, clock: Callable[[], float] = time.time) -> None:
        self._outcomes = outcomes
        self._clock = clock

    async def __call__(self, outcomes: Sequence[tuple[Item, SendResult]]) -> None:
        now = self._clock()
        made = [sent_through_smtp(item.envelope, result, now) for item, result in outcomes]
        writes = [self._outcomes.record(events) for events in made if events]
        if not writes:
            return
        for answer in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(answer, StoreError):
                log.warning("recipients of an SMTP send not recorded: %s", answer)
            elif isinstance(answer, BaseException):
                raise answer
