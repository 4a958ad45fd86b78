"""Events onto the events queue in batches: the tracking endpoints write nothing per hit.

    async with EventBatcher(queues, settings.events.queue, interval_s=1.0) as batcher:
        batcher.add(event)        # no I/O: kept until the next flush
        await batcher.put([e])    # now, for what must be on the queue before answering

Every `interval_s` what was added goes out as few queue messages as fit (each a gomailpy
report of up to MAX_BODY_BYTES, ten to a SendMessageBatch call). A flush that fails keeps its
events for the next one; past `max_pending` events new hits are dropped (and counted): a queue
outage must not grow the API without bound. What is pending at close is flushed once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from gomailpy.bulk.hits import report
from gomailpy.errors import QueueError
from gomailpy.events import Event
from gomailpy.lifecycle import AsyncResource, cancel_and_wait
from gomailpy.queues.sqs import QueueClient, queue_name

log = logging.getLogger("gomailpy.bulk")

MAX_BODY_BYTES = 200_000  # SQS takes 256 KiB per message and per batch call
MAX_EVENTS_PER_BODY = 500


class EventBatcher(AsyncResource):
    """See the module docstring."""

    def __init__(
        self,
        queues: QueueClient,
        queue: str,
        *,
        interval_s: float = 1.0,
        max_pending: int = 100_000,
    ) -> None:
        self._queues = queues
        self._queue = queue
        self._interval_s = interval_s
        self._max_pending = max_pending
        self._pending: list[Event] = []
        self._task: asyncio.Task[None] | None = None
        self.sent = 0  # events put on the queue
        self.dropped = 0  # hits not recorded: too many pending

    def add(self, event: Event) -> None:
        if len(self._pending) >= self._max_pending:
            self.dropped += 1
            return
        self._pending.append(event)

    async def put(self, events: Sequence[Event]) -> None:
        """Put `events` on the queue now; QueueError when it did not take them."""
        url = await self._queues.resolve(self._queue)
        bodies = _bodies(list(events))
        result = await self._queues.send_batch(url, [(str(i), b) for i, b in enumerate(bodies)])
        if result.failed:
            reasons = "; ".join(sorted(set(result.failed.values())))
            raise QueueError(queue_name(url), "send_message_batch", reasons)
        self.sent += len(events)

    async def flush(self) -> None:
        taken, self._pending = self._pending, []
        if not taken:
            return
        try:
            await self.put(taken)
        except asyncio.CancelledError:
            # Closing while this flush waited on the queue: `_stop` flushes them once more
            # (if the queue had taken them already, they go twice; the event ids make it once).
            self._pending[:0] = taken
            raise
        except QueueError as exc:
            log.warning("%d tracking event(s) not queued yet: %s", len(taken), exc)
            room = self._max_pending - len(self._pending)
            self._pending[:0] = taken[:room]  # again next time, oldest first

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.flush()
            except Exception:  # never let one flush end the batcher
                log.exception("tracking events: flush failed")

    async def _start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bulk-events")

    async def _stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
        await self.flush()


def _bodies(events: list[Event]) -> list[str]:
    bodies: list[str] = []
    chunk: list[Event] = []
    size = 0
    for event in events:
        event_size = len(json.dumps(event.to_json())) + 2
        if chunk and (size + event_size > MAX_BODY_BYTES or len(chunk) >= MAX_EVENTS_PER_BODY):
            bodies.append(json.dumps(report(chunk)))
            chunk, size = [], 0
        chunk.append(event)
        size += event_size
    if chunk:
        bodies.append(json.dumps(report(chunk)))
    return bodies
