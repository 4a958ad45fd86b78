"""The health state machine, table-driven, and how an iteration's results are judged."""

from __future__ import annotations

import pytest

from gomailpy.providers.base import Outcome, SendResult
from pipeline.sending.health import CircuitState, Health, Verdict, judge

G, F, Z = Verdict.GOOD, Verdict.FAILING, Verdict.IDLE
H, U = CircuitState.HEALTHY, CircuitState.UNHEALTHY


@pytest.mark.parametrize(
    ("thresholds", "verdicts", "states"),
    [
        # unhealthy after 2 failing in a row; a good one in between resets the streak
        ((3, 2), [F, G, F, F], [H, H, H, U]),
        # healthy again after 3 good in a row; a failure in between resets the streak
        ((3, 2), [F, F, G, G, F, G, G, G], [H, U, U, U, U, U, U, H]),
        # idle iterations change nothing, not even streaks
        ((3, 2), [F, Z, Z, F], [H, H, H, U]),
        ((3, 2), [F, F, G, Z, G, Z, G], [H, U, U, U, U, U, H]),
        # two outages in a row: the second needs unhealthy_threshold failures again
        # (gomail kept its counters: one failure tripped it, one success restored it)
        ((3, 2), [F, F, G, G, G, F, G, F, F], [H, U, U, U, H, H, H, H, U]),
        # and recovering from the second one needs healthy_threshold good ones again
        ((3, 2), [F, F, G, G, G, F, F, G, G, G], [H, U, U, U, H, H, U, U, U, H]),
        # thresholds of 1: every iteration decides
        ((1, 1), [F, G, F, G], [U, H, U, H]),
    ],
)
def test_state_table(
    thresholds: tuple[int, int], verdicts: list[Verdict], states: list[CircuitState]
) -> None:
    health = Health(healthy_threshold=thresholds[0], unhealthy_threshold=thresholds[1])
    seen = []
    for verdict in verdicts:
        health.record(verdict)
        seen.append(health.state)
    assert seen == states


def test_record_reports_changes_and_resets_streaks() -> None:
    health = Health(healthy_threshold=2, unhealthy_threshold=2)
    assert health.record(F) is None
    assert health.record(F) is U
    assert (health.good_streak, health.failing_streak) == (0, 0)
    assert health.record(F) is None  # already unhealthy
    assert health.record(G) is None
    assert health.record(G) is H
    assert (health.good_streak, health.failing_streak) == (0, 0)


def test_thresholds_below_one_refused() -> None:
    with pytest.raises(ValueError):
        Health(healthy_threshold=0, unhealthy_threshold=2)


def r(outcome: Outcome) -> SendResult:
    return SendResult("p", outcome)


A, T, TH, P, AC = (
    Outcome.ACCEPTED, Outcome.TRANSIENT, Outcome.THROTTLED, Outcome.PERMANENT, Outcome.ACCOUNT,
)


@pytest.mark.parametrize(
    ("outcomes", "verdict"),
    [
        ([], Z),
        ([A], G),
        ([T], F),
        ([AC], F),  # the provider's account refused: its fault
        ([TH, TH], Z),  # throttling is not an outage
        ([P, P], Z),  # a bad email is not the provider's fault
        ([A, A, T], G),
        ([A, T], F),  # half failing is failing
        ([A, T, T, P], F),
        ([A, P, TH], G),
    ],
)
def test_judge(outcomes: list[Outcome], verdict: Verdict) -> None:
    assert judge([r(o) for o in outcomes]) is verdict
