"""gomailpy.batching: items from concurrent callers share calls; each caller gets exactly its
items' outcomes, a refused entry fails only its item, nothing is sent twice or lost."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from api.views.events import EventsSink
from gomailpy.batching import Batcher, all_or_first_error, settled
from gomailpy.errors import QueueError
from gomailpy.events import Event, EventType, iso
from gomailpy.queues.sqs import BatchResult
from gomailpy.webhooks.outbox import Outbox
from tests.support import make_settings


class Server:
    """A batch call that records what each call carried; items named bad-* are refused one by
    one, a call carrying boom-* fails whole; `gate` holds calls until it is set."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.under_way = 0
        self.most_under_way = 0

    async def send(self, items: list[str]) -> list[str | BaseException]:
        self.calls.append(list(items))
        self.under_way += 1
        self.most_under_way = max(self.most_under_way, self.under_way)
        try:
            await self.gate.wait()
        finally:
            self.under_way -= 1
        if any(i.startswith("boom") for i in items):
            raise QueueError("q", "send_message_batch", "the call failed")
        return [
            QueueError("q", "send_message_batch", f"{i} refused")
            if i.startswith("bad")
            else i.upper()
            for i in items
        ]


async def test_concurrent_callers_share_calls_and_get_their_own_results() -> None:
    server = Server()
    batcher: Batcher[str, str] = Batcher(server.send, size=10, linger_s=0.01)
    results = await asyncio.gather(*(batcher.submit(f"m{i}") for i in range(25)))
    assert results == [f"M{i}" for i in range(25)]
    assert sorted(len(c) for c in server.calls) == [5, 10, 10]  # 3 calls, not 25
    sent = Counter(i for c in server.calls for i in c)
    assert set(sent.values()) == {1} and len(sent) == 25  # each once


async def test_a_refused_entry_fails_exactly_its_item() -> None:
    server = Server()
    batcher: Batcher[str, str] = Batcher(server.send, size=10)
    futures = batcher.submit_many(["a", "bad-b", "c"])
    results = await settled(futures)
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], QueueError) and "bad-b refused" in str(results[1])
    assert len(server.calls) == 1
    # another caller's items in the same call are not touched by it
    one, two = await asyncio.gather(
        settled(batcher.submit_many(["x", "bad-y"])), settled(batcher.submit_many(["z"]))
    )
    assert one[0] == "X" and isinstance(one[1], QueueError) and two == ["Z"]
    with pytest.raises(QueueError, match="bad-q refused"):
        await all_or_first_error(batcher.submit_many(["p", "bad-q"]))


async def test_a_failed_call_fails_its_items_only() -> None:
    server = Server()
    batcher: Batcher[str, str] = Batcher(server.send, size=2)
    results = await settled(batcher.submit_many(["boom", "a", "b", "c"]))
    # calls of 2: [boom, a] fails whole, [b, c] goes through
    assert [type(r) for r in results[:2]] == [QueueError, QueueError]
    assert results[2:] == ["B", "C"]


async def test_partial_batches_wait_for_a_free_call_slot_full_ones_do_not() -> None:
    server = Server()
    server.gate.clear()
    batcher: Batcher[str, str] = Batcher(server.send, size=10, max_calls=1)
    first = batcher.submit_many(["a"])
    await asyncio.sleep(0.01)
    assert server.calls == [["a"]]  # quiet: it left after its linger (one turn of the loop)
    later = batcher.submit_many(["b", "c"])
    await asyncio.sleep(0.01)
    assert server.calls == [["a"]]  # a partial batch waits for the call under way
    full = batcher.submit_many([f"f{i}" for i in range(10)])
    await asyncio.sleep(0.01)
    # ten pending make a full batch: it leaves at once, the two waiting at its head
    assert server.calls[1] == ["b", "c", *[f"f{i}" for i in range(8)]]
    server.gate.set()
    assert await all_or_first_error(first + later + full) == ["A", "B", "C"] + [
        f"F{i}" for i in range(10)
    ]
    assert sorted(i for c in server.calls for i in c) == sorted(
        ["a", "b", "c", *[f"f{i}" for i in range(10)]]
    )


async def test_a_key_is_never_twice_in_one_call_and_keeps_its_order() -> None:
    server = Server()
    batcher: Batcher[str, str] = Batcher(server.send, size=10, key=lambda i: i[0])
    assert await all_or_first_error(batcher.submit_many(["a1", "b1", "a2", "c1", "a3"])) == [
        "A1",
        "B1",
        "A2",
        "C1",
        "A3",
    ]
    for call in server.calls:
        assert len({i[0] for i in call}) == len(call)
    order = [i for c in server.calls for i in c if i.startswith("a")]
    assert order == ["a1", "a2", "a3"]


async def test_a_cancelled_caller_does_not_take_its_item_back() -> None:
    server = Server()
    server.gate.clear()
    batcher: Batcher[str, str] = Batcher(server.send, size=10)
    waiting = asyncio.create_task(batcher.submit("a"))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    server.gate.set()
    await batcher.drain()
    assert server.calls == [["a"]]  # sent once, not lost, not sent again


async def test_a_send_that_returns_the_wrong_number_of_outcomes_fails_its_items() -> None:
    async def short(items: list[str]) -> list[str | BaseException]:
        return items[:-1]

    batcher: Batcher[str, str] = Batcher(short, size=10)
    results = await settled(batcher.submit_many(["a", "b"]))
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_a_call_carries_at_most_max_weight_or_one_heavier_item() -> None:
    server = Server()
    batcher: Batcher[str, str] = Batcher(server.send, size=10, weight=len, max_weight=6)
    items = ["aa", "bb", "cc", "dddddddd", "e"]
    assert await all_or_first_error(batcher.submit_many(items)) == [i.upper() for i in items]
    assert server.calls == [["aa", "bb", "cc"], ["dddddddd"], ["e"]]


# -- where gomailpy batches: the webhook outbox, the API's provider event posts ---------------


class RefusingQueues:
    """A queue client whose SendMessageBatch refuses every body containing `refuse`."""

    def __init__(self, refuse: str) -> None:
        self.refuse = refuse
        self.calls: list[list[str]] = []

    async def resolve(self, name: str) -> str:
        return f"http://queue.invalid/{name}"

    async def send_batch(self, url: str, entries: list[tuple[str, str]]) -> BatchResult:
        self.calls.append([body for _, body in entries])
        result = BatchResult()
        for entry_id, body in entries:
            if self.refuse in body:
                result.failed[entry_id] = "InternalError: refused"
            else:
                result.ok[entry_id] = f"id-{entry_id}"
        return result


def delivered(n: int) -> Event:
    return Event(
        id=f"ev-{n}",
        message_id=f"m-{n}",
        recipient=f"r{n}@example.org",
        provider="ses",
        type=EventType.DELIVERED,
        at=iso(1_800_000_000 + n),
    )


async def test_webhook_publishes_share_calls_and_a_refused_delivery_fails_only_its_publish() -> (
    None
):
    settings = make_settings(
        "http://127.0.0.1:1",
        webhooks={
            "enabled": True,
            "allow_loopback_targets": True,
            "endpoints": [{"name": "app", "url": "http://127.0.0.1:9/hook"}],
            "secrets": '{"app": "whsec_' + "A" * 32 + '"}',
        },
    )
    queues = RefusingQueues(refuse="m-3")
    outbox = Outbox(settings, queues)  # type: ignore[arg-type]
    outcomes = await asyncio.gather(
        *(outbox.publish([delivered(n)]) for n in range(6)), return_exceptions=True
    )
    assert outcomes[:3] == [1, 1, 1] and outcomes[4:] == [1, 1]
    assert isinstance(outcomes[3], QueueError)  # refused twice (a retry): only its publish fails
    assert len(queues.calls[0]) == 6  # six publishes, one call
    assert queues.calls[1:] == [[b for b in queues.calls[0] if "m-3" in b]]  # the retry


async def test_provider_event_posts_share_calls_and_a_refused_body_fails_only_its_post() -> None:
    sink = EventsSink(verifier=None)
    sink.queues = RefusingQueues(refuse="bad")  # type: ignore[assignment]
    sink.queue = "events"
    outcomes = await asyncio.gather(
        sink.put([{"event": "delivered", "n": 1}], 1.0),
        sink.put([{"event": "bad"}], 1.0),
        sink.put([{"event": "delivered", "n": 2}], 1.0, "sg2"),
        return_exceptions=True,
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], QueueError)
    assert len(sink.queues.calls) == 1 and len(sink.queues.calls[0]) == 3  # type: ignore[attr-defined]
