"""The API's side of the queues: put one encoded envelope on a queue, falling over to the next.

One `QueueGateway` lives as long as the app (a one-shot async context manager). It keeps, per
configured queue, the last depth and reachability read by its background refresher (started on
entering, every `api.depth_refresh_s`), which is what least-depth chooses by and what /readyz
reports: no request ever waits for a depth read. Queue URLs are resolved lazily (by the
refresher or the first send), so the API starts, and answers 503, while the queue server is
unreachable.

Requests arriving together for the same queue share one SendMessageBatch call (api.batcher,
`api.batch_linger_ms`): each request still waits for its own entry, and an entry the queue
refused moves on to the next queue alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from api.batcher import EntryOutcome, SendBatcher
from api.queue_choice import QueueChooser
from gomailpy.errors import NoQueueAvailableError, QueueError
from gomailpy.lifecycle import AsyncResource
from gomailpy.metrics import ENQUEUE_FAILURES, ENQUEUED, QUEUE_IN_FLIGHT, QUEUE_VISIBLE
from gomailpy.queue import QueueClient, QueueDepth, queue_name
from gomailpy.settings import ApiSettings

logger = logging.getLogger(__name__)

NOT_CHECKED = "not checked yet"


@dataclass(frozen=True, slots=True)
class QueueState:
    """What the API last learned about one queue."""

    name: str
    reachable: bool
    depth: int | None  # visible + in flight + delayed, as last read (None: unknown)
    problem: str | None  # why it is not reachable, or NOT_CHECKED


class QueueGateway(AsyncResource):
    def __init__(
        self,
        queues: QueueClient,
        entries: Sequence[str],
        chooser: QueueChooser,
        *,
        api: ApiSettings | None = None,
        batcher: SendBatcher | None = None,
    ) -> None:
        """`api` gives the batching knobs and the refresh interval (None: their defaults);
        `batcher` replaces the batcher built from them (tests)."""
        self._queues = queues
        knobs = api if api is not None else ApiSettings()
        self._refresh_every_s = knobs.depth_refresh_s
        self._refresher: asyncio.Task[None] | None = None
        self._batcher = batcher or SendBatcher(
            queues,
            linger_s=knobs.batch_linger_ms / 1000,
            max_entries=knobs.batch_max_entries,
        )
        self._entries = list(entries)  # configured names or URLs, in configuration order
        self._chooser = chooser
        self._depths: dict[str, int] = {}
        self._problems: dict[str, str | None] = {entry: NOT_CHECKED for entry in self._entries}

    # -- the request path ---------------------------------------------------------------------

    async def enqueue(self, body: str) -> str:
        """Put `body` on one queue and return that queue's name, or `NoQueueAvailableError`.

        Queues are tried in the chooser's order; a failed call or a failed batch entry moves on
        to the next queue. Concurrent requests for the same queue share a batch call, but each
        one's answer is its own entry's. A call that timed out may still have been accepted, so
        an email can reach two queues: delivery is at least once, never at most once.
        """
        reasons: list[str] = []
        for entry in self._chooser.order(self._entries, self._depths):
            name = queue_name(entry)
            try:
                url = await self._queues.resolve(entry)
            except QueueError as exc:
                outcome = EntryOutcome(False, reason=exc.reason)
            else:
                outcome = await self._batcher.send(url, body)
            if outcome.ok:
                ENQUEUED.labels(queue=name).inc()
                self._problems[entry] = None
                # Count it until the next refresh, so a burst spreads over the queues
                # instead of piling onto the one that was shallowest at the last read.
                if entry in self._depths:
                    self._depths[entry] += 1
                return name
            reason = outcome.reason
            ENQUEUE_FAILURES.labels(queue=name).inc()
            # Unknown depth sorts last: later requests try the other queues first until the
            # refresher has read this one again.
            self._depths.pop(entry, None)
            logger.warning("queue refused an email: %s", reason, extra={"queue": name})
            reasons.append(f"{name}: {reason}")
        raise NoQueueAvailableError(reasons)

    # -- life -----------------------------------------------------------------------------------

    async def _start(self) -> None:
        self._refresher = asyncio.create_task(
            self.run_refresher(self._refresh_every_s), name="gomailpy-depth-refresher"
        )

    async def _stop(self) -> None:
        """Stop refreshing, then send any batch still waiting and wait for the calls in flight.
        The app closes it after the requests in flight finished: nothing needs depths now."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self._batcher.aclose()

    # -- the background refresher -----------------------------------------------------------

    async def refresh(self) -> None:
        """Read every queue's depth once (concurrently) and record which queues answered."""
        await asyncio.gather(*(self._refresh_one(entry) for entry in self._entries))

    async def _refresh_one(self, entry: str) -> None:
        name = queue_name(entry)
        try:
            depth: QueueDepth = await self._queues.depth(await self._queues.resolve(entry))
        except QueueError as exc:
            if self._problems.get(entry) != exc.reason:
                logger.warning("queue unreachable: %s", exc.reason, extra={"queue": name})
            self._problems[entry] = exc.reason
            self._depths.pop(entry, None)
            return
        if self._problems.get(entry) not in (None, NOT_CHECKED):
            logger.info("queue reachable again", extra={"queue": name})
        self._problems[entry] = None
        self._depths[entry] = depth.total
        QUEUE_VISIBLE.labels(queue=name).set(depth.visible)
        QUEUE_IN_FLIGHT.labels(queue=name).set(depth.in_flight)

    async def run_refresher(self, interval_s: float) -> None:
        """Refresh every `interval_s` until cancelled, starting at once."""
        while True:
            try:
                await self.refresh()
            except Exception:
                # Not a queue failure (those are recorded above) but a bug: keep refreshing,
                # since a dead refresher would freeze readiness and depths without a sign.
                logger.exception("queue depth refresh failed")
            await asyncio.sleep(interval_s)

    # -- readiness ------------------------------------------------------------------------------

    def states(self) -> list[QueueState]:
        return [
            QueueState(
                name=queue_name(entry),
                reachable=self._problems.get(entry) is None,
                depth=self._depths.get(entry),
                problem=self._problems.get(entry),
            )
            for entry in self._entries
        ]

    def ready(self) -> bool:
        """True when at least one queue answered last time: an email can be accepted."""
        return any(state.reachable for state in self.states())
