"""The webhook deliverer: each pipeline node POSTs what is on the webhook queue.

    deliverer = await open_webhooks(stack, settings, queues)     # None unless webhooks.enabled

`webhooks.consumers` pollers receive from the webhook queue and hand each delivery to its
endpoint's lane: `concurrency` requests at once per endpoint, with a short backlog, so one slow
or dead endpoint fills its own lane and never holds up another's. A delivery whose lane is full
goes back to the queue for later. Per attempt (gomailpy.webhooks.attempt):
- 2xx: deleted;
- 410 Gone: the endpoint is disabled on every node (gomailpy.webhooks.state), logged and
  counted; this delivery and the ones after it go to the dead-letter queue, with the reason,
  for `gomail webhooks redrive` once it is enabled again;
- a refused target (gomailpy.webhooks.targets: the URL, or what its host resolves to now, is
  not globally routable): to the dead-letter queue at once, with the reason; retrying would
  only knock on the same door for `max_age_s`;
- anything else (4xx, 5xx, 3xx, a timeout, a refused connection): released with a delay that
  doubles per attempt, with jitter, at most 12 h per hop; once the delivery is older than
  `webhooks.max_age_s`, copied to the dead-letter queue with the last problem and deleted.
Received messages stay invisible long enough for a full backlog to be worked off, so a delivery
is not handed to two nodes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

import aiohttp

from gomailpy import metrics
from gomailpy.config.settings import Settings
from gomailpy.config.webhooks import WebhookEndpointSettings
from gomailpy.errors import BackendError, QueueError
from gomailpy.lifecycle import AsyncResource, cancel_and_wait
from gomailpy.queues.deadletter import FailureKind, dead_letter
from gomailpy.queues.sqs import MAX_BATCH, QueueClient, ReceivedMessage
from gomailpy.webhooks.attempt import (
    MAX_HOP_S,
    Answer,
    SigningKeys,
    attempt,
    backoff_s,
    open_webhook_session,
)
from gomailpy.webhooks.outbox import Delivery
from gomailpy.webhooks.state import Disabled, EndpointStates, open_endpoint_states

log = logging.getLogger("gomailpy.webhooks")

BACKLOG_ROUNDS = 4  # a lane holds this many rounds of `concurrency` deliveries beyond those sent
STATE_REFRESH_S = 5.0
MAX_BACKOFF_S = 10.0


class _Lane:
    """One endpoint's deliveries: a bounded backlog worked by `concurrency` tasks."""

    def __init__(self, endpoint: WebhookEndpointSettings) -> None:
        self.endpoint = endpoint
        self.backlog: asyncio.Queue[tuple[ReceivedMessage, Delivery]] = asyncio.Queue(
            endpoint.concurrency * BACKLOG_ROUNDS
        )
        self.failing: dict[str, float] = {}  # webhook id -> published at, of failed deliveries
        self.latency_s = 0.1  # moving average of its attempts

    def busy_delay_s(self) -> int:
        """How long a delivery that found the backlog full waits: about the time the backlog
        takes to work off, so that a hanging endpoint's deliveries are not received over and
        over (each receive counts towards the queue's limit)."""
        drain_s = self.backlog.maxsize * self.latency_s / self.endpoint.concurrency
        return int(min(MAX_HOP_S, max(1.0, drain_s) * random.uniform(1.0, 1.5)))


class WebhookDeliverer(AsyncResource):
    """Reads the webhook queue until closed (see the module's docstring)."""

    def __init__(
        self,
        settings: Settings,
        queues: QueueClient,
        states: EndpointStates,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        state_refresh_s: float = STATE_REFRESH_S,
    ) -> None:
        self._settings = settings
        self._webhooks = settings.webhooks
        self._queues = queues
        self._states = states
        self._own_session = session is None
        self._session = session
        self._clock = clock  # deliveries' age (tests move it); signatures use the wall clock
        self._state_refresh_s = state_refresh_s  # how stale another node's 410 may be
        self._keys = SigningKeys(settings.webhooks)
        self._lanes = {e.name: _Lane(e) for e in settings.webhooks.endpoints}
        self._tasks: list[asyncio.Task[None]] = []
        self._disabled: dict[str, Disabled] = {}
        self._disabled_read_at = float("-inf")
        self._capacity = max(
            10, sum(q.backlog.maxsize + q.endpoint.concurrency for q in self._lanes.values())
        )
        self._held = 0
        self._freed = asyncio.Event()
        self._deletes: list[tuple[str, str]] = []  # (queue url, receipt handle), sent in batches
        self._flush: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()  # deletes under way
        self.delivered = 0  # tests and the bench
        self.dead_lettered = 0
        # Long enough for a full backlog: BACKLOG_ROUNDS rounds, then its own attempt.
        self.visibility_s = int(self._webhooks.attempt_timeout_s * (BACKLOG_ROUNDS + 1) + 30)

    async def _start(self) -> None:
        if self._session is None:
            self._session = open_webhook_session(self._webhooks)
        for lane in self._lanes.values():
            for n in range(lane.endpoint.concurrency):
                name = f"webhook-{lane.endpoint.name}-{n}"
                self._tasks.append(asyncio.create_task(self._work(lane), name=name))
        for n in range(self._webhooks.consumers):
            self._tasks.append(asyncio.create_task(self._poll(), name=f"webhooks-{n}"))

    async def _stop(self) -> None:
        await cancel_and_wait(self._tasks)
        if self._flushes:  # deletes under way finish; a pending one is sent below
            await asyncio.wait(list(self._flushes), timeout=5)
        left = [
            lane.backlog.get_nowait()
            for lane in self._lanes.values()
            for _ in range(lane.backlog.qsize())
        ]
        with contextlib.suppress(BackendError):  # else they come back after their visibility
            await self._send_deletes()
            for message, _ in left:  # another node may take them now
                await self._queues.change_visibility_batch(
                    message.queue_url, [(message.receipt_handle, 0)]
                )
        if self._own_session and self._session is not None:
            await self._session.close()

    # -- reading -----------------------------------------------------------------------------

    async def _poll(self) -> None:
        backoff = 0.0
        while True:
            while self._held >= self._capacity:
                self._freed.clear()
                await self._freed.wait()
            # Room is taken before receiving, so pollers together never take more than fits.
            room = min(MAX_BATCH, self._capacity - self._held)
            self._held += room
            try:
                url = await self._queues.resolve(self._webhooks.queue)
                messages = await self._queues.receive(
                    url, max_messages=room, visibility_timeout_s=self.visibility_s
                )
                self._release_room(room - len(messages))
                room = 0
                for message in messages:
                    await self._dispatch(message)
                backoff = 0.0
            except QueueError as exc:
                backoff = min(max(backoff * 2, 0.5), MAX_BACKOFF_S)
                log.warning("webhook queue: %s; again in %.1f s", exc, backoff)
            except Exception:  # never let one bad batch end the poller
                backoff = min(max(backoff * 2, 0.5), MAX_BACKOFF_S)
                log.exception("webhook poller: unexpected error; again in %.1f s", backoff)
            finally:
                self._release_room(room)
            if backoff:
                await asyncio.sleep(backoff)

    def _release_room(self, count: int) -> None:
        if count:
            self._held -= count
            self._freed.set()

    async def _dispatch(self, message: ReceivedMessage) -> None:
        """Hand a received message to its lane, which frees its room once done with it; one
        that does not go to a lane frees its room here. A failure is logged: the message comes
        back after its visibility timeout."""
        lane: _Lane | None = None
        try:
            lane = await self._take(message)
        except BackendError as exc:
            log.warning("webhook delivery left on its queue for now: %s", exc)
        finally:
            if lane is None:
                self._release_room(1)

    async def _take(self, message: ReceivedMessage) -> _Lane | None:
        try:
            delivery = Delivery.decode(message.body)
        except ValueError as exc:
            await self._dead_letter(message, FailureKind.UNREADABLE, str(exc), "-")
            return None
        lane = self._lanes.get(delivery.endpoint)
        if lane is None:
            reason = f"endpoint {delivery.endpoint!r} is not configured"
            await self._dead_letter(message, FailureKind.PERMANENT, reason, delivery.endpoint)
            return None
        try:
            lane.backlog.put_nowait((message, delivery))
            return lane
        except asyncio.QueueFull:  # this endpoint is busy (or hanging): later, not now
            await self._queues.change_visibility_batch(
                message.queue_url, [(message.receipt_handle, lane.busy_delay_s())]
            )
            return None

    # -- delivering --------------------------------------------------------------------------

    async def _work(self, lane: _Lane) -> None:
        while True:
            message, delivery = await lane.backlog.get()
            try:
                await self._deliver(lane, message, delivery)
            except BackendError as exc:  # the queue: the message comes back by itself
                log.warning("webhook %s: %s", delivery.webhook_id, exc)
            except Exception:
                log.exception("webhook %s: unexpected error", delivery.webhook_id)
            finally:
                self._held -= 1
                self._freed.set()

    async def _deliver(self, lane: _Lane, message: ReceivedMessage, delivery: Delivery) -> None:
        name = lane.endpoint.name
        disabled = (await self._disabled_now()).get(name)
        if disabled is not None:
            reason = f"endpoint {name} is disabled: {disabled.reason}"
            await self._dead_letter(message, FailureKind.PERMANENT, reason, name)
            return
        assert self._session is not None
        answer = await attempt(self._session, self._webhooks, lane.endpoint, delivery, self._keys)
        metrics.WEBHOOK_SECONDS.labels(name).observe(answer.seconds)
        lane.latency_s = 0.8 * lane.latency_s + 0.2 * answer.seconds
        metrics.WEBHOOK_ATTEMPTS.labels(name, answer.verdict).inc()
        if answer.verdict == "delivered":
            self.delivered += delivery.events
            lane.failing.pop(delivery.webhook_id, None)
            await self._delete(message)
        elif answer.verdict == "gone":
            lane.failing.pop(delivery.webhook_id, None)
            await self._disable(name, answer)
            reason = f"endpoint {name} answered 410 Gone: disabled"
            await self._dead_letter(message, FailureKind.PERMANENT, reason, name)
        elif answer.verdict == "refused":
            lane.failing.pop(delivery.webhook_id, None)
            await self._dead_letter(message, FailureKind.PERMANENT, answer.problem, name)
        else:
            await self._retry_later(lane, message, delivery, answer)
        self._report_age(lane)

    async def _retry_later(
        self, lane: _Lane, message: ReceivedMessage, delivery: Delivery, answer: Answer
    ) -> None:
        name = lane.endpoint.name
        age = self._clock() - delivery.published_at
        delay = backoff_s(message.receive_count, self._webhooks.retry_base_delay_s)
        if age + delay > self._webhooks.max_age_s:
            lane.failing.pop(delivery.webhook_id, None)
            reason = (
                f"not delivered after {message.receive_count} attempt(s) over {age / 3600:.1f} h"
                f" (webhooks.max_age_s): {answer.problem}"
            )
            await self._dead_letter(message, FailureKind.RETRIES_EXHAUSTED, reason, name)
            return
        lane.failing.setdefault(delivery.webhook_id, delivery.published_at)
        log.info(
            "webhook %s to %s: %s; again in %d s", delivery.webhook_id, name, answer.problem, delay
        )
        await self._queues.change_visibility_batch(
            message.queue_url, [(message.receipt_handle, delay)]
        )

    async def _disable(self, name: str, answer: Answer) -> None:
        if name in self._disabled:  # requests in flight together all answered 410
            return
        entry = Disabled(name, f"answered 410 Gone ({answer.problem})", self._clock())
        self._disabled[name] = entry
        metrics.WEBHOOK_ENDPOINT_DISABLED.labels(name).set(1)
        log.warning(
            "webhook endpoint %s answered 410 Gone: disabled on every node; its deliveries go to"
            " the dead-letter queue (`gomail webhooks enable %s`, then `gomail webhooks redrive`)",
            name,
            name,
        )
        try:
            await self._states.disable(entry)
        except BackendError as exc:
            log.error("could not record that endpoint %s is disabled: %s", name, exc)

    async def _disabled_now(self) -> dict[str, Disabled]:
        now = time.monotonic()
        if now - self._disabled_read_at >= self._state_refresh_s:
            self._disabled_read_at = now
            try:
                found = await self._states.disabled(list(self._lanes))
            except BackendError as exc:
                log.warning("endpoint states not read (%s): using the last known", exc)
            else:
                self._disabled = found
                for name in self._lanes:
                    metrics.WEBHOOK_ENDPOINT_DISABLED.labels(name).set(int(name in found))
        return self._disabled

    def _report_age(self, lane: _Lane) -> None:
        oldest = min(lane.failing.values(), default=None)
        age = 0.0 if oldest is None else max(0.0, self._clock() - oldest)
        metrics.WEBHOOK_OLDEST_AGE.labels(lane.endpoint.name).set(age)

    # -- settling ----------------------------------------------------------------------------

    async def _dead_letter(
        self, message: ReceivedMessage, kind: FailureKind, reason: str, endpoint: str
    ) -> None:
        await dead_letter(self._queues, message, kind, reason, provider=f"webhook:{endpoint}")
        self.dead_lettered += 1
        metrics.WEBHOOK_ATTEMPTS.labels(endpoint, "dead_lettered").inc()
        log.warning("webhook delivery dead-lettered (%s): %s", endpoint, reason)
        await self._delete(message)

    async def _delete(self, message: ReceivedMessage) -> None:
        """Deletes go in batches of up to 10, at most a few milliseconds late, in the
        background: a lane goes on to its next delivery meanwhile."""
        self._deletes.append((message.queue_url, message.receipt_handle))
        if len(self._deletes) >= MAX_BATCH:
            self._spawn_flush(0.0)
        elif self._flush is None or self._flush.done():
            self._flush = self._spawn_flush(0.01)

    def _spawn_flush(self, after_s: float) -> asyncio.Task[None]:
        task = asyncio.create_task(self._flush_soon(after_s))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)
        return task

    async def _flush_soon(self, after_s: float) -> None:
        if after_s:
            await asyncio.sleep(after_s)
        try:
            await self._send_deletes()
        except BackendError as exc:
            log.warning("webhook deliveries not deleted (%s): they may be sent again", exc)

    async def _send_deletes(self) -> None:
        taken, self._deletes = self._deletes, []
        by_queue: dict[str, list[str]] = {}
        for url, handle in taken:
            by_queue.setdefault(url, []).append(handle)
        for url, handles in by_queue.items():
            await self._queues.delete_batch(url, handles)


async def open_webhooks(
    stack: AsyncExitStack, settings: Settings, queues: QueueClient
) -> WebhookDeliverer | None:
    """Start the webhook deliverer (closed with `stack`) when `webhooks.enabled`."""
    if not settings.webhooks.enabled:
        return None
    states = await open_endpoint_states(stack, settings)
    deliverer = WebhookDeliverer(settings, queues, states)
    return await stack.enter_async_context(deliverer)
