"""Reading one iteration's pool: estimate every queue's depth, then ⌈depth/10⌉ batch readers.

- A queue with visible messages gets ⌈visible/10⌉ concurrent receives (SQS hands out at most 10
  per call), at most `max_readers_per_queue`, and never more in all than the node has room for
  (`capacity`, in messages): gomail could start 12,001 readers for one deep queue.
- While every receive of a queue comes back full, the next iteration reads it again at once,
  without asking for its depth first.
- Each receive's messages go on (`on_batch`, the node's dispatch) as soon as that receive
  answered, not when the pool's slowest one did: one slow answer (the queue server's tail,
  hundreds of ms under load) no longer holds the others' messages in the node, unsent.
- Those receives wait at most 1 s: the depth is an estimate, and another node may have taken the
  messages since, so a reader must not sit in a 20 s long poll while the pool is ready.
- When every queue looks empty, one long-polling receive per queue waits in SQS for mail (so an
  idle node makes one call per queue per `wait_time_s`, instead of spinning). As soon as one of
  them brings messages the iteration goes on with those; the others stay open and are collected
  by a later iteration. They are never cancelled while the node runs: SQS goes on serving a
  cancelled long poll, and the mail it hands to the closed connection stays invisible, unsent,
  for a whole visibility timeout. On pause and stop they get their wait to answer (`aclose`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gomailpy import metrics
from gomailpy.errors import QueueError
from gomailpy.queues.sqs import MAX_BATCH, QueueClient, QueueDepth, ReceivedMessage, queue_name

log = logging.getLogger("gomailpy.pipeline")

BUSY_WAIT_S = 1
OnReceive = Callable[[list[ReceivedMessage]], None]
OnBatch = Callable[[list[ReceivedMessage]], None]
IDLE_LINGER_S = 0.05
POLL_ANSWER_SLACK_S = 2.0  # beyond WaitTimeSeconds: the answer's round trip


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
    queues: QueueClient,
    url: str,
    wait_s: int,
    max_messages: int,
    failed: list[str],
    on_receive: OnReceive | None = None,
) -> list[ReceivedMessage]:
    try:
        messages = await queues.receive(url, max_messages=max_messages, wait_time_s=wait_s)
    except QueueError as exc:
        log.warning("%s", exc, extra={"queue": queue_name(url)})
        failed.append(url)
        return []
    if on_receive is not None and messages:
        on_receive(messages)
    if messages:
        metrics.MESSAGES_RECEIVED.labels(queue_name(url)).inc(len(messages))
    return messages


class QueueReader:
    """Reads one iteration's pool at a time; owns the idle long polls that outlive an iteration."""

    def __init__(
        self,
        queues: QueueClient,
        *,
        max_readers_per_queue: int,
        idle_wait_s: int,
        on_receive: OnReceive | None = None,
    ) -> None:
        self._queues = queues
        self._on_receive = on_receive  # told of every message as its receive answers
        self._max_readers = max_readers_per_queue
        self._idle_wait_s = idle_wait_s
        self._polls: dict[str, asyncio.Task[list[ReceivedMessage]]] = {}  # queue URL -> poll
        self._failed: list[str] = []
        self._still_full: set[str] = set()

    async def read(
        self, urls: Sequence[str], capacity: int, on_batch: OnBatch | None = None
    ) -> Pool:
        """One pool of at most `capacity` messages. `on_batch`: given each busy receive's
        messages as soon as it answers (those are then not in the Pool)."""
        # A queue whose receives all came back full last time is still deep: skip asking for
        # its depth (a round trip before every read) and read it as hard as allowed.
        busy = {url: self._max_readers * MAX_BATCH for url in urls if url in self._still_full}
        depths, unreachable = await estimate_depths(
            self._queues, [url for url in urls if url not in busy]
        )
        self._failed = []
        plan = readers_per_queue(
            {**{url: d.visible for url, d in depths.items()}, **busy}, self._max_readers, capacity
        )
        messages = self._collect_polls()
        self._still_full = set()
        if plan:
            left = capacity - len(messages)
            calls = []
            urls_of_calls = []
            for url, count in plan.items():
                for _ in range(count):
                    take = max(1, min(MAX_BATCH, left))
                    left -= take
                    calls.append(
                        _receive(
                            self._queues, url, BUSY_WAIT_S, take, self._failed, self._on_receive
                        )
                    )
                    urls_of_calls.append((url, take))
            batches = await asyncio.gather(*(self._handed_on(call, on_batch) for call in calls))
            full: dict[str, bool] = {}
            for (url, take), (batch, handed_on) in zip(urls_of_calls, batches, strict=True):
                full[url] = full.get(url, True) and len(batch) == take == MAX_BATCH
                if not handed_on:
                    messages += batch
            self._still_full = {url for url, was_full in full.items() if was_full}
        elif not messages:
            messages = await self._idle_poll(list(depths), capacity)
        return Pool(messages, depths, unreachable + self._failed)

    @staticmethod
    async def _handed_on(
        call: Awaitable[list[ReceivedMessage]], on_batch: OnBatch | None
    ) -> tuple[list[ReceivedMessage], bool]:
        batch = await call
        if batch and on_batch is not None:
            on_batch(batch)
            return batch, True
        return batch, False

    @property
    def busy(self) -> bool:
        """Whether the last read found a queue where every receive came back full."""
        return bool(self._still_full)

    def _collect_polls(self) -> list[ReceivedMessage]:
        messages: list[ReceivedMessage] = []
        for url, task in list(self._polls.items()):
            if task.done():
                del self._polls[url]
                messages += task.result()
        return messages

    async def _idle_poll(self, urls: list[str], capacity: int) -> list[ReceivedMessage]:
        take = max(1, min(MAX_BATCH, capacity))
        for url in urls:
            if url not in self._polls:
                self._polls[url] = asyncio.create_task(
                    _receive(
                        self._queues, url, self._idle_wait_s, take, self._failed, self._on_receive
                    )
                )
        if not self._polls:
            return []
        await asyncio.wait(set(self._polls.values()), return_when=asyncio.FIRST_COMPLETED)
        messages = self._collect_polls()
        if messages and self._polls:
            # Others that answer at the same moment join this pool.
            await asyncio.wait(set(self._polls.values()), timeout=IDLE_LINGER_S)
            messages += self._collect_polls()
        return messages

    @property
    def open_polls(self) -> int:
        """How many idle long polls are waiting in SQS."""
        return sum(not task.done() for task in self._polls.values())

    def poll_answer_s(self) -> float:
        """How long an open long poll may still take to answer: its wait plus a round trip."""
        return self._idle_wait_s + POLL_ANSWER_SLACK_S

    async def aclose(self, wait_s: float = 0.0) -> list[ReceivedMessage]:
        """Stop the open long polls; return what they brought (the caller must release it).

        SQS (and LocalStack) keep serving a long poll after the client cancels it: mail that
        arrives in its remaining wait goes to a closed connection and stays invisible for a
        whole visibility timeout (aws-sdk-net#1680, aws-sdk-go-v2#2068). So the polls get up
        to `wait_s` to answer on their own first; only those still open then are cut."""
        open_polls = [task for task in self._polls.values() if not task.done()]
        if open_polls and wait_s > 0:
            _, still_open = await asyncio.wait(open_polls, timeout=wait_s)
            if still_open:
                log.warning(
                    "%d long polls still open after %.1f s: cut; mail they take waits a"
                    " visibility timeout",
                    len(still_open),
                    wait_s,
                )
        for task in self._polls.values():
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._polls.values(), return_exceptions=True)
        messages = [
            m
            for task in self._polls.values()
            if not task.cancelled() and task.exception() is None
            for m in task.result()
        ]
        self._polls.clear()
        return messages
