"""`gomail groups list|add|remove|suppress|unsuppress --config FILE`: the unsubscribe groups
(gomailpy.bulk.groups, SendGrid's `asm` groups) and who left one, for operators. The same
store as `/asm/groups` and the same suppression list as `gomail suppression`, on the shared
status table (`status.backend: dynamodb`): a memory table lives inside one process only.

    gomail groups add Newsletter --description 'Monthly news'     # id: one past the highest
    gomail groups add Offers --id 7
    gomail groups list                                            # id, name, description
    gomail groups suppress 7 ann@example.org                      # Ann gets no more group 7 mail
    gomail groups unsuppress 7 ann@example.org
    gomail groups remove 7
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TypeVar

import click

from gomailpy.bulk.groups import MAX_DESCRIPTION, MAX_NAME, Group, GroupStore
from gomailpy.config.settings import Settings
from gomailpy.store.items import open_item_table
from gomailpy.store.suppressions import SuppressionStore, manual
from gomailpy_cli.commands.shared import config_option, run_command, shared_table_settings

T = TypeVar("T")
REFUSAL = (
    "gomail groups: groups are shared through status.backend: dynamodb"
    " (a memory store lives inside one process only)"
)
GROUP_ID = click.IntRange(1, 2**32 - 1)


def _run(config_path: Path | None, work: Callable[[Settings, AsyncExitStack], Awaitable[T]]) -> T:
    settings = shared_table_settings(config_path, REFUSAL)

    async def run() -> T:
        async with AsyncExitStack() as stack:
            return await work(settings, stack)

    result: T = run_command(run())
    return result


async def _groups(settings: Settings, stack: AsyncExitStack) -> GroupStore:
    table = await open_item_table(stack, settings)
    assert table is not None  # status.backend is dynamodb
    return GroupStore(table)


async def _suppression(settings: Settings, stack: AsyncExitStack) -> SuppressionStore:
    from gomailpy.store.backends import open_event_stores

    store = (await open_event_stores(stack, settings)).suppression
    if store is None:
        click.echo("gomail groups: suppression.enabled is false: there is no list", err=True)
        sys.exit(2)
    return store


@click.group("groups")
def groups() -> None:
    """Unsubscribe groups (SendGrid's asm): what a recipient can leave without leaving all
    mail. The same groups as /asm/groups."""


@groups.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(config_path: Path | None, as_json: bool) -> None:
    """Every group: id, name, description."""

    async def read(settings: Settings, stack: AsyncExitStack) -> list[Group]:
        return await (await _groups(settings, stack)).list()

    found = _run(config_path, read)
    for group in found:
        if as_json:
            click.echo(json.dumps(group.to_json(), ensure_ascii=False))
        else:
            click.echo(f"{group.id}  {group.name}  {group.description}".rstrip())
    if not as_json:
        click.echo(f"{len(found)} group(s)", err=True)


@groups.command()
@config_option
@click.option("--description", default="", help=f"At most {MAX_DESCRIPTION} characters.")
@click.option("--id", "group_id", type=GROUP_ID, help="Default: one past the highest.")
@click.argument("name")
def add(config_path: Path | None, description: str, group_id: int | None, name: str) -> None:
    """Add the group NAME (or rename the group --id)."""
    name = name.strip()
    if not 0 < len(name) <= MAX_NAME:
        raise click.BadParameter(f"1 to {MAX_NAME} characters", param_hint="NAME")
    if len(description) > MAX_DESCRIPTION:
        raise click.BadParameter(
            f"at most {MAX_DESCRIPTION} characters", param_hint="--description"
        )

    async def put(settings: Settings, stack: AsyncExitStack) -> Group:
        store = await _groups(settings, stack)
        group = Group(group_id or await store.next_id(), name, description)
        await store.add(group)
        return group

    group = _run(config_path, put)
    click.echo(f"group {group.id}: {group.name}")


@groups.command()
@config_option
@click.argument("group_id", metavar="ID", type=GROUP_ID)
def remove(config_path: Path | None, group_id: int) -> None:
    """Remove the group ID (who left it stays suppressed for it: `unsuppress` to undo that)."""

    async def drop(settings: Settings, stack: AsyncExitStack) -> bool:
        return await (await _groups(settings, stack)).remove(group_id)

    if not _run(config_path, drop):
        click.echo(f"gomail groups: no group {group_id}", err=True)
        sys.exit(1)
    click.echo(f"removed group {group_id}")


@groups.command()
@config_option
@click.option("--reason", default="added by an operator", show_default=True)
@click.argument("group_id", metavar="ID", type=GROUP_ID)
@click.argument("addresses", nargs=-1, required=True)
def suppress(
    config_path: Path | None, reason: str, group_id: int, addresses: tuple[str, ...]
) -> None:
    """Send ADDRESSES no more mail of the group ID (other mail still goes)."""
    for address in addresses:
        if "@" not in address:
            raise click.BadParameter(f"{address!r} is not an address", param_hint="ADDRESSES")

    async def put(settings: Settings, stack: AsyncExitStack) -> None:
        store = await _suppression(settings, stack)
        for address in addresses:
            await store.put(manual(address, reason, time.time(), group=group_id))

    _run(config_path, put)
    click.echo(f"suppressed {len(addresses)} address(es) for group {group_id}")


@groups.command()
@config_option
@click.argument("group_id", metavar="ID", type=GROUP_ID)
@click.argument("addresses", nargs=-1, required=True)
def unsuppress(config_path: Path | None, group_id: int, addresses: tuple[str, ...]) -> None:
    """Send ADDRESSES the group ID's mail again (their global entries, if any, stay)."""

    async def drop(settings: Settings, stack: AsyncExitStack) -> list[str]:
        store = await _suppression(settings, stack)
        return [a for a in addresses if not await store.remove(a, group=group_id)]

    absent = _run(config_path, drop)
    click.echo(f"removed {len(addresses) - len(absent)} address(es) from group {group_id}")
    for address in absent:
        click.echo(f"not suppressed for group {group_id}: {address}", err=True)
