"""What `gomail status` shows: queue depths and dead letters, and provider health per node."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp

from gomailpy.config.settings import Settings
from gomailpy.errors import GomailError, QueueError
from gomailpy.queues.sqs import QueueClient, QueueDepth, queue_name


@dataclass(frozen=True, slots=True)
class QueueStatus:
    name: str
    depth: QueueDepth | None
    dead_letters: int | None
    error: str | None = None


async def queue_status(queues: QueueClient, entries: list[str]) -> list[QueueStatus]:
    rows = []
    for entry in entries:
        try:
            url = await queues.resolve(entry)
            depth = await queues.depth(url)
            dead = (await queues.depth(await queues.dead_letter_url(url))).total
            rows.append(QueueStatus(queue_name(url), depth, dead))
        except QueueError as exc:
            rows.append(QueueStatus(queue_name(entry), None, None, exc.reason))
    return rows


async def node_status(admin_urls: list[str], timeout_s: float = 3.0) -> dict[str, Any]:
    """Each node's /status answer, or {"error": ...} for a node that does not answer."""

    async def one(session: aiohttp.ClientSession, url: str) -> Any:
        try:
            async with session.get(url.rstrip("/") + "/status") as response:
                response.raise_for_status()
                return await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return {"error": f"{type(exc).__name__}: {exc}".rstrip(": ")}

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        answers = await asyncio.gather(*(one(session, url) for url in admin_urls))
    return dict(zip(admin_urls, answers, strict=True))


async def control_lines(settings: Settings) -> list[str]:
    """The operator's controls in force (gomailpy.operating.controls), each with who set it and why,
    and each node's provider rates; none unless the status table is shared (`status.backend:
    dynamodb`)."""
    if settings.status.backend != "dynamodb":
        return []
    from gomailpy.operating.controls import open_control_store

    try:
        async with AsyncExitStack() as stack:
            store = await open_control_store(stack, settings)
            lines = (await store.load()).describe() or ["none set"]
            return lines + [f"rates {line}" for line in await store.node_rates()]
    except GomailError as exc:
        return [f"not readable: {exc}"]


def format_status(
    rows: list[QueueStatus], nodes: dict[str, Any], controls: list[str] | None = None
) -> str:
    lines = [f"{'queue':<32} {'visible':>8} {'in-flight':>10} {'delayed':>8} {'dead':>6}"]
    for row in rows:
        if row.depth is None:
            lines.append(f"{row.name:<32} unreachable: {row.error}")
        else:
            d = row.depth
            lines.append(
                f"{row.name:<32} {d.visible:>8} {d.in_flight:>10} {d.delayed:>8}"
                f" {row.dead_letters:>6}"
            )
    for url, answer in nodes.items():
        if "error" in answer:
            lines.append(f"node {url}: not answering ({answer['error']})")
            continue
        providers = ", ".join(
            f"{name} {p['state']}" for name, p in answer.get("providers", {}).items()
        )
        lines.append(f"node {url}: {providers or 'no providers'}")
    lines += [f"controls: {line}" for line in controls or []]
    return "\n".join(lines)
