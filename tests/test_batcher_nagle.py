"""api.enqueue.batcher's natural batching, against a queue client that answers when the test says.

A call leaves whenever one of a queue's `max_calls` slots is free, with what is waiting (up to
10 entries); what arrives while every slot is busy fills the next calls, and a full call leaves
at once in one of `full_calls` further slots. The client here holds
each call until the test releases it, so the counts below follow from the order of events
alone: `settle()` only lets the event loop run what is ready, and no time is asserted.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import pytest

from api.enqueue.batcher import EntryOutcome, SendBatcher
from gomailpy.errors import QueueError
from gomailpy.queues.sqs import BatchResult


class HeldQueues:
    """send_batch waits until the test releases that call (`release`); records every call's
    bodies. A body starting with "bad" is reported Failed in its call (a partial failure, as
    SQS reports one); a call whose number is in `fail_calls` fails as a whole (a 5xx)."""

    def __init__(self, *, held: bool = True, fail_calls: Sequence[int] = ()) -> None:
        self.calls: list[list[str]] = []
        self._gates: list[asyncio.Event] = []
        self._held = held
        self._fail_calls = set(fail_calls)

    async def send_batch(self, url: str, entries: Sequence[tuple[str, str]]) -> BatchResult:
        number = len(self.calls)
        self.calls.append([body for _, body in entries])
        gate = asyncio.Event()
        self._gates.append(gate)
        if not self._held:
            gate.set()
        await gate.wait()
        if number in self._fail_calls:
            raise QueueError("q", "SendMessageBatch", "ServiceUnavailable: try again")
        result = BatchResult()
        for entry_id, body in entries:
            if body.startswith("bad"):
                result.failed[entry_id] = "InternalError: this entry only"
            else:
                result.ok[entry_id] = f"sqs-{number}-{entry_id}"
        return result

    def release(self, number: int) -> None:
        self._gates[number].set()

    def sizes(self) -> list[int]:
        return [len(bodies) for bodies in self.calls]


async def settle() -> None:
    """Let the loop run everything that is ready (calls starting, callers resuming)."""
    for _ in range(10):
        await asyncio.sleep(0)


def send_all(batcher: SendBatcher, bodies: Sequence[str]) -> list[asyncio.Task[EntryOutcome]]:
    return [asyncio.create_task(batcher.send("q", body)) for body in bodies]


async def test_a_lone_request_goes_at_once_in_a_call_of_its_own() -> None:
    queues = HeldQueues(held=False)
    batcher = SendBatcher(queues)  # type: ignore[arg-type]
    outcomes = [await batcher.send("q", body) for body in "abc"]  # one at a time
    assert queues.sizes() == [1, 1, 1]  # nothing waited for company
    assert [outcome.message_id for outcome in outcomes] == ["sqs-0-0", "sqs-1-0", "sqs-2-0"]
    await batcher.aclose()


async def test_what_arrives_while_the_slots_are_busy_fills_the_next_calls() -> None:
    queues = HeldQueues()
    batcher = SendBatcher(queues, max_calls=2, full_calls=0)  # type: ignore[arg-type]
    first = send_all(batcher, ["a"])
    await settle()
    second = send_all(batcher, ["b"])
    await settle()
    assert queues.sizes() == [1, 1]  # both slots busy, each with what was waiting: one entry

    later = [f"e{i}" for i in range(25)]
    waiting = send_all(batcher, later)
    await settle()
    assert queues.sizes() == [1, 1]  # they wait for a slot, not for a timer

    queues.release(0)
    await settle()
    assert queues.sizes() == [1, 1, 10]  # a slot freed: a full call at once
    queues.release(1)
    await settle()
    assert queues.sizes() == [1, 1, 10, 10]
    queues.release(2)
    await settle()
    assert queues.sizes() == [1, 1, 10, 10, 5]
    queues.release(3)
    queues.release(4)

    outcomes = await asyncio.gather(*first, *second, *waiting)
    assert all(outcome.ok for outcome in outcomes)
    assert len({outcome.message_id for outcome in outcomes}) == 27  # each its own entry's id
    sent = Counter(body for bodies in queues.calls for body in bodies)
    assert sent == Counter(["a", "b", *later])  # each sent once
    await batcher.aclose()


async def test_full_calls_leave_at_once_beyond_the_slots_and_partial_ones_wait() -> None:
    queues = HeldQueues()
    batcher = SendBatcher(queues, max_calls=2, full_calls=2)  # type: ignore[arg-type]
    first = send_all(batcher, ["a"])
    await settle()
    second = send_all(batcher, ["b"])
    await settle()
    assert queues.sizes() == [1, 1]  # both slots busy

    later = [f"e{i}" for i in range(35)]
    waiting = send_all(batcher, later)
    await settle()
    # Two full calls go in the further slots at once; the 15 left wait (one call's worth is
    # full, but both further slots are taken).
    assert queues.sizes() == [1, 1, 10, 10]
    queues.release(2)  # a further slot frees: the next full call takes it
    await settle()
    assert queues.sizes() == [1, 1, 10, 10, 10]
    queues.release(3)  # 5 left: not full, so they wait for one of the two slots
    await settle()
    assert queues.sizes() == [1, 1, 10, 10, 10]
    queues.release(0)
    await settle()
    assert queues.sizes() == [1, 1, 10, 10, 10, 5]
    for number in (1, 4, 5):
        queues.release(number)

    outcomes = await asyncio.gather(*first, *second, *waiting)
    assert all(outcome.ok for outcome in outcomes)
    assert len({outcome.message_id for outcome in outcomes}) == 37
    sent = Counter(body for bodies in queues.calls for body in bodies)
    assert sent == Counter(["a", "b", *later])  # each sent once, in arrival order by call
    assert [body for bodies in queues.calls[2:] for body in bodies] == later
    await batcher.aclose()


async def test_requests_of_one_pass_of_the_loop_share_a_call() -> None:
    queues = HeldQueues(held=False)
    batcher = SendBatcher(queues, max_calls=2)  # type: ignore[arg-type]
    outcomes = await asyncio.gather(*send_all(batcher, [f"e{i}" for i in range(7)]))
    assert queues.sizes() == [7]  # not a first call of one and the rest after it
    assert all(outcome.ok for outcome in outcomes)
    await batcher.aclose()


async def test_a_partial_failure_answers_exactly_the_entries_it_names() -> None:
    queues = HeldQueues(held=False)
    batcher = SendBatcher(queues)  # type: ignore[arg-type]
    bodies = ["ok0", "bad1", "ok2", "ok3", "bad4", "ok5"]
    outcomes = await asyncio.gather(*send_all(batcher, bodies))
    assert queues.sizes() == [6]  # one shared call
    assert [outcome.ok for outcome in outcomes] == [not b.startswith("bad") for b in bodies]
    assert outcomes[1].reason == outcomes[4].reason == "InternalError: this entry only"
    assert [o.message_id for o in outcomes if o.ok] == ["sqs-0-0", "sqs-0-2", "sqs-0-3", "sqs-0-5"]
    await batcher.aclose()


async def test_a_failing_call_fails_its_own_entries_only_and_nothing_is_sent_twice() -> None:
    queues = HeldQueues(fail_calls=[1])
    batcher = SendBatcher(queues, max_calls=1)  # type: ignore[arg-type]
    first = send_all(batcher, [f"a{i}" for i in range(3)])
    await settle()
    second = send_all(batcher, [f"b{i}" for i in range(4)])  # waits: the one slot is busy
    await settle()
    queues.release(0)
    await settle()
    third = send_all(batcher, [f"c{i}" for i in range(2)])  # waits for the failing call
    await settle()
    queues.release(1)
    await settle()
    queues.release(2)

    firsts = await asyncio.gather(*first)
    seconds = await asyncio.gather(*second)
    thirds = await asyncio.gather(*third)
    assert queues.sizes() == [3, 4, 2]
    assert all(o.ok for o in firsts) and all(o.ok for o in thirds)
    assert [o.reason for o in seconds] == ["ServiceUnavailable: try again"] * 4
    sent = Counter(body for bodies in queues.calls for body in bodies)
    assert set(sent.values()) == {1}  # the batcher retries nothing itself: the gateway decides
    await batcher.aclose()


async def test_a_linger_lets_a_free_slot_fill_and_a_full_call_goes_at_once() -> None:
    queues = HeldQueues(held=False)
    batcher = SendBatcher(queues, linger_s=60)  # type: ignore[arg-type]
    full = send_all(batcher, [f"e{i}" for i in range(10)])
    outcomes = await asyncio.gather(*full)  # would wait a minute if a full call lingered
    assert queues.sizes() == [10]
    assert all(outcome.ok for outcome in outcomes)

    lingering = send_all(batcher, ["x"])
    await settle()
    lingering += send_all(batcher, ["y", "z"])  # a later pass: it joins the lingering call
    await settle()
    assert queues.sizes() == [10]
    await batcher.aclose()  # closing sends what waits, linger or not
    assert queues.sizes() == [10, 3]
    assert all(task.result().ok for task in lingering)


@pytest.mark.parametrize("max_calls", [0, -1])
def test_at_least_one_call_slot(max_calls: int) -> None:
    with pytest.raises(ValueError):
        SendBatcher(HeldQueues(), max_calls=max_calls)  # type: ignore[arg-type]


def test_no_negative_full_call_slots() -> None:
    with pytest.raises(ValueError):
        SendBatcher(HeldQueues(), full_calls=-1)  # type: ignore[arg-type]
