"""Per-provider health: a two-state circuit breaker driven by whole iterations. Pure, no I/O.

What counts, per provider and per iteration (one dispatched batch):
- **failing**: the provider was given at least one email and at least half of its sends failed
  in a way that is the provider's fault: TRANSIENT (error, 5xx, timeout, connection refused) or
  ACCOUNT (its account refused the email).
- **good**: it was given at least one email and fewer than half of its sends failed that way.
- **idle**: it was given nothing, or only THROTTLED / PERMANENT answers. Throttling is the
  provider asking for less, not an outage; a permanent refusal is about the email, and every
  provider would refuse it. An idle iteration leaves the counters as they are.

State changes:
- HEALTHY → UNHEALTHY after `unhealthy_threshold` failing iterations in a row;
- UNHEALTHY → HEALTHY after `healthy_threshold` good iterations in a row.
A good iteration resets the failing streak and a failing one resets the good streak, and both
streaks restart from zero on every change of state. (gomail never reset them: after its first
outage a single failure tripped a worker and a single success restored it.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from gomailpy.providers.base import Outcome, SendResult


class CircuitState(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class Verdict(StrEnum):
    GOOD = "good"
    FAILING = "failing"
    IDLE = "idle"


# Failures that are the provider's fault and so count against its health.
HEALTH_FAILURES = frozenset({Outcome.TRANSIENT, Outcome.ACCOUNT})


def judge(results: Iterable[SendResult]) -> Verdict:
    """The verdict on one provider's iteration from the results of its sends."""
    accepted = failed = 0
    for result in results:
        if result.outcome is Outcome.ACCEPTED:
            accepted += 1
        elif result.outcome in HEALTH_FAILURES:
            failed += 1
    if accepted == 0 and failed == 0:
        return Verdict.IDLE
    return Verdict.FAILING if failed >= accepted else Verdict.GOOD


@dataclass
class Health:
    healthy_threshold: int
    unhealthy_threshold: int
    state: CircuitState = CircuitState.HEALTHY
    good_streak: int = 0
    failing_streak: int = 0
    # why it is out of rotation whatever its circuit (pipeline.sending.reputation)
    held: str | None = None

    def __post_init__(self) -> None:
        if self.healthy_threshold < 1 or self.unhealthy_threshold < 1:
            raise ValueError("thresholds must be >= 1")

    @property
    def healthy(self) -> bool:
        return self.state is CircuitState.HEALTHY and self.held is None

    def release(self) -> str | None:
        """End a reputation hold now (an operator's release); why it was held, or None. The
        guard (pipeline.sending.reputation) sees it at its next evaluation and starts the rates
        afresh."""
        why, self.held = self.held, None
        return why

    def record(self, verdict: Verdict) -> CircuitState | None:
        """Count one iteration; return the new state if it changed, else None."""
        if verdict is Verdict.IDLE:
            return None
        if verdict is Verdict.GOOD:
            self.good_streak += 1
            self.failing_streak = 0
            if self.state is CircuitState.UNHEALTHY and self.good_streak >= self.healthy_threshold:
                return self._become(CircuitState.HEALTHY)
        else:
            self.failing_streak += 1
            self.good_streak = 0
            if (
                self.state is CircuitState.HEALTHY
                and self.failing_streak >= self.unhealthy_threshold
            ):
                return self._become(CircuitState.UNHEALTHY)
        return None

    def _become(self, state: CircuitState) -> CircuitState:
        self.state = state
        self.good_streak = self.failing_streak = 0
        return state
