"""Whether a queue is worth offering an email to: one circuit per queue, pure (time passed in).

    circuit = QueueCircuit()
    circuit.allows()                    # closed: offer it emails
    circuit.record_failure(now)         # a call failed: unreachable, timed out, 5xx
    circuit.record_success(now)         # it answered: a send, or the refresher's depth read
    circuit.retry_after_s(now)          # while open: how long to tell a client to wait

`OPEN_AFTER_FAILURES` failures in a row open it; the first success closes it. While it is open the
request path does not call the queue at all, so a request finding every circuit open is answered
503 at once instead of after the calls' timeouts. Nothing on the request path closes it: the
gateway's refresher probes every queue (a depth read, which costs nothing to an email) and its
first answer closes the circuit. A refusal of an email's contents says nothing about the queue and
is never recorded.
"""

from __future__ import annotations

import math

# Two, not one: under load a single call can time out on a healthy queue, and an open circuit
# turns traffic away until the next probe. A dead server fails every call, so two come quickly.
OPEN_AFTER_FAILURES = 2
# Retry-After grows with the outage (clients of a long one need not knock every second), capped.
MIN_RETRY_AFTER_S = 1
MAX_RETRY_AFTER_S = 30


class QueueCircuit:
    """The circuit of one queue. Times are seconds on any monotonic clock."""

    def __init__(self, open_after: int = OPEN_AFTER_FAILURES) -> None:
        if open_after < 1:
            raise ValueError("open_after must be >= 1")
        self._open_after = open_after
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def allows(self) -> bool:
        """True when the request path may offer this queue an email."""
        return self._opened_at is None

    def record_failure(self, now: float) -> bool:
        """Count a failed call; True when this one opened the circuit."""
        self._failures += 1
        if self._opened_at is None and self._failures >= self._open_after:
            self._opened_at = now
            return True
        return False

    def record_success(self, now: float) -> bool:
        """The queue answered; True when this closed the circuit."""
        was_open = self._opened_at is not None
        self._failures = 0
        self._opened_at = None
        return was_open

    def retry_after_s(self, now: float) -> int:
        """Whole seconds a client should wait: about as long as the queue has been down so far,
        between MIN_RETRY_AFTER_S and MAX_RETRY_AFTER_S (the minimum while closed)."""
        if self._opened_at is None:
            return MIN_RETRY_AFTER_S
        down_for = math.ceil(max(0.0, now - self._opened_at))
        return max(MIN_RETRY_AFTER_S, min(MAX_RETRY_AFTER_S, down_for))
