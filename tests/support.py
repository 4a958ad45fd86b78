"""Helpers shared by the tests (and the benchmarks): settings pointing at the test bed, with
queues of their own; valid requests and envelopes; the types of conftest's serving fixtures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, TypeAlias

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from gomailpy.config.settings import Settings, load_settings
from gomailpy.email.envelope import Envelope
from gomailpy.email.models import parse_send_request
from gomailpy.operating.resources import ensure_resources
from gomailpy.queues.sqs import create_queue_client

# The types of conftest's fixtures `start_client` and `start_server`, and of what they start.
Client: TypeAlias = TestClient[web.Request, web.Application]
StartClient: TypeAlias = Callable[[web.Application], Awaitable[Client]]
StartServer: TypeAlias = Callable[[web.Application], Awaitable[TestServer]]


async def api_client(stack: AsyncExitStack, settings: Settings) -> Client:
    """The API of `settings` served on 127.0.0.1 until `stack` closes; a client for it."""
    client: Client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
    await client.start_server()
    stack.push_async_callback(client.close)
    return client


def table_cli_env(moto_endpoint: str) -> dict[str, str]:
    """A fresh status table on moto, created, and the environment that points `gomail`'s
    operator commands (which need the shared table) at it."""
    table = unique("table")
    settings = make_settings(
        "http://127.0.0.1:1",
        status={"backend": "dynamodb", "endpoint_url": moto_endpoint, "table": table},
    )
    asyncio.run(ensure_resources(settings))
    return {
        "GOMAILPY_STATUS__BACKEND": "dynamodb",
        "GOMAILPY_STATUS__ENDPOINT_URL": moto_endpoint,
        "GOMAILPY_STATUS__TABLE": table,
    }


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Merge `extra` into the nested dict `base`, section by section; return `base`."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def make_settings(endpoint_url: str, queue_count: int = 2, **sections: dict[str, Any]) -> Settings:
    """Settings on the test bed with `queue_count` fresh queue names; `sections` override keys,
    e.g. `make_settings(url, pipeline={"unhealthy_threshold": 1})`."""
    data: dict[str, Any] = {
        "aws": {"endpoint_url": endpoint_url, "region": "us-east-1", "client_timeout_s": 5},
        "queues": {
            "urls": [unique("q") for _ in range(queue_count)],
            "visibility_timeout_s": 30,
            "wait_time_s": 1,
        },
        "pipeline": {"send_timeout_s": 5, "admin_port": 0},
        "api": {"port": 0},
    }
    settings = load_settings(None, env={})
    merged = merge(data, sections)
    return settings.model_validate(merge(settings.model_dump(mode="python"), merged))


async def create_queues(settings: Settings) -> list[str]:
    """Create every configured queue (with its dead-letter queue); return their URLs."""
    async with create_queue_client(settings) as queues:
        return [await queues.ensure_queue(entry) for entry in settings.queues.urls]


def email_request(n: int = 0, **fields: Any) -> dict[str, Any]:
    """A valid gomail request body."""
    email = {
        "fromEmail": "sender@example.com",
        "fromName": "Sender",
        "toEmail": f"rcpt{n}@example.org",
        "toName": f"Recipient {n}",
        "subject": f"Hello {n}",
        "body": f"Body of email {n}",
    }
    email.update(fields)
    return {"email": email}


def make_envelope(n: int = 0, **fields: Any) -> Envelope:
    """`email_request(n, **fields)` as the API puts it on a queue."""
    return Envelope.wrap(parse_send_request(email_request(n, **fields)))


async def enqueue(settings: Settings, count: int, *, start: int = 0) -> list[str]:
    """Put `count` valid emails on the configured queues, round-robin; return their message ids."""
    ids: list[str] = []
    async with create_queue_client(settings) as queues:
        urls = await queues.resolve_all()
        per_queue: dict[str, list[tuple[str, str]]] = {url: [] for url in urls}
        for i in range(start, start + count):
            envelope = make_envelope(i)
            ids.append(envelope.id)
            per_queue[urls[i % len(urls)]].append((str(i), envelope.encode()))
        for url, entries in per_queue.items():
            result = await queues.send_batch(url, entries)
            assert not result.failed, result.failed
    return ids


async def queue_totals(settings: Settings) -> dict[str, int]:
    """Messages left per queue and per dead-letter queue, by queue name (visible + in flight)."""
    from gomailpy.queues.sqs import queue_name

    totals: dict[str, int] = {}
    async with create_queue_client(settings) as queues:
        for url in await queues.resolve_all():
            totals[queue_name(url)] = (await queues.depth(url)).total
            dlq = await queues.dead_letter_url(url)
            totals[queue_name(dlq)] = (await queues.depth(dlq)).total
    return totals
