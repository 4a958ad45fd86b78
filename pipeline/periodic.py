"""A node's periodic refreshers (SES's quota, the operator's controls, the heartbeats) share one
life: refresh once on entry, so the first batch already sees the result, then again every
`every_s` in a task, until closed.

    class ControlPoller(PeriodicRefresh):
        failure = "reading the controls failed"
        async def refresh(self) -> None: ...
"""

from __future__ import annotations

import asyncio
import logging

from gomailpy.lifecycle import AsyncResource, cancel_and_wait

log = logging.getLogger("gomailpy.pipeline")


class PeriodicRefresh(AsyncResource):
    """Calls `refresh()` on entry and every `every_s` after; a one-shot async context manager.

    `refresh` handles the failures it expects (keeping the last value); anything else is logged
    as `failure` and the loop goes on: a refresher that stopped would freeze what it keeps fresh.
    """

    failure = "periodic refresh failed"

    def __init__(self, every_s: float) -> None:
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        raise NotImplementedError

    async def _start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop())

    async def _stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            try:
                await self.refresh()
            except Exception:
                log.exception(self.failure)
