"""A client of the HTTP API: posts emails to `POST /email/send` and tallies the answers.

Behind `gomail send` (one email, or N for a quick load, against any running API, with its key);
the fault suite and the benchmarks use it as their load generator.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class SendTally:
    statuses: Counter[int] = field(default_factory=Counter)  # 0: no answer (network error)
    message_ids: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


async def post_emails(
    api_url: str,
    bodies: list[dict[str, Any]],
    *,
    concurrency: int = 16,
    timeout_s: float = 30.0,
    on_done: Callable[[], None] = lambda: None,
    api_key: str | None = None,
) -> SendTally:
    tally = SendTally()
    endpoint = api_url.rstrip("/") + "/email/send"
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            try:
                async with session.post(endpoint, json=body) as response:
                    answer = await response.json(content_type=None)
                    tally.statuses[response.status] += 1
                    if response.status == 200:
                        tally.message_ids.append(answer["messageId"])
                    else:
                        errors = (answer or {}).get("errors", {})
                        tally.errors["; ".join(f"{k}: {v}" for k, v in errors.items())] += 1
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                tally.statuses[0] += 1
                tally.errors[f"{type(exc).__name__}: {exc}".rstrip(": ")] += 1
            on_done()

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, headers=headers
    ) as session:
        await asyncio.gather(*(worker(session) for _ in range(min(concurrency, len(bodies)))))
    return tally
