"""What the command groups share: the `--config` option, the check that the optional extra
`gomailpy[smtp]` is installed, and the settings of a command that needs the shared status table.

Settings loading and the async runner stay in the composition root (gomailpy.cli); the
functions here import it when they run, since gomailpy.cli imports the command modules.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from gomailpy.settings import Settings

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
    from gomailpy.cli import _load_local

    settings, _ = _load_local(config_path)
    if settings.status.backend != "dynamodb":
        click.echo(refusal, err=True)
        sys.exit(2)
    return settings
