"""The API's side of the queues: put one encoded envelope on a queue, falling over to the next.

One `QueueGateway` lives as long as the app (a one-shot async context manager). It keeps, per
configured queue, the last depth and reachability read by its background refresher (started on
entering, every `api.depth_refresh_s`), which is what least-depth chooses by and what /readyz
reports: no request ever waits for a depth read. Queue URLs are resolved lazily (by the
refresher or the first send), so the API starts, and answers 503, while the queue server is
unreachable.

Requests for the same queue share SendMessageBatch calls (api.enqueue.batcher, natural batching:
a call leaves whenever one of `api.batch_max_calls` slots is free, with what is waiting, and a
full one at once in one of `api.batch_full_calls` further slots): each
request still waits for its own entry, and an entry the queue refused moves on to the next queue
alone.

Failing fast (api.enqueue.circuit): each queue has a circuit, opened by failed calls (the request
path's and the refresher's) and closed by the refresher's next answer from it, which it probes more
often while a circuit is open. A request skips queues whose circuit is open; when every circuit is
open it asks the refresher for a probe round now and waits for it (at most PROBE_WAIT_S): a queue
that answers is offered the email, so the first requests after an outage are not turned away for
want of a probe; when none answers, 503 with Retry-After, without an email call to SQS (probe
rounds are at least MIN_PROBE_GAP_S apart, however many requests ask). A request waits at most
`api.enqueue_deadline_s` in all, each queue it tries getting an equal share of what is left. A
refusal of the email's contents (InvalidMessageContents) is the request's fault, not the queue's:
answered 400 at once, the circuit untouched.

Regional queues (`regions`, gomailpy.config.regions): the chooser's order is reordered by
api.enqueue.queue_choice.regional_order for the caller's region (the API's home, or the one a
request names), so an email stays in its region until that region is deeper than
`regions.spill_depth` or its queues refuse or are down. Queues of other AWS regions go through
clients of their own (api.enqueue.regional_clients): SQS serves a queue only at its region's
endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from api.enqueue.batcher import EntryOutcome, SendBatcher
from api.enqueue.circuit import QueueCircuit
from api.enqueue.queue_choice import QueueChooser, caller_region, regional_order
from gomailpy.config.regions import RegionSettings
from gomailpy.config.settings import ApiSettings
from gomailpy.errors import NoQueueAvailableError, QueueError, UnqueueableEmailError
from gomailpy.lifecycle import AsyncResource
from gomailpy.metrics import (
    ENQUEUE_FAILURES,
    ENQUEUED,
    QUEUE_IN_FLIGHT,
    QUEUE_VISIBLE,
    REGION_DEPTH,
    REGION_ENQUEUED,
)
from gomailpy.queues.sqs import QueueClient, QueueDepth, queue_name

logger = logging.getLogger(__name__)

NOT_CHECKED = "not checked yet"
# How often the refresher probes while a circuit is open (at most; depth_refresh_s if shorter):
# a queue back from an outage takes traffic again within about this long.
PROBE_EVERY_S = 0.5
# The longest a request finding every circuit open waits for the probe round it asked for: a
# server that refuses connections answers a probe in milliseconds, one that never answers should
# not hold every request for the probe's whole deadline.
PROBE_WAIT_S = 0.5
# Probe rounds asked for by requests come at most this often: a flood of requests during an
# outage must not become a flood of probes to the dead server.
MIN_PROBE_GAP_S = 0.1
# SQS error codes that refuse an email for what it carries. Every queue would refuse it too.
_CONTENT_REFUSALS = ("InvalidMessageContents", "MessageTooLong", "BatchRequestTooLong")


def refused_for_contents(reason: str) -> bool:
    """True when a queue's refusal (`"Code: message"`, as gomailpy.queues.sqs words them) concerns
    the email's contents, not the queue."""
    code = reason.split(":", 1)[0]
    return any(marker in code for marker in _CONTENT_REFUSALS)


@dataclass(frozen=True, slots=True)
class QueueState:
    """What the API last learned about one queue."""

    name: str
    reachable: bool
    depth: int | None  # visible + in flight + delayed, as last read (None: unknown)
    problem: str | None  # why it is not reachable, or NOT_CHECKED
    circuit_open: bool = False  # skipped by requests until it answers a probe
    region: str | None = None  # regions.queues; None: untagged


class QueueGateway(AsyncResource):
    def __init__(
        self,
        queues: QueueClient,
        entries: Sequence[str],
        chooser: QueueChooser,
        *,
        api: ApiSettings | None = None,
        batcher: SendBatcher | None = None,
        clock: Callable[[], float] = time.monotonic,
        regions: RegionSettings | None = None,
        regional_clients: Mapping[str, QueueClient] | None = None,
    ) -> None:
        """`api` gives the batching knobs, the refresh interval and the enqueue deadline (None:
        their defaults); `batcher` replaces the batcher built from them (tests); `clock` times
        the circuits; `regions` tags the queues (None: untagged, no regional routing);
        `regional_clients` serve the entries of other AWS regions (api.enqueue.regional_clients)."""
        self._queues = queues
        knobs = api if api is not None else ApiSettings()
        self._refresh_every_s = knobs.depth_refresh_s
        self._deadline_s = knobs.enqueue_deadline_s
        self._clock = clock
        self._refresher: asyncio.Task[None] | None = None

        def batcher_of(client: QueueClient) -> SendBatcher:
            return SendBatcher(
                client,
                linger_s=knobs.batch_linger_ms / 1000,
                max_entries=knobs.batch_max_entries,
                max_calls=knobs.batch_max_calls,
                full_calls=knobs.batch_full_calls,
            )

        self._batcher = batcher or batcher_of(queues)
        # Per entry: the client of its AWS region and that client's batcher (default: queues').
        self._clients = dict(regional_clients or {})
        self._batchers = {entry: batcher_of(client) for entry, client in self._clients.items()}
        self._entries = list(entries)  # configured names or URLs, in configuration order
        self._chooser = chooser
        self._depths: dict[str, int] = {}
        self._problems: dict[str, str | None] = {entry: NOT_CHECKED for entry in self._entries}
        self._circuits = {entry: QueueCircuit() for entry in self._entries}
        # Wakes the refresher: a circuit opened (start probing) or a request wants a probe now.
        self._wake = asyncio.Event()
        # Set when the next probe round to start has ended (what a waiting request awaits).
        self._next_round = asyncio.Event()
        self._regions = regions if regions is not None else RegionSettings()
        self._region_of = {
            entry: region
            for entry in self._entries
            if (region := self._regions.region_of(entry)) is not None
        }
        listed = {*self._entries, *(queue_name(entry) for entry in self._entries)}
        for stray in sorted(set(self._regions.queues) - listed):
            logger.warning("regions.queues names %s, which is not in queues.urls", stray)

    @property
    def queues(self) -> QueueClient:
        return self._queues

    # -- the request path ---------------------------------------------------------------------

    async def enqueue(self, body: str, region: str | None = None) -> str:
        """Put `body` on one queue and return that queue's name.

        `region`: the region the caller asked for (a request header, `regions.header`); one
        that is not configured is ignored, and the API's home region (`regions.home`) used.

        Queues are tried in the chooser's order, skipping those whose circuit is open; a failed
        call or a failed batch entry moves on to the next queue. Raises `NoQueueAvailableError`
        (with the Retry-After to advise) when none took it within `api.enqueue_deadline_s` or
        every circuit is open, and `UnqueueableEmailError` when a queue refused the contents.
        Concurrent requests for the same queue share a batch call, but each one's answer is its
        own entry's. A call that timed out may still have been accepted, so an email can reach
        two queues: delivery is at least once, never at most once.
        """
        home = caller_region(region, self._regions.home, set(self._region_of.values()))
        order = regional_order(
            self._chooser.order(self._entries, self._depths),
            self._depths,
            self._region_of,
            home,
            self._regions.spill_depth,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._deadline_s
        candidates = [entry for entry in order if self._circuits[entry].allows()]
        if not candidates:
            # Nothing on the request path closes a circuit, so without a probe now the first
            # requests after the server came back would be turned away until the next one.
            await self._probe_now(min(PROBE_WAIT_S, self._deadline_s))
            candidates = [entry for entry in order if self._circuits[entry].allows()]
        if not candidates:
            raise NoQueueAvailableError(
                [f"{queue_name(entry)}: down ({self._problems.get(entry)})" for entry in order],
                retry_after_s=self._retry_after_s(),
            )
        reasons: list[str] = []
        for index, entry in enumerate(candidates):
            name = queue_name(entry)
            # An equal share of the time left per queue still to try: a queue that does not
            # answer cannot use up the time another one would have needed.
            budget_s = (deadline - loop.time()) / (len(candidates) - index)
            outcome = await self._offer(entry, body, budget_s)
            if outcome.ok:
                ENQUEUED.labels(queue=name).inc()
                if self._region_of:
                    landed = self._region_of.get(entry, "")
                    REGION_ENQUEUED.labels(home=home or "", region=landed).inc()
                self._problems[entry] = None
                self._circuits[entry].record_success(self._clock())
                # Count it until the next refresh, so a burst spreads over the queues
                # instead of piling onto the one that was shallowest at the last read.
                if entry in self._depths:
                    self._depths[entry] += 1
                return name
            reason = outcome.reason
            if refused_for_contents(reason):
                raise UnqueueableEmailError(name, reason)
            ENQUEUE_FAILURES.labels(queue=name).inc()
            logger.warning("queue refused an email: %s", reason, extra={"queue": name})
            self._queue_failed(entry, reason)
            reasons.append(f"{name}: {reason}")
        raise NoQueueAvailableError(reasons, retry_after_s=self._retry_after_s())

    async def _offer(self, entry: str, body: str, budget_s: float) -> EntryOutcome:
        try:
            async with asyncio.timeout(budget_s):
                url = await self._client(entry).resolve(entry)
                return await self._batchers.get(entry, self._batcher).send(url, body)
        except QueueError as exc:
            return EntryOutcome(False, reason=exc.reason)
        except TimeoutError:
            # Our deadline, not the call's: the batcher drops or ignores the abandoned entry.
            return EntryOutcome(False, reason=f"no answer within {max(budget_s, 0):.2f} s")

    async def _probe_now(self, wait_s: float) -> None:
        """Ask the refresher for a probe round and wait until one that started after this call
        has ended (at most `wait_s`)."""
        round_ended = self._next_round
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(round_ended.wait(), wait_s)

    def _client(self, entry: str) -> QueueClient:
        return self._clients.get(entry, self._queues)

    def _queue_failed(self, entry: str, reason: str) -> None:
        """A call to the queue failed for the queue's sake: count it towards its circuit."""
        # Unknown depth sorts last: later requests try the other queues first until the
        # refresher has read this one again.
        self._depths.pop(entry, None)
        self._problems[entry] = reason
        if self._circuits[entry].record_failure(self._clock()):
            self._wake.set()
            logger.warning(
                "queue circuit open: skipped until it answers a probe (%s)",
                reason,
                extra={"queue": queue_name(entry)},
            )

    def _retry_after_s(self) -> int:
        now = self._clock()
        return min(circuit.retry_after_s(now) for circuit in self._circuits.values())

    # -- life -----------------------------------------------------------------------------------

    async def _start(self) -> None:
        self._refresher = asyncio.create_task(
            self.run_refresher(self._refresh_every_s), name="gomailpy-depth-refresher"
        )

    async def _stop(self) -> None:
        """Stop refreshing, then send any batch still waiting and wait for the calls in flight
        (at most `api.enqueue_deadline_s`). The app closes it after the requests in flight
        finished: nothing needs depths now."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        try:
            # Calls to a server that does not answer would hold the shutdown for the client's
            # whole timeout; their callers were answered 503 at the deadline already.
            async with asyncio.timeout(self._deadline_s):
                await asyncio.gather(
                    *(batcher.aclose() for batcher in [self._batcher, *self._batchers.values()])
                )
        except TimeoutError:
            logger.warning("queue calls still unanswered at shutdown were abandoned")

    # -- the background refresher -----------------------------------------------------------

    async def refresh(self) -> None:
        """Read every queue's depth once (concurrently) and record which queues answered."""
        await asyncio.gather(*(self._refresh_one(entry) for entry in self._entries))
        for region in set(self._region_of.values()):
            REGION_DEPTH.labels(region=region).set(self.region_depth(region))

    def region_depth(self, region: str) -> int:
        """The known depth of a region's queues together (what spilling compares)."""
        return sum(
            self._depths.get(entry, 0) for entry, tag in self._region_of.items() if tag == region
        )

    async def _refresh_one(self, entry: str) -> None:
        name = queue_name(entry)
        try:
            # Bounded like a request: a probe of a server that does not answer must not hold
            # the refresher (and so the circuit's closing) for the client's whole timeout.
            async with asyncio.timeout(self._deadline_s):
                client = self._client(entry)
                depth: QueueDepth = await client.depth(await client.resolve(entry))
        except (QueueError, TimeoutError) as exc:
            reason = (
                exc.reason
                if isinstance(exc, QueueError)
                else f"no answer within {self._deadline_s:g} s"
            )
            if self._problems.get(entry) != reason:
                logger.warning("queue unreachable: %s", reason, extra={"queue": name})
            self._queue_failed(entry, reason)
            return
        if self._problems.get(entry) not in (None, NOT_CHECKED):
            logger.info("queue reachable again", extra={"queue": name})
        if self._circuits[entry].record_success(self._clock()):
            logger.info("queue circuit closed: it answered a probe", extra={"queue": name})
        self._problems[entry] = None
        self._depths[entry] = depth.total
        QUEUE_VISIBLE.labels(queue=name).set(depth.visible)
        QUEUE_IN_FLIGHT.labels(queue=name).set(depth.in_flight)

    async def run_refresher(self, interval_s: float) -> None:
        """Refresh every `interval_s` until cancelled, starting at once; while a circuit is
        open, every PROBE_EVERY_S (when shorter); sooner (MIN_PROBE_GAP_S after the last round)
        when a circuit opened or a request found every circuit open."""
        while True:
            # Cleared before the round, not after: a request asking during a round gets the
            # next one (it may have started before the server came back).
            self._wake.clear()
            this_round, self._next_round = self._next_round, asyncio.Event()
            try:
                await self.refresh()
            except Exception:
                # Not a queue failure (those are recorded above) but a bug: keep refreshing,
                # since a dead refresher would freeze readiness and depths without a sign.
                logger.exception("queue depth refresh failed")
            finally:
                this_round.set()
            any_open = any(circuit.is_open for circuit in self._circuits.values())
            pause_s = min(interval_s, PROBE_EVERY_S) if any_open else interval_s
            gap_s = min(MIN_PROBE_GAP_S, pause_s)
            await asyncio.sleep(gap_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause_s - gap_s)

    # -- readiness ------------------------------------------------------------------------------

    def states(self) -> list[QueueState]:
        return [
            QueueState(
                name=queue_name(entry),
                reachable=self._problems.get(entry) is None,
                depth=self._depths.get(entry),
                problem=self._problems.get(entry),
                circuit_open=self._circuits[entry].is_open,
                region=self._region_of.get(entry),
            )
            for entry in self._entries
        ]

    def ready(self) -> bool:
        """True when at least one queue answered last time: an email can be accepted."""
        return any(state.reachable for state in self.states())
