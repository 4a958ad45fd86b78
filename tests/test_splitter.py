"""The splitter: property tests (hypothesis), a few worked examples, and reputation holds as a
table over many iterations."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.sending.splitter import ProviderView, paused, shares, split

providers_strategy = st.lists(
    st.tuples(st.integers(1, 10), st.booleans()), min_size=1, max_size=6
).map(lambda ws: [ProviderView(f"w{i}", float(w), h) for i, (w, h) in enumerate(ws)])


@given(st.integers(0, 500), providers_strategy, st.integers(0, 100))
def test_every_message_is_assigned_exactly_once(
    n: int, providers: list[ProviderView], rot: int
) -> None:
    messages = list(range(n))
    assignment = split(messages, providers, rot)
    assigned = [m for batch in assignment.values() for m in batch]
    assert sorted(assigned) == messages
    assert set(assignment) == {w.name for w in providers}


@given(st.integers(0, 500), providers_strategy, st.integers(0, 100))
def test_unhealthy_worker_gets_at_most_one_while_another_is_healthy(
    n: int, providers: list[ProviderView], rot: int
) -> None:
    assignment = split(list(range(n)), providers, rot)
    if any(w.healthy for w in providers):
        for provider in providers:
            if not provider.healthy:
                assert len(assignment[provider.name]) <= 1
                # a probe is sent whenever the pool has more messages than probes
                unhealthy = sum(not w.healthy for w in providers)
                if n > unhealthy:
                    assert len(assignment[provider.name]) == 1


@given(st.integers(0, 500), providers_strategy, st.integers(0, 100))
def test_shares_follow_weights_within_one_message(
    n: int, providers: list[ProviderView], rot: int
) -> None:
    assignment = split(list(range(n)), providers, rot)
    healthy = [w for w in providers if w.healthy]
    sharing = healthy or providers  # all unhealthy: everyone shares by weight again
    probes = sum(len(assignment[w.name]) for w in providers if w not in sharing)
    pool = n - probes
    total_weight = sum(w.weight for w in sharing)
    for provider in sharing:
        exact = pool * provider.weight / total_weight
        assert abs(len(assignment[provider.name]) - exact) < 1


@given(st.integers(0, 500), st.integers(1, 6))
def test_all_unhealthy_with_equal_weights_split_evenly(n: int, count: int) -> None:
    providers = [ProviderView(f"w{i}", 1.0, False) for i in range(count)]
    sizes = [len(batch) for batch in split(list(range(n)), providers).values()]
    assert max(sizes) - min(sizes) <= 1


def test_examples() -> None:
    ses, sg, smtp = (
        ProviderView("ses", 2, True),
        ProviderView("sendgrid", 1, True),
        ProviderView("smtp", 1, False),
    )
    sizes = {k: len(v) for k, v in split(list(range(41)), [ses, sg, smtp]).items()}
    assert sizes == {"ses": 27, "sendgrid": 13, "smtp": 1}
    # one message and an unhealthy provider: the healthy one gets it, no probe
    assert {k: len(v) for k, v in split([1], [ses, smtp]).items()} == {"ses": 1, "smtp": 0}
    assert split([1, 2], []) == {}


def test_rotation_spreads_single_messages_across_equal_workers() -> None:
    providers = [ProviderView(f"w{i}", 1.0, True) for i in range(3)]
    winners = Counter(
        name for rot in range(30) for name, batch in split([0], providers, rot).items() if batch
    )
    assert winners == {"w0": 10, "w1": 10, "w2": 10}


def test_shares_largest_remainder() -> None:
    assert shares(10, [1, 1, 1]) in ([4, 3, 3], [3, 4, 3], [3, 3, 4])
    assert shares(0, [1, 2]) == [0, 0]
    assert shares(7, [3, 0.5]) == [6, 1]


# -- reputation holds: a held provider gets nothing, ever -----------------------------------------


def held(name: str, *, healthy: bool = False, weight: float = 1.0) -> ProviderView:
    return ProviderView(name, weight, healthy, held=True)


@pytest.mark.parametrize(
    ("providers", "expected"),
    [
        # held beside a healthy one: no probe, the healthy one takes everything
        ([ProviderView("ses", 1, True), held("sendgrid")], {"ses": 40, "sendgrid": 0}),
        # held and (somehow) healthy: still nothing
        (
            [ProviderView("ses", 1, True), held("sendgrid", healthy=True, weight=5)],
            {"ses": 40, "sendgrid": 0},
        ),
        # held beside an open circuit: the open one is all that is left, so it takes everything
        # (open circuits share when none is healthy); the held one still nothing
        ([ProviderView("ses", 1, False), held("sendgrid")], {"ses": 40, "sendgrid": 0}),
        # held, healthy and unhealthy together: the unhealthy one gets its probe, the held none
        (
            [ProviderView("ses", 1, True), ProviderView("smtp", 1, False), held("sendgrid")],
            {"ses": 39, "smtp": 1, "sendgrid": 0},
        ),
        # every provider held: nothing is assigned (sending pauses)
        ([held("ses"), held("sendgrid", healthy=True)], {}),
    ],
)
def test_a_held_provider_gets_no_mail_in_any_iteration(
    providers: list[ProviderView], expected: dict[str, int]
) -> None:
    for rotation in range(200):  # many iterations, every tie-break
        assignment = split(list(range(40)), providers, rotation)
        assert {name: len(batch) for name, batch in assignment.items()} == expected
    assert paused(providers) == (expected == {})


@given(st.integers(0, 300), providers_strategy, st.sets(st.integers(0, 5)), st.integers(0, 100))
def test_held_providers_get_nothing_and_the_rest_get_everything(
    n: int, providers: list[ProviderView], held_at: set[int], rot: int
) -> None:
    providers = [
        dataclasses.replace(p, held=True) if i in held_at else p for i, p in enumerate(providers)
    ]
    assignment = split(list(range(n)), providers, rot)
    if paused(providers):
        assert assignment == {}
        return
    assert sorted(m for batch in assignment.values() for m in batch) == list(range(n))
    for provider in providers:
        if provider.held:
            assert assignment[provider.name] == []


def test_paused_only_when_there_are_providers_and_all_are_held() -> None:
    assert not paused([])
    assert not paused([held("ses"), ProviderView("smtp", 1, False)])
    assert paused([held("ses"), held("smtp")])
