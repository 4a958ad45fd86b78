"""How many messages a node holds at once, and giving each back as soon as its send finished.

    window = InFlightWindow(cap=settings.pipeline.max_in_flight, on_free=event.set)
    room = window.room()                    # how many more to read now
    window.hold(messages) ... window.release(messages)

    early = SettleAsTheyFinish(settlement, report, settled, window)
    lane.send_all(envelopes, checks, early.watch(items))   # settles in chunks as sends finish
    rest = await early.rest(outcomes)                      # what is left for the batch's end

**Sizing (Little's law).** To take messages at rate λ while each is held for H seconds, a node
holds L = λ·H messages. Two times are measured: W, the service time of one message, the sum of
three exponential moving averages (a receive call, from its request to its answer, at most
`READ_ALLOWANCE_S`; a provider send, from the start of the call; a settle call: record,
delete), and H, how long messages are really held, from their receive to their settlement
(`hold_s`, which also counts waiting inside the node); λ is the rate at which the node settled
messages over the last half second. The window is `HEADROOM`·λ·max(W, H), never below `floor`
and never above `cap` (`pipeline.max_in_flight`, a bound for memory rather than the size).
Sized on W alone, a node whose messages waited (H of 1.16 s against W of 0.63 s with 100 ms
providers, bench/README.md) had a window of 2·λ·W ≈ λ·H: just what it held, so any slowdown
shrank λ, then the window, then λ again. On max(W, H), while the window limits λ (λ = L/H) the
next window is HEADROOM·L: it grows until the queue server, the providers or the cap limit λ
instead. A node with slow providers thus holds more, one with fast ones less (leaving the rest
on the queue for other nodes): a fixed 500 was too small at 1 s per send and more than needed
at 10 ms.

**What the lanes can send.** When every provider has a pool (`max_concurrency`: SMTP
connections, HTTP connections), the node cannot send faster than `senders`/send time, so holding
more than HEADROOM·senders·W/send time only makes messages wait inside the node, where no other
node can take them. On H alone such a node's window grew to its cap: with 100 ms providers and
16 SMTP connections, one of two nodes took 2,000 messages it would need 12 s to send while the
other ran dry (bench.scale --provider-latency-ms 100). The window stops there, never below
`senders` itself, and over the floor too: the floor is a guess made before anything was measured.

**Settling as sends finish.** A batch used to be deleted only after its slowest send, so its
messages held their place in the window for the whole batch. Now every outcome is settled in
chunks of up to 10 (one DeleteMessageBatch) as soon as 10 have finished or `linger_s` (20 ms:
long enough to fill chunks at a few hundred sends a second, short next to a provider's send)
passed,
through the same `Settlement.settle` as before (status recorded first, then delete, release or
dead-letter), and its place in the window is freed at once. Outcomes a provider's *account*
refused wait for their second offer (pipeline.sending.dispatch.offer_elsewhere) and are settled with
the batch, as before.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from gomailpy.providers.base import Outcome, SendResult
from gomailpy.queues.sqs import MAX_BATCH, ReceivedMessage
from pipeline.sending.dispatch import OnResult
from pipeline.sending.settlement import Item, IterationReport

HEADROOM = 2.0
READ_ALLOWANCE_S = 1.0
_SMOOTHING = 0.2  # weight of the newest sample in the moving averages of W's parts
_RATE_PERIOD_S = 0.5  # λ is the last such period's rate: the window follows it at once


class _Settles(Protocol):
    async def settle(
        self,
        outcomes: Sequence[tuple[Item, SendResult]],
        report: IterationReport,
        settled: set[str],
    ) -> None: ...


class InFlightWindow:
    """The messages a node holds (read and not yet settled), and how many it may hold."""

    def __init__(
        self,
        cap: int,
        *,
        floor: int = 200,
        on_free: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        senders: int | None = None,
    ) -> None:
        self.cap = cap
        self.senders = senders  # sends the node's lanes can have at once; None: no bound
        self.floor = min(floor, cap)
        self._on_free = on_free
        self._clock = clock
        self._held: dict[str, float] = {}  # receipt handle -> when it was read
        self.hold_s: float | None = None  # H: moving average of read -> settled (shown)
        self.read_s: float | None = None  # moving average of one receive call
        self.send_s: float | None = None  # moving average of one provider send (shown)
        self.settle_s: float | None = None  # moving average of one settle call (shown)
        self.rate: float | None = None  # messages settled per second, recently
        self._settled_since = 0
        self._period_started = clock()
        self.peak = self.floor  # the largest window so far (bench, status)

    @property
    def held(self) -> int:
        return len(self._held)

    def limit(self) -> int:
        """HEADROOM·λ·max(W, H) from what was measured, within [floor, cap]."""
        if self.rate is None or self.send_s is None:
            return self.floor
        wanted = math.ceil(HEADROOM * self.rate * max(self.service_s, self.hold_s or 0.0))
        size = max(self.floor, min(self.cap, wanted))
        if self.senders is not None and self.send_s > 0:
            sendable = math.ceil(HEADROOM * self.senders * self.service_s / self.send_s)
            size = min(size, max(sendable, self.senders))
        self.peak = max(self.peak, size)
        return size

    @property
    def service_s(self) -> float:
        """W: a receive, a send and a settle call, as measured (0 for what is not yet)."""
        return (self.read_s or 0.0) + (self.send_s or 0.0) + (self.settle_s or 0.0)

    def room(self) -> int:
        return self.limit() - self.held

    def hold(self, messages: Sequence[ReceivedMessage]) -> None:
        # From when the receive that brought each was sent, if known (it is on the default
        # clock): the read is part of the time a message needs, and its place in the window
        # was taken when the read was asked for. At most READ_ALLOWANCE_S of it, though: a
        # receive that took longer was a long poll waiting for mail, not work.
        now = self._clock()
        earliest = now - READ_ALLOWANCE_S
        for message in messages:
            read_at = max(message.received_at, earliest) if message.received_at else now
            self._held[message.receipt_handle] = read_at
        if messages and read_at < now:  # one sample per receive answer is enough
            self.read_s = _average(self.read_s, now - read_at)

    def release(self, messages: Iterable[ReceivedMessage]) -> None:
        """These messages are settled (or given up): their places are free. Idempotent."""
        now = self._clock()
        freed = 0
        for message in messages:
            read_at = self._held.pop(message.receipt_handle, None)
            if read_at is not None:
                freed += 1
                self.hold_s = _average(self.hold_s, now - read_at)
        if freed:
            self._count(freed)
            self._on_free()

    def observe_send(self, seconds: float) -> None:
        self.send_s = _average(self.send_s, seconds)

    def observe_settle(self, seconds: float) -> None:
        self.settle_s = _average(self.settle_s, seconds)

    def _count(self, settled: int) -> None:
        self._settled_since += settled
        now = self._clock()
        elapsed = now - self._period_started
        if elapsed >= _RATE_PERIOD_S:
            self.rate = self._settled_since / elapsed
            self._settled_since = 0
            self._period_started = now


def _average(previous: float | None, sample: float) -> float:
    return sample if previous is None else previous + _SMOOTHING * (sample - previous)


class SettleAsTheyFinish:
    """Settles one batch's send outcomes in chunks as they finish (see the module docstring)."""

    def __init__(
        self,
        settlement: _Settles,
        report: IterationReport,
        settled: set[str],
        window: InFlightWindow,
        *,
        chunk: int = MAX_BATCH,
        linger_s: float = 0.02,
    ) -> None:
        self._settlement = settlement
        self._report = report
        self._settled = settled
        self._window = window
        self._chunk = chunk
        self._linger_s = linger_s
        self._ready: list[tuple[Item, SendResult]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._calls: list[asyncio.Task[None]] = []
        self._taken: set[str] = set()  # receipt handles settled here

    def watch(self, items: Sequence[Item]) -> OnResult:
        """The callback for a lane sending `items` (in that order)."""

        def finished(index: int, result: SendResult, seconds: float) -> None:
            if seconds > 0:
                self._window.observe_send(seconds)
            if result.outcome is Outcome.ACCOUNT:
                return  # offered to another provider first, then settled with the batch
            item = items[index]
            self._taken.add(item.message.receipt_handle)
            self._ready.append((item, result))
            if len(self._ready) >= self._chunk:
                self._flush()
            elif self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self._linger_s, self._flush)

        return finished

    async def rest(
        self, outcomes: Sequence[tuple[Item, SendResult]]
    ) -> list[tuple[Item, SendResult]]:
        """Wait for the chunks under way; return the outcomes not settled here."""
        self._flush()
        if self._calls:
            for failed in await asyncio.gather(*self._calls, return_exceptions=True):
                if isinstance(failed, BaseException):
                    raise failed
        return [o for o in outcomes if o[0].message.receipt_handle not in self._taken]

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._ready:
            chunk, self._ready = self._ready, []
            self._calls.append(asyncio.get_running_loop().create_task(self._settle(chunk)))

    async def _settle(self, chunk: list[tuple[Item, SendResult]]) -> None:
        started = time.perf_counter()
        try:
            await self._settlement.settle(chunk, self._report, self._settled)
        finally:
            self._window.observe_settle(time.perf_counter() - started)
            self._window.release(item.message for item, _ in chunk)
