"""pipeline.sending.inflight: the window sized by Little's law, and settling outcomes as sends
finish.

The window runs on a clock the test steps; the early settlement against a recording settlement
(what it was asked to settle, in which chunks). No test asserts a time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import pytest

from gomailpy.providers.base import Outcome, SendResult
from gomailpy.queues.sqs import ReceivedMessage
from pipeline.sending.inflight import HEADROOM, READ_ALLOWANCE_S, InFlightWindow, SettleAsTheyFinish
from pipeline.sending.settlement import Item, IterationReport
from tests.support import make_envelope


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def messages(count: int, start: int = 0) -> list[ReceivedMessage]:
    return [
        ReceivedMessage("q", f"m{i}", f"handle-{i}", "{}", 1) for i in range(start, start + count)
    ]


def test_window_starts_at_its_floor_and_never_passes_its_cap() -> None:
    clock = Clock()
    window = InFlightWindow(1000, floor=100, clock=clock)
    assert window.limit() == 100  # nothing measured yet
    assert window.room() == 100
    assert InFlightWindow(150).limit() == 150  # a floor above the cap is the cap

    # 4,000 messages/s, each sent in 1 s: Little's law wants 4,000, twice that with headroom.
    for second in range(3):
        batch = messages(4000, start=second * 4000)
        window.hold(batch)
        clock.now += 1.0
        window.observe_send(1.0)
        window.release(batch)
    assert window.limit() == 1000  # capped
    assert window.peak == 1000


@pytest.mark.parametrize(
    ("rate", "send_s", "expected"),
    [
        (1000, 0.15, 300),  # 100 ms providers (and a settle call): 2 x 1,000/s x 0.15 s
        (1000, 0.02, 100),  # instant providers: 40 wanted, the floor holds
        (200, 1.0, 400),  # slow providers, little traffic
    ],
)
def test_window_is_headroom_times_rate_times_service_time(
    rate: int, send_s: float, expected: int
) -> None:
    clock = Clock()
    window = InFlightWindow(10_000, floor=100, clock=clock)
    # Steady state: every 10 ms, rate/100 messages read, sent in `send_s` and settled at once.
    held: list[tuple[float, list[ReceivedMessage]]] = []
    for tick in range(500):
        batch = messages(rate // 100, start=tick * rate)
        window.hold(batch)
        held.append((clock.now + send_s, batch))
        clock.now = round(clock.now + 0.01, 6)
        while held and held[0][0] <= clock.now + 1e-9:
            window.observe_send(send_s)
            window.release(held.pop(0)[1])
    assert window.service_s == pytest.approx(send_s)
    assert window.hold_s == pytest.approx(send_s, abs=0.011)  # nothing waited
    assert window.rate is not None
    held_s = max(window.service_s, window.hold_s)
    assert window.limit() == max(100, math.ceil(HEADROOM * window.rate * held_s))
    assert window.limit() == pytest.approx(expected, rel=0.1)


def test_messages_waiting_in_the_node_grow_the_window_beyond_the_service_time() -> None:
    clock = Clock()
    window = InFlightWindow(10_000, floor=100, clock=clock)
    # Sent in 0.1 s, but each waits 0.5 s more inside the node before it is settled: held 0.6 s.
    held: list[tuple[float, list[ReceivedMessage]]] = []
    for tick in range(500):
        batch = messages(10, start=tick * 10)
        window.hold(batch)
        held.append((clock.now + 0.6, batch))
        clock.now = round(clock.now + 0.01, 6)
        while held and held[0][0] <= clock.now + 1e-9:
            window.observe_send(0.1)
            window.release(held.pop(0)[1])
    assert window.service_s == pytest.approx(0.1)
    assert window.hold_s == pytest.approx(0.6, abs=0.011)
    # 2 x 1,000/s x 0.6 s: the window keeps what is really held, with room to grow.
    assert window.limit() == pytest.approx(1200, rel=0.1)


@pytest.mark.parametrize(("senders", "expected"), [(None, 1200), (16, 32), (200, 400)])
def test_the_window_holds_no_more_than_the_lanes_can_send(
    senders: int | None, expected: int
) -> None:
    clock = Clock()
    window = InFlightWindow(10_000, floor=100, clock=clock, senders=senders)
    # As above: sent in 0.1 s, held 0.6 s. With 16 connections in all, a node sends at most
    # 160/s: twice 16 sends' worth of its service time is all it needs to hold (above its
    # floor, a guess made before anything was measured); held longer, they only wait in it.
    held: list[tuple[float, list[ReceivedMessage]]] = []
    for tick in range(500):
        batch = messages(10, start=tick * 10)
        window.hold(batch)
        held.append((clock.now + 0.6, batch))
        clock.now = round(clock.now + 0.01, 6)
        while held and held[0][0] <= clock.now + 1e-9:
            window.observe_send(0.1)
            window.release(held.pop(0)[1])
    assert window.limit() == pytest.approx(expected, rel=0.1)
    if senders is not None:
        assert window.limit() >= senders  # never fewer than one per connection


def test_receive_time_counts_from_the_request_but_not_a_long_poll_wait() -> None:
    clock = Clock()
    window = InFlightWindow(1000, clock=clock)
    asked = [ReceivedMessage("q", "a", "h-a", "{}", 1, received_at=clock.now - 0.05)]
    window.hold(asked)
    assert window.read_s == pytest.approx(0.05)
    polled = [ReceivedMessage("q", "b", "h-b", "{}", 1, received_at=clock.now - 19.0)]
    window.hold(polled)
    assert window.read_s is not None and window.read_s < READ_ALLOWANCE_S


def test_release_is_idempotent_and_frees_room() -> None:
    freed: list[int] = []
    window = InFlightWindow(500, floor=50, on_free=lambda: freed.append(1))
    batch = messages(30)
    window.hold(batch)
    assert window.held == 30 and window.room() == 20
    window.release(batch[:10])
    window.release(batch[:10])  # again: nothing more to free
    assert window.held == 20 and len(freed) == 1
    window.release(batch)
    assert window.held == 0 and len(freed) == 2


class RecordingSettlement:
    def __init__(self) -> None:
        self.chunks: list[list[str]] = []

    async def settle(
        self,
        outcomes: Sequence[tuple[Item, SendResult]],
        report: IterationReport,
        settled: set[str],
    ) -> None:
        await asyncio.sleep(0)
        self.chunks.append([item.envelope.id for item, _ in outcomes])
        settled.update(item.message.receipt_handle for item, _ in outcomes)


async def test_outcomes_are_settled_in_chunks_as_they_finish_except_account_refusals() -> None:
    settlement = RecordingSettlement()
    window = InFlightWindow(500)
    batch = messages(25)
    window.hold(batch)
    items = [Item(m, make_envelope(i)) for i, m in enumerate(batch)]
    settled: set[str] = set()
    early = SettleAsTheyFinish(settlement, IterationReport(), settled, window, linger_s=0.01)
    finished = early.watch(items)
    outcomes = []
    for index, item in enumerate(items):
        outcome = Outcome.ACCOUNT if index in (3, 17) else Outcome.ACCEPTED
        result = SendResult("p", outcome)
        outcomes.append((item, result))
        finished(index, result, 0.1)
        if index == 12:
            await asyncio.sleep(0)  # the first chunk of 10 leaves while sends go on

    rest = await early.rest(outcomes)

    assert [len(chunk) for chunk in settlement.chunks] == [10, 10, 3]
    assert [item.envelope.id for item, _ in rest] == [items[3].envelope.id, items[17].envelope.id]
    assert settled == {m.receipt_handle for m in batch} - {"handle-3", "handle-17"}
    assert window.held == 2  # the two waiting for their second offer
    assert window.send_s == pytest.approx(0.1)
