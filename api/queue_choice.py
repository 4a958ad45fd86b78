"""Which queue an email is offered to first, and which ones after it when a queue refuses it.

A chooser only orders the configured queues; it never calls SQS. Least-depth reads the depths the
background refresher cached (`QueueGateway`), so choosing costs nothing on the request path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

QueueChoice = Literal["least-depth", "round-robin"]


class QueueChooser(Protocol):
    def order(self, queues: Sequence[str], depths: Mapping[str, int]) -> list[str]:
        """Every queue of `queues`, in the order to try them. `depths` holds the known ones."""
        ...


class RoundRobin:
    """Each call starts one queue further along: q1 q2 q3, then q2 q3 q1, and so on."""

    def __init__(self) -> None:
        self._next = 0

    def order(self, queues: Sequence[str], depths: Mapping[str, int]) -> list[str]:
        if not queues:
            return []
        start = self._next % len(queues)
        self._next = start + 1
        return [*queues[start:], *queues[:start]]


class LeastDepth:
    """The shallowest queue first, so every queue drains at about the same pace.

    Queues of equal depth take turns (a round-robin rotation before a stable sort); otherwise a
    burst between two refreshes would all go to the first queue listed. A queue of unknown depth
    (not read yet, or its last read failed) comes last: it is the one least likely to answer.
    """

    def __init__(self) -> None:
        self._rotation = RoundRobin()

    def order(self, queues: Sequence[str], depths: Mapping[str, int]) -> list[str]:
        rotated = self._rotation.order(queues, depths)
        return sorted(rotated, key=lambda queue: (queue not in depths, depths.get(queue, 0)))


def make_chooser(choice: QueueChoice) -> QueueChooser:
    return LeastDepth() if choice == "least-depth" else RoundRobin()
