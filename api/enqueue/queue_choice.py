"""Which queue an email is offered to first, and which ones after it when a queue refuses it.

A chooser only orders the configured queues; it never calls SQS. Least-depth reads the depths the
background refresher cached (`QueueGateway`), so choosing costs nothing on the request path.
With regional queues (gomailpy.config.regions), `regional_order` then puts the caller's region
first, or last once that region is deeper than `regions.spill_depth`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
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


def caller_region(asked: str | None, home: str | None, regions: Collection[str]) -> str | None:
    """The region a request is routed from: the one its header names when that is a configured
    region (anything else is ignored, not refused: a client cannot know the deployment), else
    the API's home region."""
    if asked is not None and asked.strip() in regions:
        return asked.strip()
    return home


def regional_order(
    order: Sequence[str],
    depths: Mapping[str, int],
    region_of: Mapping[str, str],
    home: str | None,
    spill_depth: int,
) -> list[str]:
    """`order` (a chooser's) with the home region's queues first, unless the home region is
    deeper than `spill_depth` in all (the sum of its queues' known depths): then the other
    regions' queues come first, home's last.

    Within each part the chooser's order holds, so the email goes to the least-deep queue of the
    region chosen. The gateway tries the queues in this order, skipping open circuits: home
    queues that refuse or are down spill to another region at once, and other regions that
    refuse fall back to home. No home region (or one with no queue): `order` unchanged.
    """
    home_queues = [queue for queue in order if home is not None and region_of.get(queue) == home]
    if not home_queues:
        return list(order)
    elsewhere = [queue for queue in order if region_of.get(queue) != home]
    home_depth = sum(depths.get(queue, 0) for queue in home_queues)
    if home_depth > spill_depth:
        return [*elsewhere, *home_queues]
    return [*home_queues, *elsewhere]
