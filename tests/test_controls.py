"""The operator's controls: the pure steering of the split (pipeline.sending.controls) as tables,
held providers under them, and the store (gomailpy.operating.controls) with its history on an
in-memory item table."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gomailpy.operating.controls import (
    ControlError,
    Controls,
    ControlStore,
    Pin,
    ProviderControl,
    updated,
)
from gomailpy.operating.report import QueueStatus, format_status
from gomailpy.store.items import MemoryItemTable
from pipeline.sending.controls import Steering, steer
from pipeline.sending.health import Health
from pipeline.sending.splitter import ProviderView, paused, split
from pipeline.steering import ControlPoller

SES, SENDGRID, SMTP = (ProviderView(n, 1.0, True) for n in ("ses", "sendgrid", "smtp"))


def down(view: ProviderView) -> ProviderView:
    return ProviderView(view.name, view.weight, False)


def names(views: list[ProviderView]) -> list[str]:
    return [v.name for v in views]


@pytest.mark.parametrize(
    ("views", "controls", "opened_at", "now", "expected"),
    [
        # nothing set: the views as health sees them
        ([SES, SENDGRID, down(SMTP)], Controls(), {}, 0.0, ["ses", "sendgrid", "smtp"]),
        # disabled: gone, also its probe
        ([SES, SENDGRID], Controls({"ses": ProviderControl(disabled=True)}), {}, 0, ["sendgrid"]),
        # pinned: only that one, whatever its health
        ([SES, down(SENDGRID), SMTP], Controls(pin=Pin("sendgrid")), {}, 0, ["sendgrid"]),
        # a pin to a provider this node lacks is ignored
        ([SES, SMTP], Controls(pin=Pin("sendgrid")), {}, 0, ["ses", "smtp"]),
        # forced open: no traffic and no probe while another is healthy
        ([SES, SMTP], Controls({"ses": ProviderControl(forced="open")}), {}, 0, ["smtp"]),
        # ... but when every provider is down, all share again
        (
            [SES, down(SMTP)],
            Controls({"ses": ProviderControl(forced="open")}),
            {},
            0,
            ["ses", "smtp"],
        ),
        # probe-after: an opened circuit rests, then gets its probe again
        (
            [SES, down(SMTP)],
            Controls({"smtp": ProviderControl(probe_after_s=30)}),
            {"smtp": 100},
            120,
            ["ses"],
        ),
        (
            [SES, down(SMTP)],
            Controls({"smtp": ProviderControl(probe_after_s=30)}),
            {"smtp": 100},
            131,
            ["ses", "smtp"],
        ),
    ],
)
def test_steer(
    views: list[ProviderView],
    controls: Controls,
    opened_at: dict[str, float],
    now: float,
    expected: list[str],
) -> None:
    assert names(steer(views, controls, opened_at, now)) == expected


def test_forced_closed_and_weight_shape_the_split() -> None:
    controls = Controls(
        {"smtp": ProviderControl(forced="closed"), "ses": ProviderControl(weight=3.0)}
    )
    steered = steer([SES, SENDGRID, down(SMTP)], controls, {}, 0)
    assert all(v.healthy for v in steered)
    assignment = split(list(range(50)), steered)
    assert {name: len(batch) for name, batch in assignment.items()} == {
        "ses": 30,
        "sendgrid": 10,
        "smtp": 10,
    }


def test_steering_counts_rest_from_when_it_saw_the_circuit_open() -> None:
    now = [1000.0]
    steering = Steering(lambda: now[0])
    steering.controls = Controls({"smtp": ProviderControl(probe_after_s=10)})
    assert names(steering([SES, down(SMTP)])) == ["ses"]  # opened now: rests
    now[0] += 11
    assert names(steering([SES, down(SMTP)])) == ["ses", "smtp"]  # its probe
    assert names(steering([SES, SMTP])) == ["ses", "smtp"]  # closed: forgotten
    assert names(steering([SES, down(SMTP)])) == ["ses"]  # opened again: rests again


@pytest.mark.parametrize(
    ("action", "value", "problem"),
    [
        ("weight", 0, "weight must be > 0"),
        ("weight", -1, "weight must be > 0"),
        ("weight", "heavy", "must be a number"),
        ("weight", True, "must be a number"),
        ("weight", float("nan"), "weight must be"),
        ("probe-after", -5, "seconds must be >= 0"),
        ("force", "half", "force takes"),
        ("explode", None, "unknown action"),
    ],
)
def test_bad_values_are_refused(action: str, value: Any, problem: str) -> None:
    with pytest.raises(ControlError, match=problem):
        updated(ProviderControl(), action, value)


async def test_every_change_is_stored_with_who_and_why_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ControlStore(MemoryItemTable(), clock=lambda: 1_800_000_000.0)
    with caplog.at_level(logging.WARNING, "gomailpy.controls"):
        await store.change("ses", "disable", who="alice", why="SES outage, case 42")
        await store.change("smtp", "weight", "2.5", who="bob", why="relay has room")
        controls = await store.change("sendgrid", "pin", who="carol", why="drill")
    assert controls.of("ses").disabled and controls.of("ses").changed.by == "alice"
    assert controls.of("smtp").weight == 2.5
    assert controls.pin.provider == "sendgrid" and controls.pin.changed.reason == "drill"
    assert "controls: ses disable by alice: SES outage, case 42" in caplog.text
    lines = controls.describe()
    assert any(line.startswith("ses: disabled (by alice at 2027-01-15T08:00:00Z") for line in lines)
    controls = await store.change("ses", "enable", who="alice", why="back")
    controls = await store.change(None, "unpin", who="carol", why="drill over")
    assert not controls.of("ses").disabled and controls.pin.provider is None
    assert controls.describe() == [
        "smtp: weight 2.5 (by bob at 2027-01-15T08:00:00Z: relay has room)"
    ]
    shown = format_status([QueueStatus("q", None, None, "down")], {}, controls.describe())
    assert "controls: smtp: weight 2.5 (by bob" in shown


@pytest.mark.parametrize(
    ("provider", "action", "reason", "problem"),
    [
        ("ses", "disable", "", "a reason is required"),
        ("ses", "disable", "   ", "a reason is required"),
        ("ses", "disable", None, "a reason is required"),
        ("ses", "disable", "x" * 301, "too long"),
        ("postmark", "disable", "why not", "unknown provider"),
        (None, "pin", "why not", "unknown provider"),
    ],
)
async def test_a_change_without_reason_or_for_an_unknown_provider_is_refused(
    provider: str | None, action: str, reason: str | None, problem: str
) -> None:
    store = ControlStore(MemoryItemTable())
    with pytest.raises(ControlError, match=problem):
        await store.change(provider, action, who="x", why=reason)
    assert await store.load() == Controls()


def test_a_provider_with_its_daily_quota_nearly_spent_rests() -> None:
    assert names(steer([SES, SMTP], Controls(), {}, 0, None, {"ses"})) == ["smtp"]
    assert names(steer([SES, down(SMTP)], Controls(), {}, 0, None, {"ses"})) == ["ses", "smtp"]


# -- reputation holds under the controls --------------------------------------------------------


def held(view: ProviderView) -> ProviderView:
    return ProviderView(view.name, view.weight, False, held=True)


@pytest.mark.parametrize(
    ("views", "controls", "expected"),
    [
        # nothing set: the held one is passed on, marked, and the split gives it nothing
        ([SES, held(SMTP)], Controls(), {"ses": 30, "smtp": 0}),
        # forced closed heals a circuit, not a hold
        (
            [SES, held(SMTP)],
            Controls({"smtp": ProviderControl(forced="closed")}),
            {"ses": 30, "smtp": 0},
        ),
        # a weight set by hand does not bring it back either
        (
            [SES, held(SMTP)],
            Controls({"smtp": ProviderControl(weight=100)}),
            {"ses": 30, "smtp": 0},
        ),
        # the only one not held is forced open: it still carries the mail (a hold is not rest)
        (
            [SES, held(SMTP)],
            Controls({"ses": ProviderControl(forced="open")}),
            {"ses": 30, "smtp": 0},
        ),
        # pinned to a held provider: nothing goes out (paused), not through the held one
        ([SES, held(SMTP)], Controls(pin=Pin("smtp")), {}),
        # every provider held: paused, also with one forced closed
        ([held(SES), held(SMTP)], Controls({"ses": ProviderControl(forced="closed")}), {}),
        # held and disabled: the one left sends
        (
            [held(SES), SENDGRID, held(SMTP)],
            Controls({"ses": ProviderControl(disabled=True)}),
            {"sendgrid": 30, "smtp": 0},
        ),
    ],
)
def test_a_held_provider_gets_nothing_whatever_the_controls(
    views: list[ProviderView], controls: Controls, expected: dict[str, int]
) -> None:
    steering = Steering(lambda: 1000.0)
    steering.controls = controls
    for rotation in range(100):
        steered = steering(views)
        assignment = split(list(range(30)), steered, rotation)
        assert {name: len(batch) for name, batch in assignment.items()} == expected
        assert paused(steered) == (expected == {})


# -- the history: every change appended, never overwritten ---------------------------------------


async def test_every_change_is_appended_to_the_history_with_before_after_and_who() -> None:
    now = [1_800_000_000.0]
    store = ControlStore(MemoryItemTable(), clock=lambda: now[0])
    changes: list[tuple[str | None, str, Any, str, str]] = [
        ("ses", "disable", None, "alice", "SES outage, case 42"),
        ("ses", "weight", "2.5", "bob", "half the traffic"),
        ("smtp", "pin", None, "carol", "drill"),
        ("ses", "enable", None, "alice", "SES back"),
        (None, "unpin", None, "carol", "drill over"),
        ("sendgrid", "release", None, "dave", "list cleaned"),
    ]
    for provider, action, value, who, why in changes:
        now[0] += 60
        await store.change(provider, action, value, who=who, why=why)
    with pytest.raises(ControlError):  # refused: no entry
        await store.change("ses", "weight", "-1", who="eve", why="oops")

    entries = await store.history()
    assert [e.seq for e in entries] == [6, 5, 4, 3, 2, 1]  # newest first
    assert [(e.provider, e.action, e.by, e.reason) for e in reversed(entries)] == [
        ("ses", "disable", "alice", "SES outage, case 42"),
        ("ses", "weight", "bob", "half the traffic"),
        ("smtp", "pin", "carol", "drill"),
        ("ses", "enable", "alice", "SES back"),
        ("smtp", "unpin", "carol", "drill over"),  # the provider that was pinned
        ("sendgrid", "release", "dave", "list cleaned"),
    ]
    first, second, pin, enable, unpin, release = reversed(entries)
    assert (first.before, first.after) == ("as configured", "disabled")
    assert (second.before, second.after) == ("disabled", "disabled, weight 2.5")
    assert second.value == "2.5" and second.what == "ses weight 2.5"
    assert (pin.before, pin.after, pin.what) == ("not pinned", "pinned to smtp", "pin smtp")
    assert (enable.before, enable.after) == ("disabled, weight 2.5", "weight 2.5")
    assert (unpin.before, unpin.after) == ("pinned to smtp", "not pinned")
    assert release.at == 1_800_000_360.0 and release.when == "2027-01-15T08:06:00Z"
    # the controls item keeps only the last change; the history keeps them all
    assert (await store.load()).of("ses").changed.reason == "SES back"
    assert [e.action for e in await store.history("ses")] == ["enable", "weight", "disable"]
    assert [e.action for e in await store.history("smtp")] == ["unpin", "pin"]
    assert [e.seq for e in await store.history(limit=2)] == [6, 5]
    assert (await store.load()).of("sendgrid").released_at == 1_800_000_360.0


async def test_history_entries_are_never_overwritten() -> None:
    table = MemoryItemTable()
    store = ControlStore(table, clock=lambda: 1_800_000_000.0)
    await store.change("ses", "disable", who="alice", why="first")
    entry = await table.get("ctlh#000000000001")
    assert entry is not None
    assert not await table.put_new("ctlh#000000000001", {"h": "{}"})  # refused
    # a counter set back by hand: the next change skips the taken number
    await table.put("ctlh#seq", {"n": 0.0})
    await store.change("ses", "enable", who="bob", why="second")
    assert await table.get("ctlh#000000000001") == entry
    assert [(e.seq, e.reason) for e in await store.history()] == [(2, "second"), (1, "first")]


async def test_a_release_ends_the_hold_on_every_node_that_reads_it() -> None:
    store = ControlStore(MemoryItemTable())
    health = {"ses": Health(1, 1), "smtp": Health(1, 1)}
    poller = ControlPoller(store, Steering(lambda: 0.0), 60, health)
    await store.change("ses", "release", who="old", why="a release before this node read")
    await poller.refresh()  # the first read: notes it, there is nothing to release
    health["ses"].held = "hard bounce rate 5.00% > 4.00%"
    health["smtp"].held = "complaint rate 0.2% > 0.08%"
    await poller.refresh()
    assert health["ses"].held and health["smtp"].held  # the old release does not apply
    await store.change("ses", "release", who="alice", why="list cleaned")
    await poller.refresh()
    assert health["ses"].held is None and health["ses"].healthy
    assert health["smtp"].held  # only the one released
    health["ses"].held = "held again"
    await poller.refresh()
    assert health["ses"].held == "held again"  # the same release is applied once
