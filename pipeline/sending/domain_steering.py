"""A node's health per mailbox provider (pipeline.sending.mailbox_health) with its clock, log lines
and metrics: what the node's split, its settlement and its event consumer feed and read.

    domains = DomainSteering(settings.steering.domains, node.lanes)   # PipelineNode makes one
    domains.observe_events(events)        # pipeline.feedback, with each batch's new events
    domains.observe_results(outcomes)     # the node, with each provider's answers
    domains.steer(assignment, candidates) # the node, after the split

Each exclusion that starts or ends is logged (WARNING as it starts, INFO as it ends) and exported
(`gomailpy_domain_excluded{provider,domain}`, `gomailpy_domain_exclusions_total`); every outcome
counted is in `gomailpy_domain_outcomes_total` (domain: a well-known group, else "other", so
that recipient domains never become labels).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from gomailpy import metrics
from gomailpy.config.steering import DomainSteeringSettings
from gomailpy.email.mime import all_recipients
from gomailpy.events import Event
from gomailpy.providers.base import SendResult
from pipeline.sending.mailbox_health import (
    GROUPS,
    Change,
    MailboxHealth,
    Signal,
    recipient_group,
    signal_of_event,
    signal_of_refusal,
)
from pipeline.sending.settlement import Item
from pipeline.sending.splitter import avoid_excluded

log = logging.getLogger("gomailpy.pipeline")
_KNOWN = frozenset(GROUPS.values())


def _label(group: str) -> str:
    return group if group in _KNOWN else "other"


class DomainSteering:
    """See the module docstring; `health` is the pure state, for /status and tests."""

    def __init__(
        self,
        settings: DomainSteeringSettings,
        providers: Iterable[str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.health = MailboxHealth(settings, providers)
        self._clock = clock

    def _observe(
        self, provider: str, recipient: str, signal: Signal, message_id: str | None
    ) -> None:
        group = recipient_group(recipient)
        metrics.DOMAIN_OUTCOMES.labels(provider, _label(group), signal.value).inc()
        self._announce(self.health.observe(provider, recipient, signal, self._clock(), message_id))

    def observe_events(self, events: Iterable[Event]) -> None:
        """Count what providers reported (delivered, deferred, bounced, blocked)."""
        for event in events:
            signal = signal_of_event(event)
            if signal is not None and event.recipient:
                self._observe(event.provider, event.recipient, signal, event.message_id)

    def observe_results(self, outcomes: Iterable[tuple[Item, SendResult]]) -> None:
        """Count the recipients each provider refused at RCPT time (blocked, deferred or
        bounced, by reason); an answer with no refusal says nothing about the domain."""
        for item, result in outcomes:
            for recipient, code, text in result.refused:
                signal = signal_of_refusal(code, text)
                self._observe(result.provider, recipient, signal, item.envelope.id)

    def steer(
        self,
        assignment: Mapping[str, Sequence[Item]],
        candidates: Sequence[str],
        rotation: int = 0,
    ) -> dict[str, list[Item]]:
        """The split's `assignment` with the per-domain exclusions applied
        (pipeline.sending.splitter `avoid_excluded`); the probes it keeps are noted."""
        now = self._clock()
        self._announce(self.health.evaluate(now))
        excluded = self.health.exclusions(now)
        if not excluded:
            return {name: list(batch) for name, batch in assignment.items()}
        groups: dict[str, list[str]] = {}

        def groups_of(item: Item) -> list[str]:
            found = groups.get(item.envelope.id)
            if found is None:
                found = [recipient_group(r) for r in all_recipients(item.envelope.email)]
                groups[item.envelope.id] = found
            return found

        moved, probes = avoid_excluded(
            assignment, candidates, groups_of, excluded, self.health.probes_due(now), rotation
        )
        for provider, group, item in probes:
            self.health.probe_sent(provider, group, item.envelope.id, now)
            log.info(
                "provider %s: a probe for domain %s (%s)",
                provider,
                group,
                item.envelope.id,
                extra={"provider": provider, "message_id": item.envelope.id},
            )
        return moved

    def evaluate(self) -> None:
        self._announce(self.health.evaluate(self._clock()))

    def snapshot(self) -> list[dict[str, object]]:
        return self.health.snapshot(self._clock())

    def _announce(self, changes: Sequence[Change]) -> None:
        for change in changes:
            provider, group = change.provider, change.group
            metrics.DOMAIN_EXCLUDED.labels(provider, group).set(1 if change.excluded else 0)
            which = "start" if change.excluded else "end"
            metrics.DOMAIN_EXCLUSIONS.labels(provider, group, which).inc()
            if change.excluded:
                log.warning(
                    "provider %s excluded for domain %s: %s; its mail there goes through the"
                    " others, a probe tries again later",
                    provider,
                    group,
                    change.why,
                    extra={"provider": provider},
                )
            else:
                log.info(
                    "provider %s back for domain %s: %s",
                    provider,
                    group,
                    change.why,
                    extra={"provider": provider},
                )
