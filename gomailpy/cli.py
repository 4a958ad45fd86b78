"""Command line: `gomail <command>` and `pipeline --config FILE`.

The composition root: it loads settings once, configures logging and hands the settings to the
component it starts. Nothing below it reads the environment.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from gomailpy.errors import ConfigError, GomailError
from gomailpy.logs import configure_logging
from gomailpy.settings import Settings, load_settings

config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML config file (default: built-in local defaults). Env GOMAILPY_* overrides it.",
)


def _load(config_path: Path | None) -> Settings:
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        click.echo(f"gomail: configuration error:\n{exc}", err=True)
        sys.exit(2)
    configure_logging(settings.logging)
    return settings


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except GomailError as exc:
        click.echo(f"gomail: {exc}", err=True)
        sys.exit(1)


@click.group()
@click.version_option(package_name="gomailpy")
def cli() -> None:
    """gomailpy: queue emails over SQS and deliver them through SES, SendGrid or SMTP."""


@cli.command()
@config_option
def init(config_path: Path | None) -> None:
    """Create the configured queues, each with a dead-letter queue (safe to run twice)."""
    from gomailpy.queue import create_queue_client

    settings = _load(config_path)

    async def create() -> list[str]:
        async with create_queue_client(settings) as queues:
            return [await queues.ensure_queue(entry) for entry in settings.queues.urls]

    for url in _run(create()):
        click.echo(f"ready: {url} (dead-letter queue: {url}{settings.queues.dlq_suffix})")


@cli.command("check-config")
@config_option
def check_config(config_path: Path | None) -> None:
    """Validate a config file and the environment; exit 0 if usable, 2 if not."""
    settings = _load(config_path)
    enabled = ", ".join(settings.providers.enabled()) or "none"
    click.echo(f"ok: {len(settings.queues.urls)} queue(s); providers enabled: {enabled}")


def pipeline_main() -> None:
    """Entry point of the `pipeline` console script: one pipeline node."""
    pipeline_command(standalone_mode=True)


@click.command("pipeline")
@config_option
def pipeline_command(config_path: Path | None) -> None:
    """Run one pipeline node: read the queues, send through the providers."""
    from pipeline.main import run_node

    settings = _load(config_path)
    _run(run_node(settings))


cli.add_command(pipeline_command)


@cli.command()
@config_option
def api(config_path: Path | None) -> None:
    """Run the HTTP API (POST /email/send)."""
    from api.app import run_api

    settings = _load(config_path)
    run_api(settings)


if __name__ == "__main__":
    cli()
