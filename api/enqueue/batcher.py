"""Requests arriving together for the same queue share one SendMessageBatch call.

    batcher = SendBatcher(queues, linger_s=0.002)
    outcome = await batcher.send(url, body)      # this entry's own outcome, never the batch's
    if outcome.ok: ...                           # outcome.message_id
    else: ...                                    # outcome.reason: try the next queue or 503

The first entry for a queue opens a batch. While fewer than `max_calls` calls to that queue are
under way, it starts a short timer (`linger_s`) and the batch goes out when the timer fires;
otherwise it waits for one of those calls to finish (Nagle's rule, as group commit does): the
busier the queue, the fuller the batches, and a quiet queue costs one linger. A batch also goes
out once it holds `max_entries` (SQS allows 10) or when one more body would make it longer than
`max_bytes`. A fixed linger alone made half load dearer than full load: arrivals 2 ms apart
left in calls of one or two entries, and the queue server spent its CPU on calls rather than
emails (bench/README.md). Each caller waits for its own entry only:

- an entry the queue accepted answers `ok` with its SQS message id;
- an entry the queue refused in the batch (`Failed`) answers with that entry's reason only;
- a call refused as a whole for what it carried (a 4xx such as BatchRequestTooLong or
  InvalidMessageContents) is split in halves and sent again, down to single entries, so one bad
  entry cannot take the others down with it;
- a call that failed for the queue's sake (unreachable, timed out, missing queue, throttled, a
  5xx) fails every entry in it with that reason: each caller then moves on to its next queue on
  its own, exactly as it would have without batching. A timed-out call may still have been
  accepted, so an email can reach two queues: at least once, never at most once.

An entry whose caller was cancelled before its batch left is dropped, not sent. `linger_s == 0`
turns batching off: each entry is sent at once in a call of its own.
"""

from __future__ import annotations

import asyncio
import logging
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
class _Open:
    """The batch being filled for one queue."""

    entries: list[_Entry] = field(default_factory=list)
    size: int = 0
    timer: asyncio.TimerHandle | None = None


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
        linger_s: float,
        max_entries: int = MAX_BATCH,
        max_bytes: int = MAX_BATCH_BYTES,
        max_calls: int = 2,
    ) -> None:
        if not 1 <= max_entries <= MAX_BATCH:
            raise ValueError(f"max_entries must be 1..{MAX_BATCH}")
        self._max_calls = max_calls  # per queue, before a partial batch waits for one to end
        self._under_way: dict[str, int] = {}  # calls per queue URL
        self._queues = queues
        self._linger_s = linger_s
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._open: dict[str, _Open] = {}
        self._calls: set[asyncio.Task[None]] = set()

    async def send(self, url: str, body: str) -> EntryOutcome:
        """Queue `body` on `url` in the next batch; return this entry's own outcome.

        Raises nothing for a refusal (see `EntryOutcome`); cancelling the caller before the
        batch leaves drops the entry.
        """
        if self._linger_s <= 0 or self._max_entries == 1:
            return await self._send_alone(url, body)
        future: asyncio.Future[EntryOutcome] = asyncio.get_running_loop().create_future()
        entry = _Entry(body, len(body.encode("utf-8")), future)
        batch = self._open.get(url)
        if batch is not None and batch.entries and batch.size + entry.size > self._max_bytes:
            self._flush(url)
            batch = None
        if batch is None:
            batch = self._open[url] = _Open()
            if self._under_way.get(url, 0) < self._max_calls:
                batch.timer = asyncio.get_running_loop().call_later(
                    self._linger_s, self._flush, url
                )
        batch.entries.append(entry)
        batch.size += entry.size
        if len(batch.entries) >= self._max_entries:
            self._flush(url)
        return await future

    async def _stop(self) -> None:
        for url in list(self._open):
            self._flush(url)
        if self._calls:
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

    def _flush(self, url: str) -> None:
        batch = self._open.pop(url, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        # Callers cancelled while their entry waited are not sent: nobody would hear of it.
        entries = [entry for entry in batch.entries if not entry.future.done()]
        if not entries:
            return
        self._under_way[url] = self._under_way.get(url, 0) + 1
        task = asyncio.get_running_loop().create_task(self._call(url, entries))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        task.add_done_callback(lambda _: self._call_ended(url))

    def _call_ended(self, url: str) -> None:
        self._under_way[url] -= 1
        waiting = self._open.get(url)
        if waiting is not None and waiting.timer is None:  # it waited for this call: go now
            self._flush(url)

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
