"""Reading one iteration's pool: estimate every queue's depth, then ⌈depth/10⌉ batch readers.

- A queue with visible messages gets ⌈visible/10⌉ concurrent receives (SQS hands out at most 10
  per call), at most `max_readers_per_queue`, and never more in all than the node has room for
  (`capacity`, in messages): gomail could start 12,001 readers for one deep queue.
- Those receives wait at most 1 s: the depth is an estimate, and another node may have taken the
  messages since, so a reader must not sit in a 20 s long poll while the pool is ready.
- When every queue looks empty, one long-polling receive per queue waits in SQS for mail (so an
  idle node makes one call per queue per `wait_time_s`, instead of spinning). As soon as one of
  them brings messages, the others get a moment to finish and are then cancelled, so mail on
  one queue is not held up by the empty ones. (A receive cancelled just as SQS answered leaves
  its messages invisible until their visibility timeout: late, never lost.)
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from gomailpy import metrics
from gomailpy.errors import QueueError
from gomailpy.queue import MAX_BATCH, QueueClient, QueueDepth, ReceivedMessage, queue_name

log = logging.getLogger("gomailpy.pipeline")

BUSY_WAIT_S = 1
IDLE_LINGER_S = 0.05


@dataclass(frozen=True, slots=True)
class Pool:
    messages: list[ReceivedMessage]
    depths: dict[str, QueueDepth]  # per queue URL, for the queues that answered
    unreachable: list[str]  # queue URLs whose depth or receive failed


def readers_per_queue(visible: dict[str, int], max_per_queue: int, capacity: int) -> dict[str, int]:
    """How many receives to start per queue, fitting `capacity` messages in all."""
    wanted = {url: min(max_per_queue, math.ceil(n / MAX_BATCH)) for url, n in visible.items() if n}
    budget = max(1, capacity // MAX_BATCH)
    total = sum(wanted.values())
    if total <= budget:
        return wanted
    # Scale down, keeping at least one reader per non-empty queue while the budget allows.
    scaled = {url: max(1, n * budget // total) for url, n in wanted.items()}
    while sum(scaled.values()) > budget and any(n > 1 for n in scaled.values()):
        deepest = max(scaled, key=lambda url: scaled[url])
        scaled[deepest] -= 1
    return scaled


async def estimate_depths(
    queues: QueueClient, urls: Sequence[str]
) -> tuple[dict[str, QueueDepth], list[str]]:
    answers = await asyncio.gather(*(queues.depth(url) for url in urls), return_exceptions=True)
    depths: dict[str, QueueDepth] = {}
    unreachable: list[str] = []
    for url, answer in zip(urls, answers, strict=True):
        if isinstance(answer, QueueDepth):
            depths[url] = answer
            metrics.QUEUE_VISIBLE.labels(queue_name(url)).set(answer.visible)
            metrics.QUEUE_IN_FLIGHT.labels(queue_name(url)).set(answer.in_flight)
        elif isinstance(answer, QueueError):
            unreachable.append(url)
            log.warning("%s", answer, extra={"queue": queue_name(url)})
        elif isinstance(answer, BaseException):
            raise answer
    return depths, unreachable


async def _receive(
    queues: QueueClient, url: str, wait_s: int, max_messages: int, failed: list[str]
) -> list[ReceivedMessage]:
    try:
        messages = await queues.receive(url, max_messages=max_messages, wait_time_s=wait_s)
    except QueueError as exc:
        log.warning("%s", exc, extra={"queue": queue_name(url)})
        failed.append(url)
        return []
    if messages:
        metrics.MESSAGES_RECEIVED.labels(queue_name(url)).inc(len(messages))
    return messages


async def read_pool(
    queues: QueueClient,
    urls: Sequence[str],
    *,
    capacity: int,
    max_readers_per_queue: int,
    idle_wait_s: int,
) -> Pool:
    depths, unreachable = await estimate_depths(queues, urls)
    failed: list[str] = []
    plan = readers_per_queue(
        {url: d.visible for url, d in depths.items()}, max_readers_per_queue, capacity
    )
    if plan:
        left = capacity
        calls = []
        for url, count in plan.items():
            for _ in range(count):
                take = max(1, min(MAX_BATCH, left))
                left -= take
                calls.append(_receive(queues, url, BUSY_WAIT_S, take, failed))
        batches = await asyncio.gather(*calls)
        messages = [m for batch in batches for m in batch]
    else:
        messages = await _idle_poll(queues, list(depths), idle_wait_s, capacity, failed)
    return Pool(messages, depths, unreachable + failed)


async def _idle_poll(
    queues: QueueClient, urls: list[str], wait_s: int, capacity: int, failed: list[str]
) -> list[ReceivedMessage]:
    if not urls:
        return []
    take = max(1, min(MAX_BATCH, capacity))
    tasks = [asyncio.create_task(_receive(queues, url, wait_s, take, failed)) for url in urls]
    messages: list[ReceivedMessage] = []
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                messages += task.result()
            if messages and pending:
                done, pending = await asyncio.wait(pending, timeout=IDLE_LINGER_S)
                for task in done:
                    messages += task.result()
                break
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return messages
