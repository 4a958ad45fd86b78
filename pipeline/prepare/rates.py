"""Provider send rates, pure (time passed in): what a node may send through each provider.

A provider's **cluster rate** (emails/s) comes from `steering.rates.<name>`, or from the
provider itself (SES: its account's MaxSendRate, unless configured lower). Each node takes an
equal **share**: cluster rate / live nodes (heartbeats, pipeline.prepare.pacing). When nodes come or
go, the shares follow within a heartbeat or two; until then the cluster may briefly run a
little over (a node joining) or under (a node gone) its rate.

Throttling answers shrink the share at once (multiplicative decrease: halved, at most once per
`DECREASE_EVERY_S`); every second without one gives back `INCREASE_PER_S` of the ceiling
(additive increase), never above it. Throttling never counts against health
(pipeline.sending.health).

`Pace` spaces one provider's sends at its rate: each send reserves the next free instant, with
a small burst allowed after an idle spell.
"""

from __future__ import annotations

from dataclasses import dataclass

DECREASE_FACTOR = 0.5
DECREASE_EVERY_S = 1.0  # one burst of throttling answers halves the rate once, not per answer
INCREASE_PER_S = 0.05  # of the ceiling, per second without throttling
FLOOR = 0.05  # of the ceiling: a throttled provider still gets a trickle, to learn it is back
BURST_S = 1.0  # of idle time a provider may catch up at once: a token bucket one second deep


@dataclass
class Pace:
    """Reservations at `rate` per second (> 0)."""

    rate: float
    next_free: float = 0.0

    def reserve(self, now: float) -> float:
        """Reserve the next send; the seconds to wait before it may start."""
        self.next_free = max(self.next_free, now - BURST_S)  # after idling: a short burst
        start = self.next_free
        self.next_free = start + 1.0 / self.rate
        return max(0.0, start - now)

    def cancel(self) -> None:
        """Give back a reservation not used (the send was not started)."""
        self.next_free -= 1.0 / self.rate

    def backlog_s(self, now: float) -> float:
        """How long the reservations made so far take to run out."""
        return max(0.0, self.next_free - now)


@dataclass
class ProviderRate:
    """One provider's rate on this node: the cluster's ceiling, the node's share, AIMD."""

    ceiling: float  # the cluster's rate, emails/s; 0: no limit
    factor: float = 1.0  # AIMD: 1 at full rate
    live_nodes: int = 1
    _last_decrease: float = -1e9
    _last_update: float | None = None

    @property
    def limited(self) -> bool:
        return self.ceiling > 0

    def share(self) -> float:
        """Emails/s this node may send now (0: no limit)."""
        if not self.limited:
            return 0.0
        return self.ceiling * self.factor / max(1, self.live_nodes)

    def throttled(self, now: float) -> bool:
        """The provider answered Throttling: halve (once per DECREASE_EVERY_S); True if it did."""
        self._grow(now)
        if now - self._last_decrease < DECREASE_EVERY_S:
            return False
        self._last_decrease = now
        self.factor = max(FLOOR, self.factor * DECREASE_FACTOR)
        return True

    def tick(self, now: float) -> None:
        """Time passed: grow back by INCREASE_PER_S per second since the last throttling."""
        self._grow(now)

    def _grow(self, now: float) -> None:
        if self._last_update is not None:
            # Calm time only: from the later of the last update and a second after the decrease.
            since = max(self._last_update, self._last_decrease + DECREASE_EVERY_S)
            if now > since:
                self.factor = min(1.0, self.factor + INCREASE_PER_S * (now - since))
        self._last_update = now
