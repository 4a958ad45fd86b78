"""The operator's controls applied to the split: pure, no I/O, time passed in.

`steer(views, controls, opened_at, now)` turns the providers as health sees them
(pipeline.sending.splitter.ProviderView) into the providers the split may use:
- a **disabled** provider is left out entirely (no share, no probe, no second offer);
- a **pin** leaves only the pinned provider, whatever its health (a pin to a provider this node
  does not have is ignored: the node keeps sending rather than hold all mail);
- a **weight** set by hand replaces the configured one;
- **forced closed** counts as healthy whatever its circuit; **forced open** as unhealthy and
  *resting*: no probe, so only the operator closes it;
- a provider whose daily quota is nearly spent rests too, so traffic moves away in time;
- an opened circuit **rests** `probe_after_s` (when set) from the moment it opened before its
  next probe, instead of a probe at every iteration.
A resting provider is left out only while another provider is healthy: when all are down they
all share again (pipeline.sending.splitter), as mail waits in the queue either way.
A provider **held** for its reputation stays held whatever the controls say (forced closed
included): it gets no mail until its hold ends or an operator releases it (`release`,
pipeline.steering); a pin to it pauses sending rather than send through it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import TypeAlias

from gomailpy.operating.controls import Controls
from pipeline.sending.splitter import ProviderView

# The node's hook: the views as health sees them -> the views the split may use.
Steer: TypeAlias = Callable[[Sequence[ProviderView]], list[ProviderView]]


def steer(
    views: Sequence[ProviderView],
    controls: Controls,
    opened_at: Mapping[str, float],
    now: float,
    rated: Mapping[str, float] | None = None,
    spent: Collection[str] = (),
) -> list[ProviderView]:
    """The views the split may use, in the same order (see the module's docstring). `rated`:
    each rate-limited provider's share (emails/s, pipeline.prepare.rates); when every provider left
    has one, they split by those instead of by weight, so each gets what it can send. `spent`:
    providers whose daily quota is nearly spent (pipeline.prepare.ses_quota): resting, like forced
    open, so traffic moves away before the quota runs out."""
    pinned = controls.pin.provider
    if pinned is not None and any(v.name == pinned for v in views):
        views = [v for v in views if v.name == pinned]
    steered: list[ProviderView] = []
    resting: set[str] = set()
    for view in views:
        control = controls.of(view.name)
        if control.disabled and view.name != pinned:
            continue
        if control.weight is not None:
            view = replace(view, weight=control.weight)
        if control.forced == "closed":
            view = replace(view, healthy=True)  # its circuit only: a hold stays
        elif control.forced == "open" or view.name in spent:
            view = replace(view, healthy=False)
            resting.add(view.name)
        elif not view.healthy and control.probe_after_s is not None:
            since = opened_at.get(view.name)
            if since is not None and now - since < control.probe_after_s:
                resting.add(view.name)
        steered.append(view)
    if any(v.healthy and not v.held for v in steered):
        steered = [v for v in steered if v.name not in resting]
    sending = [v for v in steered if not v.held]
    if rated and sending and all(rated.get(v.name, 0) > 0 for v in sending):
        steered = [replace(v, weight=rated.get(v.name, v.weight)) for v in steered]
    return steered


class Steering:
    """What a node knows of the controls (the last read) and when each circuit opened, as seen
    by its split; `__call__` is the node's `steering` hook."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.controls = Controls()
        self._clock = clock
        self._opened_at: dict[str, float] = {}
        self.rated: Callable[[], dict[str, float]] = dict  # rate shares: pipeline.prepare.pacing
        # daily quotas nearly spent: pipeline.prepare.ses_quota
        self.spent: Callable[[], set[str]] = set

    def __call__(self, views: Sequence[ProviderView]) -> list[ProviderView]:
        now = self._clock()
        for view in views:
            if view.healthy:
                self._opened_at.pop(view.name, None)
            else:
                self._opened_at.setdefault(view.name, now)
        return steer(views, self.controls, self._opened_at, now, self.rated(), self.spent())


def unsteered(views: Sequence[ProviderView]) -> list[ProviderView]:
    """No controls: the views as health sees them."""
    return list(views)
