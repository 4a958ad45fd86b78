"""`gomail bounces`: the SMTP bounce listener (gomailpy.listeners.bounces), and `gomail bounces read
FILE…`, an operator's tool that shows how gomailpy reads bounce messages.

    gomail bounces --config FILE          # the listener, until SIGTERM
    gomail bounces read bounce.eml …      # one JSON line per event of each message, no queue

The listener needs aiosmtpd, the optional extra `gomailpy[smtp]`; the module that uses it is
imported only when the listener runs, so the rest of `gomail` (and `bounces read`) works without
it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from gomailpy.errors import EventFormatError
from gomailpy.events import Event, EventType
from gomailpy_cli.commands.shared import aiosmtpd_required, config_option, load, run_command

MAX_FILE_BYTES = 10 * 1024 * 1024  # of one message read (what the listener accepts)


@click.group("bounces", invoke_without_command=True)
@config_option
@click.pass_context
def bounces(ctx: click.Context, config_path: Path | None) -> None:
    """Run the SMTP bounce listener on events.bounce_host:events.bounce_port: it takes DSNs and
    complaints for bounces+<id>@<events.bounce_domain> and puts them on the events queue.
    `gomail bounces read FILE…` shows how messages are read, with no listener."""
    if ctx.invoked_subcommand is not None:
        return
    # The root's settings loading and error handling, imported here: gomailpy_cli.main imports this
    # module to register the command.

    with aiosmtpd_required("bounces"):
        from gomailpy.listeners.bounces import run_bounce_listener
    settings = load(config_path)
    if not settings.events.enabled:
        click.echo(
            "gomail bounces: events.enabled is false, so no email is sent with a bounce address;"
            " listening anyway",
            err=True,
        )
    run_command(run_bounce_listener(settings), fast=True)


@bounces.command("read")
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
def read(files: tuple[str, ...]) -> None:
    """Read each FILE (a whole message, as a relay mails it back; `-` for standard input) as the
    event consumer would, and print one JSON line per event: file, recipient, type (bounced,
    blocked, deferred, delivered, complained, autoresponded, unknown), subtype (hard or soft; a
    deferral is soft), reason (the taxonomy's: userunknown, mailboxfull, blocked, ...), status
    (the enhanced status code), diagnostic (the receiving server's words), messageId (the email
    it names, if any). Exits 1 if a file cannot be read as an email."""
    from gomailpy.feedback.dsn import read_message

    failed = False
    for name in files:
        try:
            data = _read_bytes(name)
            events = read_message(data)
        except (OSError, EventFormatError) as exc:
            click.echo(f"gomail bounces read: {name}: {exc}", err=True)
            failed = True
            continue
        for event in events:
            click.echo(json.dumps(_line(name, event), ensure_ascii=False))
    if failed:
        sys.exit(1)


def _read_bytes(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read(MAX_FILE_BYTES)
    with open(name, "rb") as file:
        return file.read(MAX_FILE_BYTES)


def _line(name: str, event: Event) -> dict[str, Any]:
    subtype = event.subtype
    if subtype is None and event.type is EventType.DEFERRED:
        subtype = "soft"  # still being tried: a failure for now
    return {
        "file": name,
        "recipient": event.recipient,
        "type": event.type.value,
        "subtype": subtype,
        "reason": event.reason,
        "status": event.status,
        "diagnostic": event.mta_response,
        "messageId": event.message_id,
    }
