"""Items from many concurrent callers, sent together: one call carries up to `size` of them.

    batcher = Batcher(send, size=10, max_calls=2, linger_s=0.002)
    result = await batcher.submit(item)          # this item's result, or this item's error
    futures = batcher.submit_many(items)         # one future per item, in order
    results = await settled(futures)             # each a result or the exception it failed with

`send(items)` makes one call for a batch and returns one outcome per item, in order: a result,
or an exception for an item the call refused (SQS's `Failed` entries, DynamoDB's unprocessed
items). Its raising fails every item of that call with its error. Each caller gets exactly
its items' outcomes: an entry refused in a shared call fails only the item it carried, never
its neighbours', and an item is sent once (a caller cancelled while waiting does not take its
item back: it goes, as it would have without the wait).

When a batch leaves (Nagle's rule, as TCP sends small segments): a full batch at once; a
partial one `linger_s` after its first item if fewer than `max_calls` calls are under way,
else when one of them ends. A quiet caller pays one linger; busy ones fill their batches
instead of queueing small calls at a server whose time is the bottleneck.

`weight(item)` with `max_weight`: a call carries items weighing at most that together (SQS
takes 256 KiB of bodies a call), or one heavier item alone.

`key(item)`: items one call may not hold twice (BatchWriteItem refuses a key twice in one
call): a later item with the key of one in the forming batch waits for the next call.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        size: int,
        max_calls: int = 2,
        linger_s: float = 0.0,
        key: Callable[[T], Hashable] | None = None,
        weight: Callable[[T], int] | None = None,
        max_weight: int = 0,
    ) -> None:
        if size < 1 or max_calls < 1:
            raise ValueError("size and max_calls must be at least 1")
        self._send = send
        self._size = size
        self._max_calls = max_calls
        self._linger_s = linger_s
        self._key = key
        self._weight = weight if max_weight > 0 else None
        self._max_weight = max_weight
        self._pending: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._lingered = False  # the first pending item has waited its linger
        self._calls = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def calls_under_way(self) -> int:
        return self._calls

    def submit_many(self, items: Sequence[T]) -> list[asyncio.Future[R]]:
        """Queue `items`; one future per item, in order (see the module's docstring)."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = []
        for item in items:
            future: asyncio.Future[R] = loop.create_future()
            self._pending.append((item, future))
            futures.append(future)
        if futures:
            self._schedule()
        return futures

    async def submit(self, item: T) -> R:
        """This item's result, or its error."""
        (future,) = self.submit_many([item])
        return await asyncio.shield(future)

    async def drain(self) -> None:
        """Send what is pending now and wait for every call under way to end."""
        self._lingered = True
        self._flush()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- when batches leave ------------------------------------------------------------------

    def _schedule(self) -> None:
        if self._full() or self._lingered:
            self._flush()
        if self._pending and self._timer is None:
            loop = asyncio.get_running_loop()
            if self._linger_s > 0:
                self._timer = loop.call_later(self._linger_s, self._linger_over)
            else:  # what other callers add in this turn of the loop goes along
                self._timer = loop.call_soon(self._linger_over)

    def _linger_over(self) -> None:
        self._timer = None
        self._lingered = True
        self._flush()

    def _full(self) -> bool:
        if len(self._pending) >= self._size:
            return True
        if self._weight is None:
            return False
        return sum(self._weight(item) for item, _ in self._pending) >= self._max_weight

    def _flush(self) -> None:
        while self._pending and (
            self._full() or (self._lingered and self._calls < self._max_calls)
        ):
            self._start(self._take())
        if not self._pending:
            self._lingered = False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        keys: set[Hashable] = set()
        later: deque[tuple[T, asyncio.Future[R]]] = deque()
        weighed = 0
        while self._pending and len(batch) < self._size:
            entry = self._pending[0]
            if self._weight is not None:
                weight = self._weight(entry[0])
                if batch and weighed + weight > self._max_weight:
                    break  # the next call takes it
                weighed += weight
            self._pending.popleft()
            key = None if self._key is None else self._key(entry[0])
            if key is not None and key in keys:
                later.append(entry)
            else:
                keys.add(key)
                batch.append(entry)
        self._pending.extendleft(reversed(later))  # they keep their place, first next time
        return batch

    def _start(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self._calls += 1
        task = asyncio.get_running_loop().create_task(self._call(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            try:
                outcomes = list(await self._send([item for item, _ in batch]))
                if len(outcomes) != len(batch):
                    raise RuntimeError(
                        f"batch send returned {len(outcomes)} outcomes for {len(batch)} items"
                    )
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                return
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        finally:
            self._calls -= 1
            if self._pending:  # waited for a call to end: a slot is free now
                self._lingered = True
                self._flush()


async def settled(futures: Sequence[asyncio.Future[R]]) -> list[R | BaseException]:
    """Each future's result or the exception it failed with, in order; waiting does not cancel
    them when the caller is cancelled."""
    if not futures:
        return []
    return list(await asyncio.shield(asyncio.gather(*futures, return_exceptions=True)))


async def all_or_first_error(futures: Sequence[asyncio.Future[R]]) -> list[R]:
    """Every future's result, or the first error among them once all are settled (so that no
    exception is left unretrieved)."""
    results = await settled(futures)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]
