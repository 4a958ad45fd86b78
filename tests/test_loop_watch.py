"""gomailpy.operating.loop_watch: the event loop's lag and GC pauses become metrics."""

from __future__ import annotations

import asyncio
import gc
import time

from gomailpy.metrics import sample
from gomailpy.operating.loop_watch import watch_event_loop


async def test_a_callback_holding_the_loop_shows_as_lag() -> None:
    before = sample("gomailpy_event_loop_lag_seconds_sum")
    count_before = sample("gomailpy_event_loop_lag_seconds_count")
    async with watch_event_loop(interval_s=0.01):
        await asyncio.sleep(0.02)
        time.sleep(0.1)  # holds the loop: the watcher's timer fires ~0.1 s late
        await asyncio.sleep(0.03)
    assert sample("gomailpy_event_loop_lag_seconds_count") > count_before
    assert sample("gomailpy_event_loop_lag_seconds_sum") - before >= 0.05


async def test_collections_are_timed_while_watched_and_not_after() -> None:
    labels = {"generation": "2"}
    before = sample("gomailpy_gc_pause_seconds_count", labels)
    async with watch_event_loop():
        gc.collect()
    assert sample("gomailpy_gc_pause_seconds_count", labels) == before + 1
    gc.collect()
    assert sample("gomailpy_gc_pause_seconds_count", labels) == before + 1
