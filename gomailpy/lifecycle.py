"""Resources open one way: every class that owns one (a client, a background task, calls in
flight) is a one-shot async context manager.

    async with QueueClient(settings) as queues:         # opens its SQS client
        ...                                             # closed on the way out: aclose()

A component holding several enters each on its own `AsyncExitStack`; `open_<thing>(stack,
settings)` builds the configured one and does that (`open_aws_client`, `open_claim_check`,
`open_delivery_store`). No resource is entered twice or reopened once closed (httpx does the same).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any, Self


class AsyncResource:
    """Base of a one-shot async context manager: `_start` on entering, `_stop` once on `aclose`.

    `aclose()` may also be called without entering (it then stops what the object started on
    its own, such as calls in flight) and more than once; only the first call does anything.
    """

    _state = "new"

    async def _start(self) -> None:
        """Open what entering opens; nothing by default."""

    async def _stop(self) -> None:
        """Close what this object owns; nothing by default."""

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(f"a {type(self).__name__} can be opened only once")
        self._state = "open"
        await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        await self._stop()


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel the background `tasks` and wait until each has ended: what they hold is released
    before the caller closes what they use. Their cancellation is expected, not raised."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
