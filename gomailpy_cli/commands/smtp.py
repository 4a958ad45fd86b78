"""`gomail smtp --config FILE --tls-cert PEM --tls-key PEM`: SMTP submission
(gomailpy.listeners.submission).

It needs aiosmtpd, the optional extra `gomailpy[smtp]`; the module that uses it is imported only
when the command runs, so the rest of `gomail` works without it.
"""

from __future__ import annotations

from pathlib import Path

import click

from gomailpy_cli.commands.shared import aiosmtpd_required, config_option, load, run_command

_PEM = click.Path(dir_okay=False, exists=True, path_type=Path)


@click.command("smtp")
@config_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=2587, show_default=True, type=click.IntRange(0, 65535))
@click.option("--tls-cert", required=True, type=_PEM, help="PEM certificate (chain) for STARTTLS")
@click.option("--tls-key", required=True, type=_PEM, help="PEM private key of the certificate")
def smtp(config_path: Path | None, host: str, port: int, tls_cert: Path, tls_key: Path) -> None:
    """Take mail over SMTP (STARTTLS, then AUTH as `apikey` with an API key) and queue it."""

    with aiosmtpd_required("smtp"):
        from gomailpy.listeners.submission import run_submission, tls_context
    settings = load(config_path)
    run_command(
        run_submission(settings, tls_context(str(tls_cert), str(tls_key)), host, port), fast=True
    )
