"""Split one iteration's pooled messages across the providers by health. Pure, no I/O.

Rules:
- a provider **held** for its reputation (pipeline.reputation) gets nothing: no share, no probe,
  whatever its health, until its hold ends or an operator releases it (each more send moves its
  account towards review or a pause);
- healthy providers share the messages in proportion to their weights (largest remainder, so each
  share is within one message of its exact proportion);
- while at least one provider is healthy, each unhealthy provider gets exactly one message, a probe,
  so it can show that it has recovered; probes are handed out only when the pool has more
  messages than there are probes, so a healthy provider never goes without;
- when every provider not held is unhealthy, all of them share by weight again (nothing is held
  back: a message waits in the queue either way, and one of them may be back);
- when every provider is held, nothing is assigned: sending pauses (`paused`; pipeline.node
  stops reading and leaves the mail on the queues).

`rotation` breaks ties between equal remainders in turn, so with small pools (one message an
iteration) the spare message goes round the providers instead of always to the first.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    if healthy and unhealthy:
        if len(pool) > len(unhealthy):
            for provider in unhealthy:
                assignment[provider.name].append(pool.pop())
        sharing = healthy
    else:
        sharing = list(providers)
    counts = shares(len(pool), [p.weight for p in sharing], rotation)
    start = 0
    for provider, count in zip(sharing, counts, strict=True):
        assignment[provider.name].extend(pool[start : start + count])
        start += count
    return assignment
