"""The operator's hands on the providers, for the whole cluster: disable, force a circuit, change a
weight, pin all traffic to one provider, set how long an opened circuit rests before its probe,
release a provider held for its reputation (pipeline.sending.reputation).

    store = await open_control_store(stack, settings)   # `ctl#` items on the status table
    await store.change("ses", "disable", who="alice", why="SES outage, case 42")
    controls = await store.load()   # what every node applies (pipeline.sending.controls)
    await store.history("ses", limit=20)   # every change to it, newest first

Stored as one item per provider (`ctl#ses`, ...) and one for the pin (`ctl#pin`) on the status
table (`status.table`), so two operators changing two providers never overwrite each other.
Every pipeline node reads them every `steering.controls_poll_s` (2 s): a change applies
cluster-wide within a few seconds. Each item keeps who changed it last, why and when;
`gomail status` shows them, and every change is logged at WARNING with who and why.

The audit trail is the history: every change appends one entry (what, the state before and
after, who, why, when) as an item of its own, `ctlh#<sequence>`, numbered by the counter item
`ctlh#seq` and written with a conditional put that never overwrites. It is written before the
change, so no change is applied without its entry.
`status.backend: memory` keeps them in this process only (tests, one-process setups).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from gomailpy.config.settings import Settings
from gomailpy.config.steering import PROVIDER_NAMES
from gomailpy.errors import GomailError, StoreError
from gomailpy.store.items import ItemTable, MemoryItemTable, open_item_table

log = logging.getLogger("gomailpy.controls")

PREFIX = "ctl#"
PIN_KEY = PREFIX + "pin"
# Pipeline nodes' heartbeats (pipeline.prepare.pacing) beside the controls: `node#<id>` items, TTL,
# with each node's rate shares; the ids in a string set on `node#index`.
NODE_PREFIX = "node#"
NODE_INDEX = NODE_PREFIX + "index"
# The history: `ctlh#000000000001`, ... (sortable), numbered by the counter `ctlh#seq`.
HISTORY_PREFIX = "ctlh#"
HISTORY_SEQ = HISTORY_PREFIX + "seq"
HISTORY_SCAN = 5_000  # entries read back at most to find `limit` about one provider
MAX_HISTORY_LIMIT = 1_000
MAX_REASON = 300
MAX_WEIGHT = 1_000_000.0
MAX_PROBE_AFTER_S = 24 * 3600.0
Forced = Literal["open", "closed"]
ACTIONS = ("disable", "enable", "weight", "force", "probe-after", "release", "pin", "unpin")


class ControlError(GomailError, ValueError):
    """A change that cannot be made: unknown provider or action, bad value, missing reason."""


@dataclass(frozen=True, slots=True)
class Changed:
    """Who made the last change to an item, why, and when (epoch seconds)."""

    by: str = ""
    reason: str = ""
    at: float = 0.0

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)) if self.at else "-"
        return f"by {self.by or '?'} at {when}: {self.reason or '-'}"


@dataclass(frozen=True, slots=True)
class ProviderControl:
    """One provider's controls; the defaults change nothing."""

    disabled: bool = False
    forced: Forced | None = None  # circuit held open (no traffic, no probe) or closed (healthy)
    weight: float | None = None  # None: the configured weight
    probe_after_s: float | None = None  # None: probe at every iteration once opened
    # When an operator last released its reputation hold (epoch s): every node that holds it
    # then lets it back in (pipeline.steering); None: never.
    released_at: float | None = None
    changed: Changed = field(default_factory=Changed)

    @property
    def active(self) -> list[str]:
        """What is set, in words (for `gomail status` and `gomail provider list`)."""
        words = ["disabled"] if self.disabled else []
        if self.forced:
            words.append(f"forced {self.forced}")
        if self.weight is not None:
            words.append(f"weight {self.weight:g}")
        if self.probe_after_s is not None:
            words.append(f"probe after {self.probe_after_s:g} s")
        return words


def _state(control: ProviderControl) -> str:
    return ", ".join(control.active) or "as configured"


def _pin_state(provider: str | None) -> str:
    return f"pinned to {provider}" if provider else "not pinned"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One change to the controls, as it was made: never rewritten."""

    seq: int
    at: float  # epoch seconds
    by: str  # `key <id>` (API), `<OS user> (cli)`
    reason: str
    action: str
    provider: str | None  # None: an unpin with nothing pinned before
    value: str | None
    before: str  # the state in words, e.g. "disabled, weight 2" or "as configured"
    after: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HistoryEntry:
        value, provider = data.get("value"), data.get("provider")
        return cls(
            seq=int(data.get("seq", 0)),
            at=float(data.get("at", 0)),
            by=str(data.get("by", "")),
            reason=str(data.get("reason", "")),
            action=str(data.get("action", "")),
            provider=None if provider is None else str(provider),
            value=None if value is None else str(value),
            before=str(data.get("before", "")),
            after=str(data.get("after", "")),
        )

    @property
    def what(self) -> str:
        """The change in words: `ses weight 3`, `unpin`."""
        words = [self.provider or "", self.action, self.value or ""]
        if self.action in ("pin", "unpin"):
            words = [self.action, self.provider or ""]
        return " ".join(word for word in words if word)

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))


@dataclass(frozen=True, slots=True)
class Pin:
    provider: str | None = None
    changed: Changed = field(default_factory=Changed)


@dataclass(frozen=True, slots=True)
class Controls:
    providers: dict[str, ProviderControl] = field(default_factory=dict)
    pin: Pin = field(default_factory=Pin)
    names: tuple[str, ...] = PROVIDER_NAMES  # every instance the controls know of

    def of(self, provider: str) -> ProviderControl:
        return self.providers.get(provider, ProviderControl())

    def to_json(self) -> dict[str, Any]:
        return {
            "providers": {
                name: {**_control_json(c), "active": c.active} for name, c in self.providers.items()
            },
            "pinned": self.pin.provider,
            "pin_changed": asdict(self.pin.changed),
        }

    def describe(self) -> list[str]:
        """One line per provider with something set, and one for the pin."""
        lines = [
            f"{name}: {', '.join(c.active)} ({c.changed.describe()})"
            for name, c in sorted(self.providers.items())
            if c.active
        ]
        if self.pin.provider:
            lines.append(f"pinned to {self.pin.provider} ({self.pin.changed.describe()})")
        return lines


def _control_json(control: ProviderControl) -> dict[str, Any]:
    data = asdict(control)
    data["changed"] = asdict(control.changed)
    return data


def _control_from(data: dict[str, Any]) -> ProviderControl:
    forced = data.get("forced")
    weight = data.get("weight")
    probe = data.get("probe_after_s")
    released = data.get("released_at")
    return ProviderControl(
        disabled=bool(data.get("disabled")),
        forced=forced if forced in ("open", "closed") else None,
        weight=float(weight) if isinstance(weight, int | float) else None,
        probe_after_s=float(probe) if isinstance(probe, int | float) else None,
        released_at=float(released) if isinstance(released, int | float) else None,
        changed=_changed_from(data.get("changed")),
    )


def _changed_from(data: Any) -> Changed:
    if not isinstance(data, dict):
        return Changed()
    return Changed(str(data.get("by", "")), str(data.get("reason", "")), float(data.get("at", 0)))


def check_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise ControlError("a reason is required for every change")
    if len(text) > MAX_REASON:
        raise ControlError(f"the reason is too long ({len(text)} characters, at most {MAX_REASON})")
    return text


def check_provider(provider: str, names: Sequence[str] = PROVIDER_NAMES) -> str:
    if provider not in names:
        raise ControlError(f"unknown provider {provider!r}: one of {', '.join(names)}")
    return provider


def updated(
    control: ProviderControl, action: str, value: Any = None, *, now: float = 0.0
) -> ProviderControl:
    """`control` after `action` (disable, enable, weight, force, probe-after, release);
    ControlError when the value does not fit. `force` takes open, closed or auto (the circuit
    decides again); `weight` and `probe-after` take a number, or None to go back to the
    configuration; `release` ends a reputation hold, stamped `now` (epoch seconds)."""
    if action == "release":
        return replace(control, released_at=now)
    if action == "disable":
        return replace(control, disabled=True)
    if action == "enable":
        return replace(control, disabled=False)
    if action == "force":
        if value not in ("open", "closed", "auto"):
            raise ControlError("force takes 'open', 'closed' or 'auto'")
        return replace(control, forced=None if value == "auto" else value)
    if action == "weight":
        return replace(control, weight=_number(value, "weight", 0.0, MAX_WEIGHT, positive=True))
    if action == "probe-after":
        seconds = _number(value, "seconds", 0.0, MAX_PROBE_AFTER_S, positive=False)
        return replace(control, probe_after_s=seconds)
    raise ControlError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")


def _number(value: Any, what: str, low: float, high: float, *, positive: bool) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ControlError(f"{what} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise ControlError(f"{what} must be a number, not {value!r}") from None
    if not (low < number if positive else low <= number) or number > high or number != number:
        bound = f"> {low:g}" if positive else f">= {low:g}"
        raise ControlError(f"{what} must be {bound} and <= {high:g}, not {value!r}")
    return number


class ControlStore:
    """The controls on an `ItemTable` (the status table's `ctl#` items)."""

    def __init__(
        self,
        table: ItemTable,
        *,
        clock: Any = time.time,
        names: Sequence[str] = PROVIDER_NAMES,
    ) -> None:
        self.names = tuple(names)  # the provider instances (providers[].name)
        self._table = table
        self._clock = clock

    async def load(self) -> Controls:
        providers: dict[str, ProviderControl] = {}
        for name in self.names:
            item = await self._table.get(PREFIX + name)
            if item is not None:
                providers[name] = _control_from(json.loads(str(item.get("c", "{}"))))
        pin_item = await self._table.get(PIN_KEY)
        pin = Pin()
        if pin_item is not None:
            data = json.loads(str(pin_item.get("c", "{}")))
            provider = data.get("provider")
            pin = Pin(provider if provider in self.names else None, _changed_from(data))
        return Controls(providers, pin, self.names)

    async def change(
        self, provider: str | None, action: str, value: Any = None, *, who: str, why: str | None
    ) -> Controls:
        """Apply one action, recording who and why in the item and in the history (first, so
        no change goes unrecorded); the controls as they are afterwards."""
        reason = check_reason(why)
        changed = Changed(who or "unknown", reason, self._clock())
        controls = await self.load()
        if action in ("pin", "unpin"):
            before = controls.pin.provider
            pinned = check_provider(provider or "", self.names) if action == "pin" else None
            await self._append(
                changed, action, pinned or before, None, _pin_state(before), _pin_state(pinned)
            )
            data = {"provider": pinned, **asdict(changed)}
            await self._table.put(PIN_KEY, {"c": json.dumps(data)})
            log.warning(
                "controls: %s by %s: %s",
                f"pinned to {pinned}" if pinned else "unpinned",
                who,
                reason,
            )
            return await self.load()
        name = check_provider(provider or "", self.names)
        current = controls.of(name)
        after = replace(updated(current, action, value, now=changed.at), changed=changed)
        shown = None if value is None or action == "release" else str(value)
        await self._append(changed, action, name, shown, _state(current), _state(after))
        await self._table.put(PREFIX + name, {"c": json.dumps(_control_json(after))})
        log.warning(
            "controls: %s %s%s by %s: %s",
            name,
            action,
            f" {shown}" if shown is not None else "",
            who,
            reason,
            extra={"provider": name},
        )
        return await self.load()

    async def _append(
        self,
        changed: Changed,
        action: str,
        provider: str | None,
        value: str | None,
        before: str,
        after: str,
    ) -> None:
        """One new history entry under the next number; a number already taken (a counter
        reset by hand) is skipped, never overwritten."""
        for _ in range(10):
            seq = await self._table.increment(HISTORY_SEQ)
            entry = HistoryEntry(
                seq, changed.at, changed.by, changed.reason, action, provider, value, before, after
            )
            data: dict[str, str | float] = {"h": json.dumps(entry.to_json()), "at": changed.at}
            if await self._table.put_new(_history_key(seq), data):
                return
        raise StoreError("put_item", "no free history number after 10 tries")

    async def history(self, provider: str | None = None, limit: int = 50) -> list[HistoryEntry]:
        """The last `limit` changes, newest first; with `provider`, those about it (its pin and
        unpin included), looking back at most HISTORY_SCAN entries."""
        if provider is not None:
            check_provider(provider, self.names)
        limit = max(1, min(limit, MAX_HISTORY_LIMIT))
        counter = await self._table.get(HISTORY_SEQ)
        seq = int(counter.get("n", 0)) if counter else 0
        found: list[HistoryEntry] = []
        floor = max(0, seq - HISTORY_SCAN)
        while seq > floor and len(found) < limit:
            # Everything asked at once without a filter; about 4 entries per match with one.
            size = limit - len(found) if provider is None else 100
            numbers = range(seq, max(floor, seq - size), -1)
            items = await self._table.get_many([_history_key(n) for n in numbers])
            for n in numbers:
                item = items.get(_history_key(n))
                if item is None:
                    continue  # a number taken by a write that then failed
                entry = HistoryEntry.from_json(json.loads(str(item.get("h", "{}"))))
                if provider is None or entry.provider == provider:
                    found.append(entry)
            seq = numbers[-1] - 1
        return found[:limit]

    async def node_rates(self) -> list[str]:
        """One line per live node with rated providers: its shares (emails/s) and SES's quota
        left (`gomail status`)."""
        lines = []
        for node_id in sorted(await self._table.members(NODE_INDEX)):
            item = await self._table.get(NODE_PREFIX + node_id)
            if item is None:
                continue
            shares = json.loads(str(item.get("shares", "{}")))
            rates = ", ".join(f"{name} {share:.1f}/s" for name, share in sorted(shares.items()))
            left = json.loads(str(item.get("quota_left", "{}")))
            quota = "".join(
                f"; {name} quota left today {float(n):.0f}" for name, n in sorted(left.items())
            )
            lines.append(f"node {node_id}: {rates or 'no rates'}{quota}")
        return lines


def _history_key(seq: int) -> str:
    return f"{HISTORY_PREFIX}{seq:012d}"


async def open_control_store(stack: AsyncExitStack, settings: Settings) -> ControlStore:
    """The controls on the status table; with `status.backend: none`, in this process's memory
    (a node then has no controls but its own)."""
    table = await open_item_table(stack, settings)
    return ControlStore(
        table if table is not None else MemoryItemTable(), names=settings.providers.known()
    )
