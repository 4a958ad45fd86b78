"""The reputation guard: a provider whose recipients bounce or complain too often leaves rotation
before its account is put under review or paused.

    guard = ReputationGuard(settings.reputation, node.health)
    guard.observe(events)      # the event consumer (pipeline.feedback), with each new batch
    guard.evaluate()           # also on its own, so that a hold ends on time

Per provider, over its last `reputation.window` accepted sends (`gomailpy.feedback.reputation.
RollingRates`): the hard bounce rate and the complaint rate, exported as metrics
(`gomailpy_provider_bounce_rate`, `gomailpy_provider_complaint_rate`). Once at least
`min_sample` sends are counted and a rate passes its threshold, the provider is held out of
rotation for `hold_s` (its `Health.held` says why), with a WARNING that gives the rates. A held
provider gets no mail at all, not even a probe (pipeline.sending.splitter), and when every provider
is held the node pauses sending and leaves the mail on the queues (pipeline.node). The hold ends
after `hold_s`, or at once when an operator releases it (`gomail provider release NAME`, which
clears `Health.held` through pipeline.steering); either way its counts start afresh.

Sends are this node's (the `gomailpy_provider_sends_total{outcome="accepted"}` counter); events
are those this node's consumer read. Every node reads its share of the events queue as it does
of the email queues, so each node's rates estimate the provider's overall rates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

from gomailpy import metrics
from gomailpy.config.feedback import ReputationSettings
from gomailpy.events import Event, EventType, Subtype
from gomailpy.feedback.reputation import RollingRates
from pipeline.sending.health import Health

log = logging.getLogger("gomailpy.pipeline")

_ACCEPTED = "gomailpy_provider_sends_total"


class ReputationGuard:
    def __init__(
        self,
        settings: ReputationSettings,
        health: Mapping[str, Health],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._health = health
        self._clock = clock
        self.rates = {name: RollingRates(settings.window) for name in health}
        self._counted = {name: self._accepted(name) for name in health}
        self._held_until: dict[str, float] = {}

    @staticmethod
    def _accepted(name: str) -> float:
        return metrics.sample(_ACCEPTED, {"provider": name, "outcome": "accepted"})

    def _count_sends(self) -> None:
        for name, rates in self.rates.items():
            accepted = self._accepted(name)
            rates.sent(int(accepted - self._counted[name]))
            self._counted[name] = accepted

    def observe(self, events: Sequence[Event]) -> None:
        """Count new (never seen before) events, then judge every provider."""
        self._count_sends()
        for event in events:
            # The instance that sent it, when the report names it (else a kind's only instance
            # of that name, as before instances had names of their own).
            rates = self.rates.get(event.instance or event.provider)
            if rates is None:
                continue
            if event.type is EventType.BOUNCED and event.subtype == Subtype.HARD.value:
                rates.bounced()
            elif event.type is EventType.COMPLAINED:
                rates.complained()
        self.evaluate()

    def evaluate(self) -> None:
        """Hold the providers past a threshold; end the holds whose time is up."""
        if not self._settings.enabled:
            return
        self._count_sends()
        now = self._clock()
        for name, rates in self.rates.items():
            metrics.PROVIDER_BOUNCE_RATE.labels(name).set(rates.bounce_rate)
            metrics.PROVIDER_COMPLAINT_RATE.labels(name).set(rates.complaint_rate)
            health = self._health[name]
            if name in self._held_until:
                if health.held is None:  # released by an operator (pipeline.steering)
                    self._release(name, health, "released by an operator")
                elif now >= self._held_until[name]:
                    self._release(name, health, "its hold is over")
                continue
            why = self._too_high(rates)
            if why is not None:
                self._hold(name, health, why, now)

    def _too_high(self, rates: RollingRates) -> str | None:
        settings = self._settings
        if rates.sample < settings.min_sample:
            return None
        over = []
        if rates.bounce_rate > settings.max_bounce_rate:
            over.append(
                f"hard bounce rate {rates.bounce_rate:.2%} > {settings.max_bounce_rate:.2%}"
            )
        if rates.complaint_rate > settings.max_complaint_rate:
            over.append(
                f"complaint rate {rates.complaint_rate:.3%} > {settings.max_complaint_rate:.3%}"
            )
        if not over:
            return None
        return f"{' and '.join(over)} over its last {rates.sample} sends"

    def _hold(self, name: str, health: Health, why: str, now: float) -> None:
        self._held_until[name] = now + self._settings.hold_s
        health.held = why
        metrics.PROVIDER_REPUTATION_HELD.labels(name).set(1)
        log.warning(
            "provider %s is out of rotation for %.0f s: %s (its account must not reach the"
            " provider's review or pause thresholds)",
            name,
            self._settings.hold_s,
            why,
            extra={"provider": name},
        )

    def _release(self, name: str, health: Health, why: str) -> None:
        del self._held_until[name]
        health.held = None
        self.rates[name] = RollingRates(self._settings.window)
        metrics.PROVIDER_REPUTATION_HELD.labels(name).set(0)
        log.warning("provider %s is back in rotation, %s (its rates start afresh)", name, why)
