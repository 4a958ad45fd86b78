"""A node's reader of the operator's controls: every `steering.controls_poll_s` it reads them
from the control store (gomailpy.operating.controls) and hands them to the node's split
(pipeline.sending.controls.Steering), so a change made anywhere applies here within a few seconds.

    steering = await open_steering(stack, settings, node)     # closed with `stack`

A read that fails keeps the last controls (logged): an unreachable table never stops the mail.
An operator's `release` of a provider (a new `released_at`) ends this node's reputation hold on
it (`Health.release`, pipeline.sending.reputation): releases made before this node's first read
predate every hold it can have, and are only noted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack

from gomailpy import metrics
from gomailpy.config.settings import Settings
from gomailpy.errors import GomailError
from gomailpy.operating.controls import Controls, ControlStore, open_control_store
from pipeline.node import PipelineNode
from pipeline.periodic import PeriodicRefresh
from pipeline.prepare.pacing import Rates
from pipeline.sending.controls import Steering
from pipeline.sending.health import Health

log = logging.getLogger("gomailpy.pipeline")


class ControlPoller(PeriodicRefresh):
    """Reads the controls into `steering` until closed; a one-shot async context manager."""

    # a bug in refresh must not end the polling: the controls would freeze
    failure = "reading the controls failed"

    def __init__(
        self,
        store: ControlStore,
        steering: Steering,
        poll_s: float,
        health: Mapping[str, Health] | None = None,
    ) -> None:
        super().__init__(poll_s)
        self.store = store
        self.steering = steering
        self._health = health or {}
        self._released: dict[str, float | None] | None = None  # None: not read yet

    async def refresh(self) -> None:
        try:
            controls = await self.store.load()
        except (GomailError, OSError, ValueError) as exc:
            log.warning("controls not read (%s): keeping the last ones", exc)
            return
        if controls != self.steering.controls:
            for line in controls.describe() or ["none set"]:
                log.info("controls: %s", line)
            _export(controls)
        self._apply_releases(controls)
        self.steering.controls = controls

    def _apply_releases(self, controls: Controls) -> None:
        released = {name: controls.of(name).released_at for name in self._health}
        seen, self._released = self._released, released
        if seen is None:
            return
        for name, at in released.items():
            health = self._health.get(name)
            if at is None or at == seen.get(name) or health is None:
                continue
            why = health.release()
            if why is not None:
                metrics.PROVIDER_REPUTATION_HELD.labels(name).set(0)
                changed = controls.of(name).changed
                log.warning(
                    "provider %s released from its reputation hold (%s) %s",
                    name,
                    why,
                    changed.describe(),
                    extra={"provider": name},
                )


def _export(controls: Controls) -> None:
    for name in controls.names:
        control = controls.of(name)
        active = {
            "disabled": control.disabled,
            "forced_open": control.forced == "open",
            "forced_closed": control.forced == "closed",
            "weight": control.weight is not None,
            "probe_after": control.probe_after_s is not None,
            "pinned": controls.pin.provider == name,
        }
        for what, on in active.items():
            metrics.PROVIDER_CONTROLLED.labels(name, what).set(1 if on else 0)


async def open_steering(
    stack: AsyncExitStack,
    settings: Settings,
    node: PipelineNode,
    store: ControlStore | None = None,
    rates: Rates | None = None,
) -> ControlPoller:
    """Give `node` the operator's controls, read from `store` (default: the status table's),
    and, with `rates`, the split by rate shares (the step that holds batches beyond them:
    `Rates.gate`, in pipeline.steps)."""
    if store is None:
        store = await open_control_store(stack, settings)
    steering = Steering(time.monotonic)
    node.steering = steering
    if rates is not None and rates.paced:
        paced = rates.paced
        steering.rated = lambda: {name: p.rate.share() for name, p in paced.items()}
        steering.spent = rates.spent
    poller = ControlPoller(store, steering, settings.steering.controls_poll_s, node.health)
    return await stack.enter_async_context(poller)
