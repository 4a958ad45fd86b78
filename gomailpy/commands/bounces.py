"""`gomail bounces --config FILE`: the SMTP bounce listener (gomailpy.bounces).

It needs aiosmtpd, the optional extra `gomailpy[smtp]`; the module that uses it is imported only
when the command runs, so the rest of `gomail` works without it.
"""

from __future__ import annotations

from pathlib import Path

import click

from gomailpy.commands.shared import aiosmtpd_required, config_option


@click.command("bounces")
@config_option
def bounces(config_path: Path | None) -> None:
    """Run the SMTP bounce listener on events.bounce_host:events.bounce_port: it takes DSNs and
    complaints for bounces+<id>@<events.bounce_domain> and puts them on the events queue."""
    # The root's settings loading and error handling, imported here: gomailpy.cli imports this
    # module to register the command.
    from gomailpy.cli import _load, _run

    with aiosmtpd_required("bounces"):
        from gomailpy.bounces import run_bounce_listener
    settings = _load(config_path)
    if not settings.events.enabled:
        click.echo(
            "gomail bounces: events.enabled is false, so no email is sent with a bounce address;"
            " listening anyway",
            err=True,
        )
    _run(run_bounce_listener(settings), fast=True)
