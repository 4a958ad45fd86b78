"""The splitter: property tests (hypothesis) and a few worked examples."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from pipeline.splitter import ProviderView, shares, split

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
