"""Rolling bounce and complaint rates (gomailpy.reputation), table-driven, no I/O."""

from __future__ import annotations

import pytest

from gomailpy.reputation import RollingRates


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
