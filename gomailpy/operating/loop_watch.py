"""The event loop's own tail: how late it runs a timer, and how long garbage collections stop it.

    async with watch_event_loop():     # the API's cleanup_ctx, a pipeline node's run
        ...

`freeze_heap()`, once a process has started, moves what it built (modules, settings, clients)
out of the collector's sight (`gc.freeze`) and makes the youngest generation larger: under
`bench.api_throughput` the API otherwise collected ~115 times a second and its full
collections, walking every object since startup, stopped the loop for up to 50 ms, which was
the API's p99 at half load (bench/README.md).

A task sleeps `interval_s` again and again and records how much later than asked it woke up
(`gomailpy_event_loop_lag_seconds`): that is the time some callback held the loop, which every
request waiting on the loop pays too. Collections are timed from `gc.callbacks`
(`gomailpy_gc_pause_seconds{generation}`). Both are cheap: ten timers a second, two clock reads
per collection.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

from gomailpy import metrics

LAG_INTERVAL_S = 0.1
# Allocations between young collections (CPython's default: 700). A request allocates a few
# hundred objects, nearly all freed by reference counting: at 700 the collector ran every two
# or three requests for nothing.
GEN0_THRESHOLD = 20_000


def freeze_heap(gen0_threshold: int = GEN0_THRESHOLD) -> None:
    """Collect once, freeze what survives (startup's objects: never collected again, never
    walked by a full collection again) and raise the youngest generation's threshold."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


async def _measure_lag(interval_s: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        metrics.EVENT_LOOP_LAG.observe(max(0.0, loop.time() - asked))


class _GcTimer:
    """A gc.callbacks entry timing each collection."""

    def __init__(self) -> None:
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            pause = time.perf_counter() - self._started
            metrics.GC_PAUSE.labels(str(info.get("generation", ""))).observe(pause)
            self._started = 0.0


@contextlib.asynccontextmanager
async def watch_event_loop(interval_s: float = LAG_INTERVAL_S) -> AsyncIterator[None]:
    """Record the loop's lag every `interval_s` (default 0.1 s) and every GC pause, while open."""
    timer = _GcTimer()
    gc.callbacks.append(timer)
    task = asyncio.create_task(_measure_lag(interval_s), name="gomailpy-loop-watch")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(timer)
