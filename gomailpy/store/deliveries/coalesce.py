"""Writes from many concurrent callers, coalesced into full BatchWriteItem calls.

    writes = WriteCoalescer(flush, size=25, linger_s=0.002)
    await writes.put(items)        # returns once every item of `items` is written (or raises)

A node settles its messages in small chunks as their sends finish, each chunk writing its
records before it deletes: one call per chunk of 10 would be 0.1 calls per email and a queue
of small calls at the store. Chunks that settle together share calls instead, up to `size`
items each; a call leaves once full or `linger_s` after its first item. Every caller waits for
the calls that carry its items, and gets their error if one fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Flush = Callable[[list[Any]], Awaitable[None]]


class WriteCoalescer:
    def __init__(self, flush: Flush, *, size: int, linger_s: float, key: str = "pk") -> None:
        self._flush = flush
        self._size = size
        self._linger_s = linger_s
        self._key = key
        self._items: list[Any] = []
        self._keys: set[Any] = set()
        self._done: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def put(self, items: Sequence[Any]) -> None:
        waits: list[asyncio.Future[None]] = []
        for item in items:
            key = str(item["PutRequest"]["Item"][self._key])
            if key in self._keys:  # one call may not hold a key twice: this one leaves first
                self._send()
            if self._done is None:
                self._done = asyncio.get_running_loop().create_future()
                self._timer = asyncio.get_running_loop().call_later(self._linger_s, self._send)
            self._items.append(item)
            self._keys.add(key)
            if not waits or waits[-1] is not self._done:
                waits.append(self._done)
            if len(self._items) >= self._size:
                self._send()
        for done in waits:
            await asyncio.shield(done)

    def _send(self) -> None:
        if self._done is None:
            return
        items, done = self._items, self._done
        self._items, self._keys, self._done = [], set(), None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = asyncio.create_task(self._call(items, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, items: list[Any], done: asyncio.Future[None]) -> None:
        try:
            await self._flush(items)
        except BaseException as exc:
            if not done.done():
                done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not done.done():
                done.set_result(None)
