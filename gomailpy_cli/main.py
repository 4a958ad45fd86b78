"""Command line: `gomail <command>` and `pipeline --config FILE`.

The composition root: it loads settings once, configures logging and hands the settings to the
component it starts. Nothing below it reads the environment.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from gomailpy.config.settings import SCOPES
from gomailpy.errors import ConfigError
from gomailpy_cli.commands.bounces import bounces
from gomailpy_cli.commands.groups import groups
from gomailpy_cli.commands.provider import provider
from gomailpy_cli.commands.shared import config_option, load, load_local, run_command
from gomailpy_cli.commands.smtp import smtp
from gomailpy_cli.commands.suppression import suppression
from gomailpy_cli.commands.templates import templates
from gomailpy_cli.commands.webhooks import webhooks


@click.group()
@click.version_option(package_name="gomailpy")
def cli() -> None:
    """gomailpy: queue emails over SQS and deliver them through SES, SendGrid or SMTP."""


@cli.command()
@config_option
def init(config_path: Path | None) -> None:
    """Create the configured queues, each with a dead-letter queue (safe to run twice), the
    status table (status.backend dynamodb), the claim-check bucket (claim_check.bucket) and,
    with events.enabled, the events queue, SNS topic and SES configuration set."""
    from gomailpy.operating.resources import ensure_resources
    from gomailpy.queues.sqs import create_queue_client

    settings, _ = load_local(config_path)

    async def create() -> list[str]:
        async with create_queue_client(settings) as queues:
            urls = [await queues.ensure_queue(entry) for entry in settings.queues.urls]
        return urls + await ensure_resources(settings)

    for ready in run_command(create()):
        if " " in ready:  # a resource described in words, not a queue URL
            click.echo(f"ready: {ready}")
        else:
            click.echo(f"ready: {ready} (dead-letter queue: {ready}{settings.queues.dlq_suffix})")


@cli.command("check-config")
@config_option
def check_config(config_path: Path | None) -> None:
    """Validate a config file and the environment; exit 0 if usable, 2 if not."""
    settings = load(config_path)
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

    settings, _ = load_local(config_path)  # beside `gomail up`: its status store too
    run_command(run_node(settings), fast=True)


cli.add_command(pipeline_command)
cli.add_command(bounces)
cli.add_command(suppression)
cli.add_command(groups)
cli.add_command(templates)
cli.add_command(webhooks)
cli.add_command(smtp)
cli.add_command(provider)


@cli.command()
@config_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="API processes sharing the port (SO_REUSEPORT); one per core to use.",
)
def api(config_path: Path | None, workers: int) -> None:
    """Run the HTTP API (POST /email/send)."""
    from api.app import check_api_settings
    from api.workers import run_workers

    settings, _ = load_local(config_path)  # beside `gomail up`: its status store too
    try:
        check_api_settings(settings)
    except ConfigError as exc:
        click.echo(f"gomail: configuration error:\n{exc}", err=True)
        sys.exit(2)
    sys.exit(run_workers(settings, workers))


@cli.command()
@click.option(
    "--api",
    "api_url",
    default=None,
    help="The API's URL (default: the running `gomail up`'s, else http://127.0.0.1:8000).",
)
@click.option("--from", "from_email", default="gomail@example.com", show_default=True)
@click.option("--to", "to_email", default="someone@example.org", show_default=True)
@click.option("--subject", default="Hello from gomailpy", show_default=True)
@click.option("--body", default="Sent with `gomail send`.", show_default=True)
@click.option("--count", "-n", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--concurrency", "-c", default=16, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--api-key", envvar="GOMAILPY_API_KEY", default=None, help="When the API requires keys."
)
def send(
    api_url: str | None,
    from_email: str,
    to_email: str,
    subject: str,
    body: str,
    count: int,
    concurrency: int,
    api_key: str | None,
) -> None:
    """Send one email (or --count N, with a progress bar) to a running API."""
    from gomailpy.operating.up_state import explicit_configuration, read_state, state_path
    from gomailpy_cli.api_client import post_emails

    if api_url is None:  # the running `gomail up`'s, unless configuration is given explicitly
        explicit = explicit_configuration(os.environ, None)
        running = None if explicit else read_state(state_path(os.environ))
        api_url = running.api_url if running is not None else "http://127.0.0.1:8000"
    bodies = [
        {
            "email": {
                "fromEmail": from_email,
                "toEmail": to_email,
                "subject": subject if count == 1 else f"{subject} #{i + 1}",
                "body": body,
            }
        }
        for i in range(count)
    ]
    if count == 1:
        tally = asyncio.run(post_emails(api_url, bodies, api_key=api_key))
    else:
        with click.progressbar(length=count, label=f"sending {count} emails") as bar:
            tally = asyncio.run(
                post_emails(
                    api_url,
                    bodies,
                    concurrency=concurrency,
                    on_done=lambda: bar.update(1),
                    api_key=api_key,
                )
            )
    if count == 1 and tally.message_ids:
        click.echo(f"queued: messageId {tally.message_ids[0]}")
    else:
        summary = ", ".join(
            f"{status or 'no answer'}: {n}" for status, n in sorted(tally.statuses.items())
        )
        click.echo(f"{len(tally.message_ids)} of {count} queued ({summary})")
    for error, n in tally.errors.most_common(5):
        click.echo(f"  {n} x {error}", err=True)
    if len(tally.message_ids) < count:
        sys.exit(1)


@cli.command()
@config_option
@click.option(
    "--node",
    "nodes",
    multiple=True,
    help="A pipeline node's admin URL (repeatable; default: the running `gomail up`'s nodes,"
    " else the configured admin port).",
)
def status(config_path: Path | None, nodes: tuple[str, ...]) -> None:
    """Queue depths, in-flight and dead letters per queue; provider health per pipeline node."""
    from gomailpy.operating.report import control_lines, format_status, node_status, queue_status
    from gomailpy.queues.sqs import create_queue_client

    settings, running = load_local(config_path)
    admin_urls = list(nodes) or (
        running.admin_urls
        if running is not None
        else [f"http://{settings.pipeline.admin_host}:{settings.pipeline.admin_port}"]
    )

    async def gather() -> str:
        async with create_queue_client(settings) as queues:
            rows = await queue_status(queues, settings.queues.urls)
        nodes_found = await node_status(admin_urls)
        return format_status(rows, nodes_found, await control_lines(settings))

    click.echo(run_command(gather()))


@cli.command("hash-key")
@click.option("--new", "make_new", is_flag=True, help="Make a random key; print it and its hash.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(SCOPES),
    help="What the key may do (repeatable); print the api.api_keys entry with these scopes."
    " None: every scope.",
)
def hash_key(make_new: bool, scopes: tuple[str, ...]) -> None:
    """Print the SHA-256 hash of an API key for api.api_key_hashes, or with --scope the
    api.api_keys entry that gives it those scopes (the key is read from stdin)."""
    from api.auth import hash_key_command

    if make_new:
        click.echo(hash_key_command(None, scopes))
        return
    key = click.prompt("API key", hide_input=True) if sys.stdin.isatty() else sys.stdin.read()
    if not key.strip():
        raise click.UsageError("no key given (use --new to make one)")
    click.echo(hash_key_command(key, scopes))


@cli.group()
def dlq() -> None:
    """The dead-letter queues: list what failed and why, put it back."""


@dlq.command("list")
@config_option
@click.option("--limit", default=100, show_default=True, help="At most this many per queue.")
def dlq_list(config_path: Path | None, limit: int) -> None:
    """List dead letters (without removing them): message id, kind, reason, recipients."""
    from gomailpy.queues.deadletter import describe, list_dead_letters
    from gomailpy.queues.sqs import create_queue_client

    settings, _ = load_local(config_path)

    async def gather() -> list[str]:
        async with create_queue_client(settings) as queues:
            return [describe(letter) for letter in await list_dead_letters(queues, limit)]

    lines = run_command(gather())
    for line in lines:
        click.echo(line)
    click.echo(f"{len(lines)} dead letter(s)")


@dlq.command("redrive")
@config_option
@click.option("--include-unreadable", is_flag=True, help="Also move messages that cannot be read.")
@click.option("--limit", type=int, default=None, help="Move at most this many.")
def dlq_redrive(config_path: Path | None, include_unreadable: bool, limit: int | None) -> None:
    """Move dead letters back to their queues for another try."""
    from gomailpy.queues.deadletter import redrive
    from gomailpy.queues.sqs import create_queue_client

    settings, _ = load_local(config_path)

    async def move() -> tuple[int, int]:
        async with create_queue_client(settings) as queues:
            return await redrive(queues, include_unreadable=include_unreadable, limit=limit)

    moved, skipped = run_command(move())
    note = f"; {skipped} unreadable left (see --include-unreadable)" if skipped else ""
    click.echo(f"moved {moved} message(s) back to their queues{note}")


@cli.command()
@config_option
@click.option("--nodes", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--api-port", type=int, default=None, help="Default: api.port; 0 picks a free one.")
@click.option("--open/--no-open", "open_browser", default=None, help="Open the form in a browser.")
@click.option("--run-for", type=float, default=None, help="Stop by itself after this many seconds.")
def up(
    config_path: Path | None,
    nodes: int,
    api_port: int | None,
    open_browser: bool | None,
    run_for: float | None,
) -> None:
    """Run the whole system locally: LocalStack, queues, stand-ins, API + form, pipeline nodes."""
    import os

    try:
        # Development tooling in a distribution of its own (local/): production installs lack it.
        from gomailpy_local.up import UpOptions, run_up
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "gomailpy_local":
            raise  # installed, but something it needs is missing: say which
        click.echo(
            "gomail up needs the local stack: pip install -e ./local from a gomailpy checkout"
            " (make up installs it)",
            err=True,
        )
        sys.exit(1)

    settings = load(config_path)
    if open_browser is None:
        open_browser = bool(os.environ.get("DISPLAY") or sys.platform == "darwin")
    from gomailpy.operating.up_state import state_path

    options = UpOptions(
        nodes=nodes,
        api_port=api_port,
        open_browser=open_browser,
        run_for_s=run_for,
        state_file=state_path(os.environ),
    )
    run_command(run_up(settings, options, echo=lambda line: click.echo(line)))


if __name__ == "__main__":
    cli()
