"""Split one iteration's pooled messages across the providers by health. Pure, no I/O.

Rules:
- a provider **held** for its reputation (pipeline.sending.reputation) gets nothing: no share, no
  probe, whatever its health, until its hold ends or an operator releases it (each more send moves
  its account towards review or a pause);
- healthy providers share the messages in proportion to their weights (largest remainder, so each
  share is within one message of its exact proportion);
- while at least one provider is healthy, each unhealthy provider gets exactly one message, a probe,
  so it can show that it has recovered; probes are handed out only when the pool has more
  messages than there are probes, so a healthy provider never goes without;
- when every provider not held is unhealthy, all of them share by weight again (nothing is held
  back: a message waits in the queue either way, and one of them may be back);
- when every provider is held, nothing is assigned: sending pauses (`paused`; pipeline.node
  stops reading and leaves the mail on the queues).

**Per recipient domain** (`avoid_excluded`, after `split`): a provider excluded at a recipient
domain group (pipeline.sending.mailbox_health) gets none of that group's mail. An email whose
provider is excluded at one of its recipients' groups goes to the provider, among those sharing,
that may take the most of its recipients (each recipient counts once; ties go round in turn); when
none may take more than its own, it stays. A pair due for a probe keeps one email of its group.

`rotation` breaks ties between equal remainders in turn, so with small pools (one message an
iteration) the spare message goes round the providers instead of always to the first.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProviderView:
    name: str
    weight: float
    healthy: bool
    held: bool = False  # held for its reputation: no mail at all, whatever `healthy` says


def paused(providers: Sequence[ProviderView]) -> bool:
    """Whether there are providers and every one of them is held: nothing may be sent."""
    return bool(providers) and all(p.held for p in providers)


def shares(total: int, weights: Sequence[float], rotation: int = 0) -> list[int]:
    """Split `total` items by `weights` with the largest-remainder method."""
    if total <= 0 or not weights:
        return [0] * len(weights)
    weight_sum = sum(weights)
    exact = [total * w / weight_sum for w in weights]
    counts = [int(x) for x in exact]
    spare = total - sum(counts)
    n = len(weights)
    order = sorted(range(n), key=lambda i: (-(exact[i] - counts[i]), (i - rotation) % n))
    for i in order[:spare]:
        counts[i] += 1
    return counts


def split(
    messages: Sequence[T], providers: Sequence[ProviderView], rotation: int = 0
) -> dict[str, list[T]]:
    """Assign every message to exactly one provider not held (held ones get an empty list);
    {} when there is none: no providers, or every one held (`paused`)."""
    if not providers or paused(providers):
        return {}
    assignment: dict[str, list[T]] = {p.name: [] for p in providers}
    providers = [p for p in providers if not p.held]
    healthy = [p for p in providers if p.healthy]
    unhealthy = [p for p in providers if not p.healthy]
    pool = list(messages)
    if healthy and unhealthy and len(pool) > len(unhealthy):
        for provider in unhealthy:
            assignment[provider.name].append(pool.pop())
    sharing = sharing_views(providers)
    counts = shares(len(pool), [p.weight for p in sharing], rotation)
    start = 0
    for provider, count in zip(sharing, counts, strict=True):
        assignment[provider.name].extend(pool[start : start + count])
        start += count
    return assignment


def sharing_views(providers: Sequence[ProviderView]) -> list[ProviderView]:
    """The providers that share the messages by weight: the healthy ones not held, or, when
    none is healthy, every one not held."""
    available = [p for p in providers if not p.held]
    return [p for p in available if p.healthy] or available


def suits(provider: str, groups: Sequence[str], excluded: Mapping[str, Collection[str]]) -> int:
    """How many of an email's recipients (given by their groups) `provider` may take."""
    return sum(1 for group in groups if provider not in excluded.get(group, ()))


def avoid_excluded(
    assignment: Mapping[str, Sequence[T]],
    candidates: Sequence[str],
    groups: Callable[[T], Sequence[str]],
    excluded: Mapping[str, Collection[str]],
    probing: Mapping[str, Collection[str]] | None = None,
    rotation: int = 0,
) -> tuple[dict[str, list[T]], list[tuple[str, str, T]]]:
    """`assignment` (from `split`) with each email moved off a provider excluded at its
    recipients' groups (`excluded`: group -> providers) to the best of `candidates` (see the
    module's docstring); and the probes kept: (provider, group, email), one per pair of
    `probing` (group -> providers due for a probe) that had an email of its group."""
    moved: dict[str, list[T]] = {name: [] for name in assignment}
    probes: list[tuple[str, str, T]] = []
    probing = probing or {}
    taken: set[tuple[str, str]] = set()
    turn = rotation
    for name, batch in assignment.items():
        for item in batch:
            mine = list(groups(item))
            refused = {g for g in mine if name in excluded.get(g, ())}
            if refused and all(
                name in probing.get(g, ()) and (name, g) not in taken for g in refused
            ):
                for group in sorted(refused):
                    taken.add((name, group))
                    probes.append((name, group, item))
                refused = set()
            if not refused:
                moved[name].append(item)
                continue
            scores = {c: suits(c, mine, excluded) for c in candidates}
            best = max(scores.values(), default=0)
            if best <= suits(name, mine, excluded):
                moved[name].append(item)  # nowhere better: it stays
                continue
            top = [c for c in candidates if scores[c] == best]
            choice = top[turn % len(top)]
            turn += 1
            moved.setdefault(choice, []).append(item)
    return moved, probes
