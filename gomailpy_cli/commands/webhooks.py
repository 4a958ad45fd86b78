"""`gomail webhooks list|add|remove|enable|test|redrive`: the application's endpoints.

Endpoints are configuration (`webhooks.endpoints`), their secrets environment
(`GOMAILPY_WEBHOOKS__SECRETS`): `add` checks a URL (its host normalised, then every address
DNS gives for it: gomailpy.webhooks.targets; a refusal exits 2), makes a secret and prints
both to paste, the secret once; `remove` prints what to take out and forgets the endpoint's
state. What runs against the deployment: `list` (state, what is held back), `enable` (after a
410), `test` (one signed request now, its answer) and `redrive` (the dead-letter queue back).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

from gomailpy.config.settings import Settings
from gomailpy.config.webhook_targets import Target, checked_target
from gomailpy.config.webhooks import SECRETS_VARIABLE, WebhookEndpointSettings
from gomailpy.events import EventType, iso
from gomailpy.webhooks.outbox import Delivery, webhook_id
from gomailpy.webhooks.signing import new_secret
from gomailpy.webhooks.targets import GuardedResolver, TargetRefusedError
from gomailpy_cli.commands.shared import config_option, load, load_local, run_command

TYPES = sorted(t.value for t in EventType if t is not EventType.UNKNOWN)


def _settings(config_path: Path | None) -> Settings:
    return load_local(config_path)[0]


def _endpoint(settings: Settings, name: str) -> WebhookEndpointSettings:
    endpoint = settings.webhooks.endpoint(name)
    if endpoint is None:
        known = ", ".join(e.name for e in settings.webhooks.endpoints) or "none"
        raise click.ClickException(f"no endpoint {name!r} in webhooks.endpoints (known: {known})")
    return endpoint


async def _dns_problem(target: Target, allow_loopback: bool) -> str | None:
    """Why the addresses `target`'s host resolves to (IPv4 and IPv6) are refused, or None."""
    if target.address is not None:
        return None
    resolver = GuardedResolver(allow_loopback=allow_loopback)
    try:
        await resolver.resolve(target.host, target.port, socket.AF_UNSPEC)
    except TargetRefusedError as exc:
        return str(exc)
    except OSError as exc:  # perhaps only from where the nodes run: said, not refused
        click.echo(f"warning: {target.host} does not resolve from here ({exc})", err=True)
    finally:
        await resolver.close()
    return None


class _Refused(click.ClickException):
    """A target `add` will not take: exit 2, like a configuration check."""

    exit_code = 2

    def __init__(self, why: str) -> None:
        super().__init__(f"refused: {why}")


@click.group()
def webhooks() -> None:
    """Signed webhooks to your application: endpoints, tests, held-back deliveries."""


@webhooks.command("list")
@config_option
def list_(config_path: Path | None) -> None:
    """Every endpoint: URL, events, state (disabled after a 410), deliveries held back."""
    from contextlib import AsyncExitStack

    from gomailpy.queues.sqs import create_queue_client
    from gomailpy.webhooks.queue import peek_dead_letters
    from gomailpy.webhooks.state import open_endpoint_states

    settings = _settings(config_path)
    names = [e.name for e in settings.webhooks.endpoints]

    async def gather() -> tuple[dict[str, str], Counter[str]]:
        async with AsyncExitStack() as stack:
            states = await open_endpoint_states(stack, settings)
            disabled = await states.disabled(names)
            queues = await stack.enter_async_context(create_queue_client(settings))
            held = await peek_dead_letters(queues, settings, limit=1000)
        return (
            {n: f"disabled since {iso(d.at)}: {d.reason}" for n, d in disabled.items()},
            Counter(h.delivery.endpoint for h in held),
        )

    if not settings.webhooks.enabled:
        click.echo("webhooks are off (webhooks.enabled: false)")
    states, held = run_command(gather()) if settings.webhooks.enabled else ({}, Counter())
    secrets = set(settings.webhooks.secret_map())
    for e in settings.webhooks.endpoints:
        kinds = ",".join(e.events) or "all"
        click.echo(
            f"{e.name}  {e.url}  events={kinds}{'  batch' if e.batch else ''}"
            f"  {states.get(e.name, 'enabled')}  held back {held[e.name]}"
            f"{'' if e.name in secrets else '  (no secret set)'}"
        )
    click.echo(f"{len(names)} endpoint(s)")


@webhooks.command("add")
@config_option
@click.argument("name")
@click.argument("url")
@click.option("--event", "events", multiple=True, type=click.Choice(TYPES), help="Repeatable.")
@click.option("--batch", is_flag=True, help="Send JSON arrays of events (bursts batched).")
def add(
    config_path: Path | None, name: str, url: str, events: tuple[str, ...], batch: bool
) -> None:
    """Check NAME's URL, make its secret, print what to add to the config and the environment."""

    settings = load(config_path)
    if settings.webhooks.endpoint(name) is not None:
        raise click.ClickException(f"an endpoint {name!r} is configured already")
    try:
        WebhookEndpointSettings(name=name, url=url, events=list(events), batch=batch)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    allow = settings.webhooks.allow_loopback_targets
    try:
        target = checked_target(url, allow_loopback=allow)
    except TargetRefusedError as exc:
        raise _Refused(str(exc)) from None
    problem = asyncio.run(_dns_problem(target, allow))
    if problem:
        raise _Refused(f"{url!r}: {problem}")
    secret = new_secret()
    entry: dict[str, Any] = {
        "name": name,
        "url": target.url,  # as it will be requested: its host normalised
        **({"events": list(events)} if events else {}),
    }
    if batch:
        entry["batch"] = True
    click.echo("Add to webhooks.endpoints in the config:")
    click.echo(f"  - {json.dumps(entry)}")
    click.echo(f"and add this endpoint's secret to {SECRETS_VARIABLE} (shown once):")
    click.echo(f"  {SECRETS_VARIABLE}='{json.dumps({name: secret})}'")
    click.echo("Give the same secret to the application: it verifies each request with it.")


@webhooks.command("remove")
@config_option
@click.argument("name")
def remove(config_path: Path | None, name: str) -> None:
    """Forget NAME's state; print what to take out of the config and the environment."""
    from contextlib import AsyncExitStack

    from gomailpy.webhooks.state import open_endpoint_states

    settings = _settings(config_path)
    _endpoint(settings, name)

    async def forget() -> None:
        async with AsyncExitStack() as stack:
            await (await open_endpoint_states(stack, settings)).enable(name)

    run_command(forget())
    click.echo(f"Take the entry {name!r} out of webhooks.endpoints and its secret out of")
    click.echo(f"{SECRETS_VARIABLE}; deliveries already queued for it go to the dead-letter queue.")


@webhooks.command("enable")
@config_option
@click.argument("name")
def enable(config_path: Path | None, name: str) -> None:
    """Enable NAME again after it answered 410 (then `gomail webhooks redrive`)."""
    from contextlib import AsyncExitStack

    from gomailpy.webhooks.state import open_endpoint_states

    settings = _settings(config_path)
    _endpoint(settings, name)

    async def run() -> bool:
        async with AsyncExitStack() as stack:
            return await (await open_endpoint_states(stack, settings)).enable(name)

    was = run_command(run())
    click.echo(f"{name}: enabled" + ("" if was else " (it was not disabled)"))


@webhooks.command("test")
@config_option
@click.argument("name")
def test(config_path: Path | None, name: str) -> None:
    """Send NAME one signed `webhook.test` request now; print its answer (exit 1 unless 2xx)."""
    from gomailpy.webhooks.attempt import SigningKeys, attempt, open_webhook_session

    settings = _settings(config_path)
    endpoint = _endpoint(settings, name)
    if name not in settings.webhooks.secret_map():
        raise click.ClickException(f"no secret for {name!r}: set {SECRETS_VARIABLE}")
    now = time.time()
    body = {"type": "webhook.test", "timestamp": iso(now), "data": {"endpoint": name}}
    delivery = Delivery(name, webhook_id(name, [f"test-{now}"]), json.dumps(body), now)

    async def run() -> tuple[str, bool]:
        async with open_webhook_session(settings.webhooks) as session:
            answer = await attempt(
                session, settings.webhooks, endpoint, delivery, SigningKeys(settings.webhooks)
            )
        took = f"{answer.seconds * 1000:.0f} ms"
        if answer.verdict == "delivered":
            return f"{name}: HTTP {answer.status} in {took}: delivered", True
        return f"{name}: {answer.verdict}: {answer.problem} ({took})", False

    line, ok = asyncio.run(run())
    click.echo(line)
    sys.exit(0 if ok else 1)


@webhooks.command("redrive")
@config_option
@click.option("--endpoint", default=None, help="Only this endpoint's deliveries.")
@click.option("--limit", type=int, default=None, help="Move at most this many.")
def redrive_(config_path: Path | None, endpoint: str | None, limit: int | None) -> None:
    """Put deliveries from the webhook dead-letter queue back on the webhook queue."""
    from gomailpy.queues.sqs import create_queue_client
    from gomailpy.webhooks.queue import redrive

    settings = _settings(config_path)

    async def run() -> int:
        async with create_queue_client(settings) as queues:
            return await redrive(queues, settings, endpoint=endpoint, limit=limit)

    click.echo(f"{run_command(run())} delivery(ies) back on {settings.webhooks.queue}")
