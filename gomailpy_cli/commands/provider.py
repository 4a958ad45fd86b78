"""`gomail provider list|disable|enable|weight|force|probe-after|release|pin|unpin|history
--config FILE`: the operator's controls (gomailpy.operating.controls), for the whole cluster. Every
change needs `--reason` and is recorded with it and the OS user who made it, in the controls and in
their append-only history (`gomail provider history [NAME]`); every pipeline node applies it
within a few seconds (`steering.controls_poll_s`). It needs the shared status table
(`status.backend: dynamodb`): controls kept in memory would reach no node.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

import click

from gomailpy.operating.controls import (
    MAX_HISTORY_LIMIT,
    ControlError,
    Controls,
    ControlStore,
    HistoryEntry,
    open_control_store,
)
from gomailpy_cli.commands.shared import config_option, run_command, shared_table_settings

T = TypeVar("T")

reason_option = click.option(
    "--reason", "-r", required=True, help="Why (required; logged and shown in `gomail status`)."
)
# An instance name (providers[].name): checked against the configuration by the store.
provider_argument = click.argument("name")


def _with_store(config_path: Path | None, work: Callable[[ControlStore], Awaitable[T]]) -> T:
    settings = shared_table_settings(
        config_path,
        "gomail provider: the controls need the shared status table (status.backend:"
        " dynamodb); in memory they would reach no node",
    )

    async def run() -> T:
        async with AsyncExitStack() as stack:
            return await work(await open_control_store(stack, settings))

    result: T = run_command(run())
    return result


def _who() -> str:
    try:
        return f"{getpass.getuser()} (cli)"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return "unknown (cli)"


def _change(
    config_path: Path | None, name: str | None, action: str, value: Any, reason: str
) -> None:
    async def change(store: ControlStore) -> Controls:
        if name is not None and name not in store.names:
            known = ", ".join(store.names)
            raise click.BadParameter(f"no provider {name!r}: one of {known}", param_hint="NAME")
        try:
            return await store.change(name, action, value, who=_who(), why=reason)
        except ControlError as exc:  # a GomailError: answered here, as a usage error (exit 2)
            raise click.UsageError(str(exc)) from None

    _show(_with_store(config_path, change))


def _show(controls: Controls) -> None:
    width = max(9, *(len(name) + 1 for name in controls.names))
    for name in controls.names:
        control = controls.of(name)
        pinned = " (pinned)" if controls.pin.provider == name else ""
        active = ", ".join(control.active) or "as configured"
        changed = f"  [{control.changed.describe()}]" if control.changed.at else ""
        click.echo(f"{name:<{width}} {active}{pinned}{changed}")
    if controls.pin.changed.at:
        what = f"pinned to {controls.pin.provider}" if controls.pin.provider else "not pinned"
        click.echo(f"{'pin':<{width}} {what}  [{controls.pin.changed.describe()}]")


@click.group()
def provider() -> None:
    """The operator's controls over the providers, for every pipeline node at once."""


@provider.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="The controls as one JSON object.")
def list_(config_path: Path | None, as_json: bool) -> None:
    """Each provider's controls, who set them last, when and why."""

    async def load(store: ControlStore) -> Controls:
        return await store.load()

    controls = _with_store(config_path, load)
    if as_json:
        click.echo(json.dumps(controls.to_json()))
    else:
        _show(controls)


@provider.command()
@config_option
@reason_option
@provider_argument
def disable(config_path: Path | None, reason: str, name: str) -> None:
    """Send nothing through NAME (no share, no probe) until enabled again."""
    _change(config_path, name, "disable", None, reason)


@provider.command()
@config_option
@reason_option
@provider_argument
def enable(config_path: Path | None, reason: str, name: str) -> None:
    """Undo `disable`."""
    _change(config_path, name, "enable", None, reason)


@provider.command()
@config_option
@reason_option
@provider_argument
@click.argument("weight")
def weight(config_path: Path | None, reason: str, name: str, weight: str) -> None:
    """Set NAME's weight in the split (a number > 0), or `default` for the configured one."""
    _change(config_path, name, "weight", None if weight == "default" else weight, reason)


@provider.command()
@config_option
@reason_option
@provider_argument
@click.argument("state", type=click.Choice(["open", "closed", "auto"]))
def force(config_path: Path | None, reason: str, name: str, state: str) -> None:
    """Hold NAME's circuit open (no traffic, no probe) or closed (healthy), or `auto`."""
    _change(config_path, name, "force", state, reason)


@provider.command("probe-after")
@config_option
@reason_option
@provider_argument
@click.argument("seconds")
def probe_after(config_path: Path | None, reason: str, name: str, seconds: str) -> None:
    """Once NAME's circuit opens, wait SECONDS before probing it (`default`: every iteration)."""
    _change(config_path, name, "probe-after", None if seconds == "default" else seconds, reason)


@provider.command()
@config_option
@reason_option
@provider_argument
def pin(config_path: Path | None, reason: str, name: str) -> None:
    """Send all traffic through NAME, whatever the others' health."""
    _change(config_path, name, "pin", None, reason)


@provider.command()
@config_option
@reason_option
def unpin(config_path: Path | None, reason: str) -> None:
    """Undo `pin`: the split uses every provider again."""
    _change(config_path, None, "unpin", None, reason)


@provider.command()
@config_option
@reason_option
@provider_argument
def release(config_path: Path | None, reason: str, name: str) -> None:
    """End NAME's reputation hold now on every node (held past its bounce or complaint rate
    thresholds, it gets no mail until its hold ends or this); its rates start afresh."""
    _change(config_path, name, "release", None, reason)


@provider.command()
@config_option
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1, MAX_HISTORY_LIMIT),
    default=20,
    show_default=True,
    help="How many changes, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.argument("name", required=False)
def history(config_path: Path | None, limit: int, as_json: bool, name: str | None) -> None:
    """Every change to the controls (of NAME, if given), newest first: when, who, what, the
    state before and after, and why. Entries are appended, never rewritten."""

    async def read(store: ControlStore) -> list[HistoryEntry]:
        if name is not None and name not in store.names:
            known = ", ".join(store.names)
            raise click.BadParameter(f"no provider {name!r}: one of {known}", param_hint="NAME")
        return await store.history(name, limit)

    entries = _with_store(config_path, read)
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry.to_json()))
        return
    if not entries:
        click.echo("no change recorded" + (f" for {name}" if name else ""))
        return
    for entry in entries:
        click.echo(
            f"#{entry.seq:<5} {entry.when}  {entry.by}  {entry.what}:"
            f" {entry.before} -> {entry.after}  ({entry.reason})"
        )
