"""api.enqueue.batcher's Nagle rule, against a queue client that answers when the test says so.

While `max_calls` calls to a queue are under way, a new partial batch does not start a timer:
it waits for one of those calls to end and then goes at once. No time is asserted; the sleeps
only let the event loop run the linger timers (1 ms) that are due.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from api.enqueue.batcher import SendBatcher
from gomailpy.queues.sqs import BatchResult


class GatedQueues:
    """send_batch waits for `gate`; records the entry count of every call."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls: list[int] = []

    async def send_batch(self, url: str, entries: Sequence[tuple[str, str]]) -> BatchResult:
        self.calls.append(len(entries))
        await self.gate.wait()
        result = BatchResult()
        for entry_id, _ in entries:
            result.ok[entry_id] = f"sqs-{entry_id}"
        return result


async def test_a_partial_batch_waits_for_the_call_under_way_then_goes_at_once() -> None:
    queues = GatedQueues()
    batcher = SendBatcher(queues, linger_s=0.001, max_calls=1)  # type: ignore[arg-type]
    first = asyncio.create_task(batcher.send("q", "a"))
    await asyncio.sleep(0.02)  # its linger passed: its call is under way (and held)
    assert queues.calls == [1]

    later = [asyncio.create_task(batcher.send("q", body)) for body in "bcd"]
    await asyncio.sleep(0.02)  # a linger would have passed: they wait for the call instead
    assert queues.calls == [1]

    queues.gate.set()  # the call ends: the three go out together
    outcomes = await asyncio.gather(first, *later)
    assert queues.calls == [1, 3]
    assert all(outcome.ok for outcome in outcomes)
    await batcher.aclose()


async def test_a_quiet_queue_sends_after_its_linger() -> None:
    queues = GatedQueues()
    queues.gate.set()
    batcher = SendBatcher(queues, linger_s=0.001, max_calls=2)  # type: ignore[arg-type]
    outcomes = [await batcher.send("q", body) for body in "abc"]  # one at a time
    assert queues.calls == [1, 1, 1]
    assert all(outcome.ok for outcome in outcomes)
    await batcher.aclose()
