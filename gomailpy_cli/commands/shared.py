"""What the command groups share: the `--config` option, the check that the optional extra
`gomailpy[smtp]` is installed, and the settings of a command that needs the shared status table.

Loading the settings (once: nothing below the command line reads the environment) and running a
command's coroutine live here too, so that main and the command groups import them from here and
this module imports neither (no import cycle).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from gomailpy.config.settings import Settings, load_settings
from gomailpy.errors import ConfigError, GomailError
from gomailpy.operating import eventloop
from gomailpy.operating.logs import configure_logging
from gomailpy.operating.up_state import UpState


def load(config_path: Path | None) -> Settings:
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        click.echo(f"gomail: configuration error:\n{exc}", err=True)
        sys.exit(2)
    configure_logging(settings.logging)
    return settings


def load_local(config_path: Path | None) -> tuple[Settings, UpState | None]:
    """Settings for an operator command, pointed at a running `gomail up` when nothing is
    configured explicitly (no --config, no GOMAILPY_* setting) or what is configured names its
    endpoint (gomailpy.operating.up_state), and that stack. Explicit configuration always wins."""
    from gomailpy.operating.up_state import (
        applies_to,
        explicit_configuration,
        read_state,
        settings_for,
        state_path,
    )

    settings = load(config_path)
    state = read_state(state_path(os.environ))
    if state is None:
        return settings, None
    given = explicit_configuration(os.environ, config_path)
    if not applies_to(state, settings, config_given=given is not None):
        click.echo(f"(not the local stack of `gomail up`, pid {state.pid}: {given})", err=True)
        return settings, None
    if given is None:
        click.echo(f"(the local stack of `gomail up`, pid {state.pid})", err=True)
    return settings_for(state, settings, config_given=given is not None), state


def run_command(coro: Any, *, fast: bool = False) -> Any:
    """Run a command's coroutine; `fast`: on uvloop when available (long-lived processes)."""
    try:
        return eventloop.run(coro) if fast else asyncio.run(coro)
    except GomailError as exc:
        click.echo(f"gomail: {exc}", err=True)
        sys.exit(1)


config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML config file (default: built-in local defaults). Env GOMAILPY_* overrides it.",
)


@contextmanager
def aiosmtpd_required(command: str) -> Iterator[None]:
    """Around the import of a module that uses aiosmtpd: without it, say which extra to install
    and exit 1 (any other missing module still raises)."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "aiosmtpd":
            raise
        click.echo(f"gomail {command} needs aiosmtpd: pip install 'gomailpy[smtp]'", err=True)
        sys.exit(1)


def shared_table_settings(config_path: Path | None, refusal: str) -> Settings:
    """Settings (pointed at a running `gomail up` when no config says otherwise) for a command
    whose data lives on the shared status table; without `status.backend: dynamodb` it prints
    `refusal` and exits 2."""

    settings, _ = load_local(config_path)
    if settings.status.backend != "dynamodb":
        click.echo(refusal, err=True)
        sys.exit(2)
    return settings
