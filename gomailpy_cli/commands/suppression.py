"""`gomail suppression list|add|remove|import|export --config FILE`: the suppression list
(gomailpy.store.suppressions), for operators. It needs the shared list (`status.backend: dynamodb`):
a memory list lives inside one process only.

Export writes one JSON object per line (`{"address", "kind", "reason", "provider", "firstSeen",
"lastSeen"}`); import reads that, or CSV lines `address[,reason]` (a header line `address,...`
is skipped), so an export from one deployment, or another service's list, loads as it is.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from gomailpy.config.settings import Settings
from gomailpy.store.suppressions import Suppression, SuppressionStore, manual
from gomailpy_cli.commands.shared import config_option, load_local, run_command

T = TypeVar("T")


@asynccontextmanager
async def _open_list(settings: Settings) -> AsyncIterator[SuppressionStore]:
    from gomailpy.store.backends import open_event_stores

    async with AsyncExitStack() as stack:
        store = (await open_event_stores(stack, settings)).suppression
        if store is None or settings.status.backend != "dynamodb":
            click.echo(
                "gomail suppression: the shared list needs status.backend: dynamodb and"
                " suppression.enabled (a memory list lives inside one process only)",
                err=True,
            )
            sys.exit(2)
        yield store


def _with_list(config_path: Path | None, work: Callable[[SuppressionStore], Awaitable[T]]) -> T:
    """Load settings, open the list, run `work` on it (errors as the other commands print them)."""

    settings, _ = load_local(config_path)  # beside `gomail up`: its status store

    async def run() -> T:
        async with _open_list(settings) as store:
            return await work(store)

    result: T = run_command(run())
    return result


async def _all(store: SuppressionStore) -> AsyncIterator[Suppression]:
    cursor: str | None = None
    while True:
        page, cursor = await store.page(cursor, 500)
        for entry in page:
            yield entry
        if cursor is None:
            return


def read_entries(lines: Iterable[str], reason: str, now: float) -> list[Suppression]:
    """Entries from JSON lines (an export) or CSV lines `address[,reason]`."""
    entries = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("{"):
            try:
                entries.append(Suppression.from_json(json.loads(text)))
            except (ValueError, KeyError) as exc:
                raise click.ClickException(f"line {number}: not an entry: {exc}") from None
            continue
        fields = next(csv.reader([text]))
        if number == 1 and fields[0].strip().lower() in ("address", "email"):
            continue
        if "@" not in fields[0]:
            raise click.ClickException(f"line {number}: {fields[0]!r} is not an address")
        why = fields[1].strip() if len(fields) > 1 and fields[1].strip() else reason
        entries.append(manual(fields[0], why, now))
    return entries


@click.group()
def suppression() -> None:
    """The suppression list: addresses no provider is sent to (hard bounces, complaints,
    unsubscribes, repeated soft bounces, and your own)."""


@suppression.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(config_path: Path | None, as_json: bool) -> None:
    """Every suppressed address: address, kind, provider, first and last seen, reason."""

    async def show(store: SuppressionStore) -> int:
        count = 0
        async for entry in _all(store):
            count += 1
            if as_json:
                click.echo(json.dumps(entry.to_json()))
            else:
                click.echo(
                    f"{entry.address}  {entry.kind}  {entry.provider or '-'}  {entry.first_seen}"
                    f"  {entry.last_seen}  {entry.reason}"
                )
        return count

    count = _with_list(config_path, show)
    if not as_json:
        click.echo(f"{count} suppressed address(es)", err=True)


@suppression.command()
@config_option
@click.option("--reason", default="added by an operator", show_default=True)
@click.argument("addresses", nargs=-1, required=True)
def add(config_path: Path | None, reason: str, addresses: tuple[str, ...]) -> None:
    """Suppress ADDRESSES."""

    async def put(store: SuppressionStore) -> None:
        for address in addresses:
            await store.put(manual(address, reason, time.time()))

    _with_list(config_path, put)
    click.echo(f"suppressed {len(addresses)} address(es)")


@suppression.command()
@config_option
@click.argument("addresses", nargs=-1, required=True)
def remove(config_path: Path | None, addresses: tuple[str, ...]) -> None:
    """Take ADDRESSES off the list (their soft bounces are forgotten too)."""

    async def drop(store: SuppressionStore) -> list[str]:
        return [a for a in addresses if not await store.remove(a)]

    absent = _with_list(config_path, drop)
    click.echo(f"removed {len(addresses) - len(absent)} address(es)")
    for address in absent:
        click.echo(f"not suppressed: {address}", err=True)


@suppression.command("import")
@config_option
@click.option("--reason", default="imported", show_default=True, help="For CSV lines without one.")
@click.argument("source", type=click.File("r"))
def import_(config_path: Path | None, reason: str, source: IO[str]) -> None:
    """Add the entries in SOURCE (a file, or - for standard input): JSON lines or CSV."""
    entries = read_entries(source, reason, time.time())

    async def put(store: SuppressionStore) -> None:
        for entry in entries:
            await store.put(entry)

    _with_list(config_path, put)
    click.echo(f"imported {len(entries)} address(es)")


@suppression.command()
@config_option
@click.argument("target", type=click.File("w"), default="-")
def export(config_path: Path | None, target: IO[str]) -> None:
    """Write every entry to TARGET (default: standard output), one JSON object per line."""

    async def collect(store: SuppressionStore) -> list[dict[str, Any]]:
        return [entry.to_json() async for entry in _all(store)]

    for entry in _with_list(config_path, collect):
        target.write(json.dumps(entry) + "\n")
