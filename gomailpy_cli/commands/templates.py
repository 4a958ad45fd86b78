"""`gomail templates put|get|list|delete --config FILE`: stored Handlebars templates
(gomailpy.email.templates), kept on the status table so every node renders the same one. They need
the shared table (`status.backend: dynamodb`): a memory table lives inside one process only.

    gomail templates put welcome --subject 'Hi {{name}}' --html-file welcome.html
    gomail templates get welcome            # the template as JSON
    gomail templates list                   # one id per line
    gomail templates delete welcome
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TypeVar

import click

from gomailpy.email.templates import Template, check_template
from gomailpy.store.items import open_item_table
from gomailpy.store.templates import TemplateStore
from gomailpy_cli.commands.shared import config_option, run_command, shared_table_settings

T = TypeVar("T")


def _with_store(config_path: Path | None, work: Callable[[TemplateStore], Awaitable[T]]) -> T:
    """Load settings (pointed at a running `gomail up` when no config says otherwise), open the
    template store, run `work` on it."""

    settings = shared_table_settings(
        config_path,
        "gomail templates: templates are shared through status.backend: dynamodb"
        " (a memory store lives inside one process only)",
    )

    async def run() -> T:
        async with AsyncExitStack() as stack:
            table = await open_item_table(stack, settings)
            assert table is not None
            return await work(TemplateStore(table))

    result: T = run_command(run())
    return result


def _part(text: str | None, path: Path | None, name: str) -> str:
    if text is not None and path is not None:
        raise click.UsageError(f"give --{name} or --{name}-file, not both")
    if path is not None:
        return path.read_text(encoding="utf-8")
    return text or ""


@click.group("templates")
def templates() -> None:
    """Stored Handlebars templates: subject, HTML and text."""


@templates.command("put")
@config_option
@click.argument("template_id")
@click.option("--subject", default=None, help="Subject template (one line).")
@click.option("--html", default=None, help="HTML template ({{x}} is escaped, {{{x}}} is not).")
@click.option("--text", default=None, help="Text template.")
@click.option("--html-file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--text-file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def put(
    config_path: Path | None,
    template_id: str,
    subject: str | None,
    html: str | None,
    text: str | None,
    html_file: Path | None,
    text_file: Path | None,
) -> None:
    """Store a template (replacing one with the same id); every part must compile."""
    template = Template(
        template_id,
        subject=subject or "",
        html=_part(html, html_file, "html"),
        text=_part(text, text_file, "text"),
    )
    problems = check_template(template)
    if problems:
        click.echo("gomail templates: not stored:\n" + "\n".join(problems), err=True)
        sys.exit(1)
    stored = _with_store(config_path, lambda store: store.put(template))
    click.echo(f"stored template {stored.id}")


@templates.command("get")
@config_option
@click.argument("template_id")
def get(config_path: Path | None, template_id: str) -> None:
    """Print a template as JSON (exit 1 if there is none)."""
    found = _with_store(config_path, lambda store: store.get(template_id))
    if found is None:
        click.echo(f"gomail templates: no template {template_id!r}", err=True)
        sys.exit(1)
    click.echo(json.dumps(found.to_json(), indent=2, ensure_ascii=False))


@templates.command("list")
@config_option
def list_(config_path: Path | None) -> None:
    """Every template id, one per line."""
    for template_id in _with_store(config_path, lambda store: store.list_ids()):
        click.echo(template_id)


@templates.command("delete")
@config_option
@click.argument("template_id")
def delete(config_path: Path | None, template_id: str) -> None:
    """Delete a template; mail naming it that is not yet sent will fail."""
    if not _with_store(config_path, lambda store: store.delete(template_id)):
        click.echo(f"gomail templates: no template {template_id!r}", err=True)
        sys.exit(1)
    click.echo(f"deleted template {template_id}")
