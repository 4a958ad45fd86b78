"""A provider's sending reputation as its account sees it: hard bounce and complaint rates over
its last sends, for the guard that acts on them (pipeline.sending.reputation; its settings:
gomailpy.config.feedback.ReputationSettings).

SES reviews an account near a 5 % bounce rate or a 0.1 % complaint rate and pauses it beyond;
other providers have like limits. The defaults stay below SES's review levels. Pure, no I/O.
"""

from __future__ import annotations

from collections import deque


class RollingRates:
    """Bounces and complaints that arrived while a provider made its last `window` sends.

    Each bounce is stamped with the send count when it arrived and forgotten once `window`
    more sends went out: memory is bounded by the bounces inside the window."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._sends = 0
        self._bounces: deque[int] = deque()
        self._complaints: deque[int] = deque()

    def sent(self, count: int) -> None:
        self._sends += count
        horizon = self._sends - self.window
        for marks in (self._bounces, self._complaints):
            while marks and marks[0] < horizon:
                marks.popleft()

    def bounced(self) -> None:
        self._bounces.append(self._sends)

    def complained(self) -> None:
        self._complaints.append(self._sends)

    @property
    def sample(self) -> int:
        """The sends the rates are over: the window, or fewer at first."""
        return min(self._sends, self.window)

    def _rate(self, marks: deque[int]) -> float:
        return len(marks) / self.sample if self.sample else 0.0

    @property
    def bounce_rate(self) -> float:
        return self._rate(self._bounces)

    @property
    def complaint_rate(self) -> float:
        return self._rate(self._complaints)
