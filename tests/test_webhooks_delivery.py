"""The webhook deliverer against receivers that misbehave, over a real webhook queue (LocalStack):
a receiver that fails then recovers gets every event once; a hanging one delays nobody else; a
410 disables its endpoint (and `redrive` sends what was held back once it is enabled again); a
50 MB answer or a redirect changes nothing; a name that now resolves to a private or metadata
address goes to the dead-letter queue at once, with why."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver
from standardwebhooks import Webhook

from gomailpy import metrics
from gomailpy.config.settings import Settings
from gomailpy.events import Event, EventType, iso
from gomailpy.queues.sqs import QueueClient, create_queue_client
from gomailpy.webhooks.attempt import open_webhook_session
from gomailpy.webhooks.outbox import Outbox
from gomailpy.webhooks.queue import ensure_webhook_queue, peek_dead_letters, redrive
from gomailpy.webhooks.signing import new_secret
from gomailpy.webhooks.state import MemoryEndpointStates
from pipeline.webhooks import WebhookDeliverer
from tests.support import StartServer, make_settings, unique
from tests.test_webhooks_targets import Answering

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Receiver:
    """A test endpoint: verifies like an application, keeps the events of 2xx answers."""

    secret: str
    answer: Handler | None = None  # None: 204
    url: str = ""
    attempts: Counter[str] = field(default_factory=Counter)  # webhook-id -> requests
    kept: list[str] = field(default_factory=list)  # webhook ids answered 2xx, in order
    events: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        payload = Webhook(self.secret).verify(body, dict(request.headers))
        webhook_id = request.headers["webhook-id"]
        self.attempts[webhook_id] += 1
        response = await self.answer(request) if self.answer else web.Response(status=204)
        if 200 <= response.status < 300:
            self.kept.append(webhook_id)
            self.events += payload if isinstance(payload, list) else [payload]
        return response


@dataclass
class Hooks:
    settings: Settings
    queues: QueueClient
    outbox: Outbox
    deliverer: WebhookDeliverer
    states: MemoryEndpointStates
    receivers: dict[str, Receiver]

    async def publish(self, count: int) -> list[Event]:
        events = [
            Event(
                id=unique("ev"),
                message_id=f"m-{n}",
                recipient=f"r{n}@example.org",
                provider="ses",
                type=EventType.DELIVERED,
                at=iso(1_800_000_000 + n),
            )
            for n in range(count)
        ]
        await self.outbox.publish(events)
        return events


async def start_hooks(
    stack: AsyncExitStack,
    endpoint_url: str,
    start_server: StartServer,
    receivers: dict[str, Receiver],
    *,
    endpoints: dict[str, dict[str, Any]] | None = None,
    clock: Callable[[], float] = time.time,
    resolver: AbstractResolver | None = None,
    host: str | None = None,
    **webhooks: Any,
) -> Hooks:
    """`resolver`: DNS for the deliverer's session (a stub); `host`: the name in the endpoints'
    URLs instead of 127.0.0.1."""
    for receiver in receivers.values():
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        server = await start_server(app)
        receiver.url = str(server.make_url("/hook"))
        if host is not None:
            receiver.url = f"http://{host}:{server.port}/hook"
    settings = make_settings(
        endpoint_url,
        queue_count=1,
        webhooks={
            "enabled": True,
            "queue": unique("hooks"),
            "allow_loopback_targets": True,  # the receivers are on 127.0.0.1
            "retry_base_delay_s": 1,
            "attempt_timeout_s": 3,
            "endpoints": [
                {"name": name, "url": r.url, **(endpoints or {}).get(name, {})}
                for name, r in receivers.items()
            ],
            "secrets": json.dumps({name: r.secret for name, r in receivers.items()}),
            **webhooks,
        },
    )
    await ensure_webhook_queue(settings)
    queues = await stack.enter_async_context(create_queue_client(settings))
    states = MemoryEndpointStates()
    session = None
    if resolver is not None:
        session = open_webhook_session(settings.webhooks, resolver=resolver)
        stack.push_async_callback(session.close)
    deliverer = WebhookDeliverer(
        settings, queues, states, session=session, state_refresh_s=0, clock=clock
    )
    await stack.enter_async_context(deliverer)
    return Hooks(settings, queues, Outbox(settings, queues), deliverer, states, receivers)


def delivered(endpoint: str) -> float:
    return metrics.sample(
        "gomailpy_webhook_attempts_total", {"endpoint": endpoint, "outcome": "delivered"}
    )


async def until(check: Callable[[], bool], what: str, tries: int = 600) -> None:
    for _ in range(tries):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


async def test_a_receiver_failing_then_recovering_gets_every_event_exactly_once(
    sqs_endpoint: str, stack: AsyncExitStack, start_server: StartServer
) -> None:
    failing = True

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=500 if failing else 200)

    receiver = Receiver(new_secret(), answer)
    hooks = await start_hooks(stack, sqs_endpoint, start_server, {"app": receiver})
    events = await hooks.publish(12)
    await until(lambda: len(receiver.attempts) == 12, "every event tried once")
    await until(lambda: max(receiver.attempts.values()) >= 2, "a retry")
    failing = False
    await until(lambda: len(receiver.kept) == 12, "every event delivered")
    await asyncio.sleep(1.5)  # time for a duplicate, if there were one, to arrive
    assert sorted(e["data"]["id"] for e in receiver.events) == sorted(e.id for e in events)
    assert Counter(receiver.kept).most_common(1)[0][1] == 1  # each once
    assert set(receiver.kept) == set(receiver.attempts)  # the ids the failures carried


async def test_a_hanging_endpoint_does_not_delay_another(
    sqs_endpoint: str, stack: AsyncExitStack, start_server: StartServer
) -> None:
    hanging, release = asyncio.Event(), asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        hanging.set()
        await release.wait()  # until the test is over
        return web.Response(status=204)

    slow, fast = Receiver(new_secret(), hang), Receiver(new_secret())
    hooks = await start_hooks(
        stack,
        sqs_endpoint,
        start_server,
        {"slow": slow, "fast": fast},
        endpoints={"slow": {"concurrency": 2}},
        attempt_timeout_s=60,
    )
    await hooks.publish(40)
    await until(lambda: len(fast.kept) == 40, "the fast endpoint has every event")
    assert hanging.is_set() and slow.kept == []  # the slow one is still holding its first
    release.set()


async def test_410_disables_the_endpoint_and_redrive_sends_the_rest_once_enabled(
    sqs_endpoint: str, stack: AsyncExitStack, start_server: StartServer
) -> None:
    gone = True

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=410 if gone else 204)

    receiver = Receiver(new_secret(), answer)
    hooks = await start_hooks(stack, sqs_endpoint, start_server, {"old": receiver})
    await hooks.publish(3)
    await until(lambda: hooks.deliverer.dead_lettered == 3, "all three held back")
    disabled = await hooks.states.disabled(["old"])
    assert "410 Gone" in disabled["old"].reason
    assert metrics.sample("gomailpy_webhook_endpoint_disabled", {"endpoint": "old"}) == 1
    held = await peek_dead_letters(hooks.queues, hooks.settings)
    assert len(held) == 3 and {h.endpoint for h in held} == {"old"}
    assert all("410 Gone" in h.reason or "disabled" in h.reason for h in held)
    tried = sum(receiver.attempts.values())  # those in flight together: up to `concurrency`
    await hooks.publish(2)
    await until(lambda: hooks.deliverer.dead_lettered == 5, "later ones held back too")
    assert sum(receiver.attempts.values()) == tried  # once it said 410, nothing more was sent
    gone = False
    assert await hooks.states.enable("old")
    assert await redrive(hooks.queues, hooks.settings) == 5
    await until(lambda: len(receiver.kept) == 5, "the five delivered after the redrive")
    assert len(set(receiver.kept)) == 5


async def test_a_50_mb_answer_and_a_redirect_change_nothing(
    sqs_endpoint: str, stack: AsyncExitStack, start_server: StartServer
) -> None:
    written = 0
    redirecting = True

    async def huge(request: web.Request) -> web.StreamResponse:
        nonlocal written
        response = web.StreamResponse(status=200)
        response.content_length = 50 * 1024 * 1024
        await response.prepare(request)
        chunk = b"x" * (1024 * 1024)
        try:
            for _ in range(50):
                await response.write(chunk)
                written += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return response

    trap = Receiver(new_secret())

    async def redirect(request: web.Request) -> web.Response:
        if redirecting:
            raise web.HTTPTemporaryRedirect(trap.url)
        return web.Response(status=204)

    big, moved = Receiver(new_secret(), huge), Receiver(new_secret(), redirect)
    hooks = await start_hooks(
        stack,
        sqs_endpoint,
        start_server,
        {"big": big, "moved": moved, "trap": trap},
        endpoints={"trap": {"events": ["complained"]}},  # it gets nothing of its own
    )
    before = delivered("big")
    await hooks.publish(1)
    await until(lambda: delivered("big") == before + 1, "the 50 MB answer counts as delivered")
    await until(lambda: sum(moved.attempts.values()) >= 2, "the redirect is tried again")
    assert trap.attempts == Counter()  # never followed
    redirecting = False
    await until(lambda: len(moved.kept) == 1, "delivered once the redirect is gone")
    await asyncio.sleep(0.5)
    assert written < 50 * 1024 * 1024  # the node stopped reading
    assert len(big.attempts) == 1 and sum(big.attempts.values()) == 1  # not sent again


async def test_a_delivery_older_than_max_age_goes_to_the_dead_letter_queue_with_why(
    sqs_endpoint: str, stack: AsyncExitStack, start_server: StartServer
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down for maintenance")

    receiver = Receiver(new_secret(), answer)
    hooks = await start_hooks(
        stack,
        sqs_endpoint,
        start_server,
        {"down": receiver},
        clock=lambda: time.time() + 24 * 3600,  # a day after it was published
    )
    await hooks.publish(1)
    await until(lambda: hooks.deliverer.dead_lettered == 1, "dead-lettered")
    [held] = await peek_dead_letters(hooks.queues, hooks.settings)
    assert "webhooks.max_age_s" in held.reason and "HTTP 503: down for maintenance" in held.reason
    assert sum(receiver.attempts.values()) == 1


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (["169.254.169.254"], "169.254.169.254, the cloud metadata service"),
        (["93.184.216.34", "10.0.0.5"], "10.0.0.5, a private address"),  # one bad one is enough
        (["::ffff:127.0.0.1"], "a loopback address: 127.0.0.1, as an IPv4-mapped"),
    ],
)
async def test_a_name_now_resolving_to_a_hostile_address_is_dead_lettered_at_once(
    sqs_endpoint: str,
    stack: AsyncExitStack,
    start_server: StartServer,
    answer: list[str],
    why: str,
) -> None:
    # The endpoint is a name (checked at config time, when it resolved elsewhere); at delivery
    # DNS answers with an address no webhook may go to: no retries for a day, the DLQ now.
    dns = Answering(*answer)
    receiver = Receiver(new_secret())
    hooks = await start_hooks(
        stack, sqs_endpoint, start_server, {"app": receiver}, resolver=dns, host="hooks.example.com"
    )
    refused = metrics.sample(
        "gomailpy_webhook_attempts_total", {"endpoint": "app", "outcome": "refused"}
    )
    await hooks.publish(1)
    await until(lambda: hooks.deliverer.dead_lettered == 1, "dead-lettered at once", tries=100)
    [held] = await peek_dead_letters(hooks.queues, hooks.settings)
    assert held.endpoint == "app"
    assert held.reason.startswith("target refused: hooks.example.com resolves to ")
    assert why in held.reason and "max_age_s" not in held.reason
    assert dns.asked == ["hooks.example.com"]  # one attempt, no retries
    assert receiver.attempts == Counter()  # nothing was sent anywhere
    assert (
        metrics.sample("gomailpy_webhook_attempts_total", {"endpoint": "app", "outcome": "refused"})
        == refused + 1
    )
