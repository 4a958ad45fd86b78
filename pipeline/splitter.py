"""Split one iteration's pooled messages across the provider workers by health. Pure, no I/O.

Rules:
- healthy workers share the messages in proportion to their weights (largest remainder, so each
  share is within one message of its exact proportion);
- while at least one worker is healthy, each unhealthy worker gets exactly one message, a probe,
  so it can show that it has recovered; probes are handed out only when the pool has more
  messages than there are probes, so a healthy worker never goes without;
- when every worker is unhealthy, all of them share by weight again (nothing is held back:
  a message waits in the queue either way, and one of them may be back).

`rotation` breaks ties between equal remainders in turn, so with small pools (one message an
iteration) the spare message goes round the workers instead of always to the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WorkerView:
    name: str
    weight: float
    healthy: bool


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
    messages: Sequence[T], workers: Sequence[WorkerView], rotation: int = 0
) -> dict[str, list[T]]:
    """Assign every message to exactly one worker; {} when there are no workers."""
    if not workers:
        return {}
    assignment: dict[str, list[T]] = {w.name: [] for w in workers}
    healthy = [w for w in workers if w.healthy]
    unhealthy = [w for w in workers if not w.healthy]
    pool = list(messages)
    if healthy and unhealthy:
        if len(pool) > len(unhealthy):
            for worker in unhealthy:
                assignment[worker.name].append(pool.pop())
        sharing = healthy
    else:
        sharing = list(workers)
    counts = shares(len(pool), [w.weight for w in sharing], rotation)
    start = 0
    for worker, count in zip(sharing, counts, strict=True):
        assignment[worker.name].extend(pool[start : start + count])
        start += count
    return assignment
