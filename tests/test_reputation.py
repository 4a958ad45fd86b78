"""Rolling bounce and complaint rates (gomailpy.feedback.reputation) and the guard's holds
(pipeline.sending.reputation), table-driven, no I/O."""

from __future__ import annotations

import pytest

from gomailpy import metrics
from gomailpy.config.feedback import ReputationSettings
from gomailpy.events import Event, EventType
from gomailpy.feedback.reputation import RollingRates
from pipeline.sending.health import Health
from pipeline.sending.reputation import ReputationGuard
from tests.support import unique


@pytest.mark.parametrize(
    ("steps", "sample", "bounce_rate", "complaint_rate"),
    [
        # nothing sent: no rate, whatever arrived
        ([("b", 1)], 0, 0.0, 0.0),
        # 2 bounces over 40 sends
        ([("s", 40), ("b", 2)], 40, 0.05, 0.0),
        # the window holds the last 100 sends: 200 sent, 3 bounces at the start drop out
        ([("s", 10), ("b", 3), ("s", 200)], 100, 0.0, 0.0),
        # ... and the bounces inside the window stay
        ([("s", 150), ("b", 4), ("s", 50), ("c", 1)], 100, 0.04, 0.01),
        # a bounce exactly at the horizon is still counted
        ([("b", 1), ("s", 100)], 100, 0.01, 0.0),
        ([("b", 1), ("s", 101)], 100, 0.0, 0.0),
    ],
)
def test_rates_over_the_last_sends(
    steps: list[tuple[str, int]], sample: int, bounce_rate: float, complaint_rate: float
) -> None:
    rates = RollingRates(window=100)
    for kind, count in steps:
        if kind == "s":
            rates.sent(count)
        else:
            for _ in range(count):
                if kind == "b":
                    rates.bounced()
                else:
                    rates.complained()
    assert rates.sample == sample
    assert rates.bounce_rate == pytest.approx(bounce_rate)
    assert rates.complaint_rate == pytest.approx(complaint_rate)


# -- the guard: a hold ends on time, or at once when an operator releases it ---------------------


@pytest.mark.parametrize(
    ("release_by", "held_after"),
    [
        ("nobody", True),  # within hold_s: still held
        ("operator", False),  # Health.release (gomail provider release, via pipeline.steering)
        ("time", False),  # hold_s is over
    ],
)
def test_a_hold_ends_on_time_or_when_released_and_the_rates_start_afresh(
    release_by: str, held_after: bool
) -> None:
    name = unique("rep")
    now = [0.0]
    health = {name: Health(1, 1)}
    settings = ReputationSettings(window=100, min_sample=50, max_bounce_rate=0.04, hold_s=60)
    guard = ReputationGuard(settings, health, clock=lambda: now[0])
    metrics.PROVIDER_SENDS.labels(name, "accepted").inc(100)
    guard.observe([bounce(name, n) for n in range(10)])  # 10 %
    assert health[name].held and not health[name].healthy
    assert metrics.sample("gomailpy_provider_reputation_held", {"provider": name}) == 1
    now[0] = 30.0
    if release_by == "operator":
        assert health[name].release() is not None
    elif release_by == "time":
        now[0] = 61.0
    guard.evaluate()
    guard.evaluate()  # the old bounces do not hold it again: its rates started afresh
    assert (health[name].held is not None) == held_after
    if not held_after:
        assert health[name].healthy and guard.rates[name].bounce_rate == 0.0
        assert metrics.sample("gomailpy_provider_reputation_held", {"provider": name}) == 0


def bounce(provider: str, n: int) -> Event:
    return Event(
        id=unique("b"),
        message_id=None,
        recipient=f"gone{n}@example.org",
        provider=provider,
        type=EventType.BOUNCED,
        at="2026-01-01T00:00:00Z",
        subtype="hard",
    )
