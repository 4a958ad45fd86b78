"""Requests arriving together for the same queue share one SendMessageBatch call.

    batcher = SendBatcher(queues, max_calls=2, full_calls=6)
    outcome = await batcher.send(url, body)      # this entry's own outcome, never the batch's
    if outcome.ok: ...                           # outcome.message_id
    else: ...                                    # outcome.reason: try the next queue or 503

Natural batching (as group commit and Nagle's algorithm do it): entries wait in a queue per
queue URL, and whenever one of that queue's `max_calls` call slots is free a call leaves at once
with whatever is waiting, up to `max_entries` (SQS allows 10) and `max_bytes`. There is no timer
to wait out: under light load a request waits for its own call only, and under heavy load the
entries that arrive while the slots are busy fill the next calls by themselves. The start of a
call is put off to the end of the event loop's current pass (`call_soon`), so requests the loop
is handling in that same pass go together rather than the first one alone. The lingering window
it replaces (2 ms, then the Nagle rule) cost every request at half load a linger plus a call,
and a second call now and then (bench/README.md, issue 27).

A full call (`max_entries` waiting) does not wait for one of those slots: it leaves at once in
one of `full_calls` further slots. Under heavy load the line then moves as fast as the queue
server answers instead of two calls at a time: during `gomail send -c 64` under `make up` a
request waited a whole call in line before its own (the form's answers took ~2 calls, ~550 ms,
against ~250 ms for one call made straight to the server; bench/README.md, "The form and the
local stack's pool"). Calls that are not full stay within `max_calls`, so light load still
makes few, full calls.

`linger_s > 0` makes a free slot wait that long (or until `max_entries` are waiting) before
its call leaves: fuller calls at light load, for that much latency; 0 is the default.
`max_entries == 1` turns batching off: each entry is sent at once in a call of its own.

Each caller waits for its own entry only:

- an entry the queue accepted answers `ok` with its SQS message id;
- an entry the queue refused in the batch (`Failed`) answers with that entry's reason only;
- a call refused as a whole for what it carried (a 4xx such as BatchRequestTooLong or
  InvalidMessageContents) is split in halves and sent again, down to single entries, so one bad
  entry cannot take the others down with it;
- a call that failed for the queue's sake (unreachable, timed out, missing queue, throttled, a
  5xx) fails every entry in it with that reason: each caller then moves on to its next queue on
  its own, exactly as it would have without batching. A timed-out call may still have been
  accepted, so an email can reach two queues: at least once, never at most once.

An entry whose caller was cancelled before its call left is dropped, not sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from gomailpy.errors import QueueError
from gomailpy.lifecycle import AsyncResource
from gomailpy.queues.sqs import MAX_BATCH, QueueClient, queue_name

logger = logging.getLogger(__name__)

# SQS's classic limit on a whole batch call (256 KiB, the sum of its bodies). Larger servers
# accept more (up to 1 MiB) but a batch kept under the classic limit is accepted by all of them;
# an entry larger than this on its own still goes out, alone.
MAX_BATCH_BYTES = 262_144

# Whole-call refusals that concern the queue or the service, not the entries: splitting the
# batch would only repeat the refusal, so every entry moves on to its next queue at once.
_QUEUE_LEVEL_CODES = (
    "NonExistentQueue",
    "QueueDoesNotExist",
    "QueueDeletedRecently",
    "AccessDenied",
    "InvalidAddress",
    "InvalidClientTokenId",
    "InvalidSecurity",
    "UnrecognizedClient",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "RequestThrottled",
    "Throttling",
    "OverLimit",
    "Kms",
    "UnsupportedOperation",
)


@dataclass(frozen=True, slots=True)
class EntryOutcome:
    """What the queue made of one entry: accepted (`message_id`) or refused (`reason`)."""

    ok: bool
    message_id: str = ""
    reason: str = ""


@dataclass(slots=True)
class _Entry:
    body: str
    size: int
    future: asyncio.Future[EntryOutcome]


@dataclass(slots=True)
class _Lane:
    """One queue URL's entries waiting for a call slot, and its calls under way."""

    waiting: deque[_Entry] = field(default_factory=deque)
    under_way: int = 0
    under_way_full: int = 0  # of those, the calls in the further slots (full calls only)
    # A start of calls is scheduled (call_soon, or the linger timer): at most one at a time.
    scheduled: asyncio.Handle | asyncio.TimerHandle | None = None


def _splittable(exc: QueueError) -> bool:
    """True when a whole-call failure was a refusal of the call's contents (retry in halves)."""
    cause = exc.__cause__
    if not isinstance(cause, ClientError):
        return False  # transport errors and timeouts: the queue's problem (or unknown)
    response = cause.response
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
    if isinstance(status, int) and status >= 500:
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    return not any(marker in code for marker in _QUEUE_LEVEL_CODES)


class SendBatcher(AsyncResource):
    """Batches `send` calls per queue URL; one per process, for the app's life. A one-shot async
    context manager: closing it sends what is waiting and waits for the calls in flight."""

    def __init__(
        self,
        queues: QueueClient,
        *,
        linger_s: float = 0.0,
        max_entries: int = MAX_BATCH,
        max_bytes: int = MAX_BATCH_BYTES,
        max_calls: int = 2,
        full_calls: int = 0,
    ) -> None:
        if not 1 <= max_entries <= MAX_BATCH:
            raise ValueError(f"max_entries must be 1..{MAX_BATCH}")
        if max_calls < 1:
            raise ValueError("max_calls must be at least 1")
        if full_calls < 0:
            raise ValueError("full_calls must not be negative")
        self._queues = queues
        self._linger_s = max(linger_s, 0.0)
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._max_calls = max_calls  # per queue URL
        self._full_calls = full_calls  # per queue URL, beyond max_calls, for full calls only
        self._lanes: dict[str, _Lane] = {}
        self._calls: set[asyncio.Task[None]] = set()
        self._closing = False

    async def send(self, url: str, body: str) -> EntryOutcome:
        """Queue `body` on `url` in the next call; return this entry's own outcome.

        Raises nothing for a refusal (see `EntryOutcome`); cancelling the caller before its
        call leaves drops the entry.
        """
        if self._max_entries == 1:
            return await self._send_alone(url, body)
        future: asyncio.Future[EntryOutcome] = asyncio.get_running_loop().create_future()
        lane = self._lanes.get(url)
        if lane is None:
            lane = self._lanes[url] = _Lane()
        lane.waiting.append(_Entry(body, len(body.encode("utf-8")), future))
        if len(lane.waiting) >= self._max_entries:
            self._start_calls(url)  # a full call need not wait for the loop's pass
        elif lane.under_way - lane.under_way_full < self._max_calls:
            if lane.scheduled is None:
                loop = asyncio.get_running_loop()
                lane.scheduled = (
                    loop.call_later(self._linger_s, self._start_calls, url)
                    if self._linger_s > 0 and not self._closing
                    else loop.call_soon(self._start_calls, url)
                )
        return await future

    async def _stop(self) -> None:
        self._closing = True  # what waits goes now, and later sends linger no more
        for url in list(self._lanes):
            self._start_calls(url)
        while self._calls:  # a call ending starts the next one for its queue
            await asyncio.gather(*self._calls, return_exceptions=True)

    # -- internals ------------------------------------------------------------------------------

    async def _send_alone(self, url: str, body: str) -> EntryOutcome:
        try:
            result = await self._queues.send_batch(url, [("0", body)])
        except QueueError as exc:
            return EntryOutcome(False, reason=exc.reason)
        if "0" in result.ok:
            return EntryOutcome(True, message_id=result.ok["0"])
        return EntryOutcome(False, reason=result.failed.get("0", "the queue did not report it"))

    def _start_calls(self, url: str) -> None:
        """Fill every free call slot of `url`'s lane from what waits, oldest first: any call in
        the `max_calls` slots, full calls in the `full_calls` ones."""
        lane = self._lanes.get(url)
        if lane is None:
            return
        if lane.scheduled is not None:
            lane.scheduled.cancel()
            lane.scheduled = None
        while True:
            if lane.under_way - lane.under_way_full < self._max_calls:
                full = False
            elif lane.under_way_full < self._full_calls and len(lane.waiting) >= self._max_entries:
                full = True
            else:
                break
            entries = self._take(lane)
            if not entries:
                break
            lane.under_way += 1
            lane.under_way_full += full
            task = asyncio.get_running_loop().create_task(self._call(url, entries))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
            task.add_done_callback(functools.partial(self._call_ended, url, full))
        if not lane.waiting and not lane.under_way:
            del self._lanes[url]  # queues come and go (regions, failover): keep no empty lanes

    def _take(self, lane: _Lane) -> list[_Entry]:
        """The next call's entries: up to `max_entries` and `max_bytes` (an entry larger than
        that on its own goes alone). Entries whose callers were cancelled are dropped here:
        nobody would hear of them."""
        entries: list[_Entry] = []
        size = 0
        while lane.waiting and len(entries) < self._max_entries:
            entry = lane.waiting[0]
            if entry.future.done():
                lane.waiting.popleft()
                continue
            if entries and size + entry.size > self._max_bytes:
                break
            lane.waiting.popleft()
            entries.append(entry)
            size += entry.size
        return entries

    def _call_ended(self, url: str, full: bool, _: object = None) -> None:
        lane = self._lanes[url]
        lane.under_way -= 1
        lane.under_way_full -= full
        if not lane.waiting:
            if not lane.under_way:
                del self._lanes[url]
            return
        # The slot is free: what waited goes at once (it has waited a call already, longer
        # than any linger would have made it).
        self._start_calls(url)

    async def _call(self, url: str, entries: list[_Entry]) -> None:
        try:
            await self._send(url, entries)
        except BaseException as exc:
            # A bug or a cancellation (shutdown): no caller may wait for ever, nor hear "ok".
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            for entry in entries:
                _answer(entry, EntryOutcome(False, reason=reason))
            if not isinstance(exc, Exception):
                raise
            logger.exception("a batch send failed unexpectedly", extra={"queue": queue_name(url)})

    async def _send(self, url: str, entries: list[_Entry]) -> None:
        try:
            result = await self._queues.send_batch(
                url, [(str(i), entry.body) for i, entry in enumerate(entries)]
            )
        except QueueError as exc:
            if len(entries) > 1 and _splittable(exc):
                logger.info(
                    "a batch of %d was refused (%s); sending it again in halves",
                    len(entries),
                    exc.reason,
                    extra={"queue": queue_name(url)},
                )
                half = len(entries) // 2
                await asyncio.gather(
                    self._send(url, entries[:half]), self._send(url, entries[half:])
                )
                return
            for entry in entries:
                _answer(entry, EntryOutcome(False, reason=exc.reason))
            return
        for i, entry in enumerate(entries):
            key = str(i)
            if key in result.ok:
                _answer(entry, EntryOutcome(True, message_id=result.ok[key]))
            else:
                reason = result.failed.get(key, "the queue did not report this entry")
                _answer(entry, EntryOutcome(False, reason=reason))


def _answer(entry: _Entry, outcome: EntryOutcome) -> None:
    if not entry.future.done():
        entry.future.set_result(outcome)
