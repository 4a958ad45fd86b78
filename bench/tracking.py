"""Tracking: the open pixel's hits per second against a bare aiohttp handler's ceiling in the same
run, and what link rewriting costs per email.

    .venv/bin/python -m bench.tracking [--seconds S] [--clients C] [--links L]

1. ceiling: C concurrent keep-alive clients GET a handler that returns the same 43-byte GIF and
   does nothing else, for S seconds;
2. tracking: the same against `api.views.bulk.open_pixel` behind the API's own middleware stack
   (create_app): token verified (HMAC), the machine check, the event added to the batcher (its
   flushes never run here: this measures the request path, which writes nothing);
3. ceiling again (noisy machines: the ratio uses the mean of both). Target >= 0.7;
4. link rewriting: an HTML email of L links through `gomailpy.bulk.links.track_envelope`
   (one click token per link, one pixel), microseconds per email.
No AWS service is used.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any, cast

import aiohttp
from aiohttp import web

from api.app import create_app
from api.views.bulk import BATCHER
from gomailpy.bulk.batcher import EventBatcher
from gomailpy.bulk.links import GIF, track_envelope
from gomailpy.bulk.tokens import Kind, Link, sign
from gomailpy.config.settings import load_settings
from gomailpy.email.bulk.options import BulkOptions
from gomailpy.queues.sqs import QueueClient
from tests.support import make_envelope

SECRET = "bench-secret-" + "x" * 32


async def _load(url: str, seconds: float, clients: int) -> float:
    done = 0
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    headers = {"User-Agent": "Mozilla/5.0 (Macintosh) AppleWebKit Safari/605"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                async with session.get(url) as response:
                    await response.read()
                    assert response.status == 200, response.status
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return done / (time.perf_counter() - started)


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = cast(Any, site._server)
    return runner, int(server.sockets[0].getsockname()[1])


async def _bare() -> tuple[web.AppRunner, int]:
    async def pixel(request: web.Request) -> web.Response:
        return web.Response(body=GIF, headers={"Content-Type": "image/gif"})

    app = web.Application()
    app.router.add_get("/t/o/{token}", pixel)
    return await _serve(app)


async def _tracking(settings: Any) -> tuple[web.AppRunner, int, EventBatcher]:
    app = create_app(settings)
    batcher = EventBatcher(cast(QueueClient, None), "unused", interval_s=3600, max_pending=10**9)
    app[BATCHER] = batcher  # never entered: no flush, no queue
    runner, port = await _serve(app)
    return runner, port, batcher


def rewriting_us(settings: Any, links: int, rounds: int = 300) -> float:
    html = "<html><body>" + "".join(
        f'<p>Item {n}: <a href="https://shop.example/item/{n}?utm_source=mail&amp;x={n}">'
        f"see it</a></p>"
        for n in range(links)
    )
    envelope = make_envelope(0, html=html + "</body></html>")
    envelope = envelope.model_copy(update={"bulk": BulkOptions(opens=True, clicks=True)})
    started = time.perf_counter()
    for _ in range(rounds):
        track_envelope(envelope, settings.bulk, time.time())
    return (time.perf_counter() - started) / rounds * 1e6


async def main(seconds: float, clients: int, links: int) -> None:
    settings = load_settings(None, env={})
    settings = settings.model_copy(
        update={
            "bulk": settings.bulk.model_validate(
                {"secret": SECRET, "public_url": "https://mail.example.com"}
            ),
            "api": settings.api.model_copy(update={"serve_webclient": False}),
        }
    )
    token = sign(Link(Kind.OPEN, "bench-1", "ann@example.org"), SECRET.encode(), time.time() - 3600)
    bare, bare_port = await _bare()
    tracked, tracked_port, batcher = await _tracking(settings)
    try:
        path = f"/t/o/{token}"
        first = await _load(f"http://127.0.0.1:{bare_port}{path}", seconds, clients)
        rate = await _load(f"http://127.0.0.1:{tracked_port}{path}", seconds, clients)
        second = await _load(f"http://127.0.0.1:{bare_port}{path}", seconds, clients)
    finally:
        await tracked.cleanup()
        await bare.cleanup()
    ceiling = (first + second) / 2
    cost = rewriting_us(settings, links)
    print(f"bare handler ceiling : {first:,.0f} / {second:,.0f} hits/s")
    print(f"tracking pixel       : {rate:,.0f} hits/s ({len(batcher._pending):,} events batched)")
    print(f"link rewriting       : {cost:,.0f} us per email of {links} links")
    print(
        f"summary: tracking {rate:,.0f} hits/s = ratio {rate / ceiling:.2f} of the bare handler"
        f" ({ceiling:,.0f}/s, target >= 0.7); link rewriting {cost:,.0f} us/email ({links} links)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--links", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.clients, args.links))
