"""Tracking: the open pixel's hits per second against a bare aiohttp handler's ceiling in the same
run, and what link rewriting costs per email.

    .venv/bin/python -m bench.tracking [--seconds S] [--clients C] [--links L]

1. ceiling: C concurrent keep-alive clients GET a handler that returns the same 43-byte GIF and
   does nothing else;
2. tracking: the same against `api.views.bulk.open_pixel` in the API's own app (create_app,
   its middleware included): token verified (HMAC), the machine check, the event added to the
   batcher (its flushes never run here: this measures the request path, which writes nothing);
   1 and 2 alternate in 0.5 s slices for S seconds each (noisy machines: a burst of another
   process's CPU falls on both alike). Target >= 0.7. Clients and servers share this process's
   one CPU, so the ratio per CPU second (hits per second of this process's CPU time) is printed
   too: steadier on a loaded machine;
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
SLICE_S = 0.5


class _Load:
    """C concurrent keep-alive clients GETting one URL, run in slices (`run`), counted."""

    def __init__(self, url: str, clients: int) -> None:
        self.url, self.clients = url, clients
        self.done, self.wall_s, self.cpu_s = 0, 0.0, 0.0
        headers = {"User-Agent": "Mozilla/5.0 (Macintosh) AppleWebKit Safari/605"}
        connector = aiohttp.TCPConnector(limit=clients)
        self.session = aiohttp.ClientSession(connector=connector, headers=headers)

    async def run(self, seconds: float) -> None:
        stop = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < stop:
                async with self.session.get(self.url) as response:
                    await response.read()
                    assert response.status == 200, response.status
                self.done += 1

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client() for _ in range(self.clients)))
        self.wall_s += time.perf_counter() - started
        self.cpu_s += time.process_time() - cpu

    @property
    def rate(self) -> float:
        return self.done / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        return self.done / self.cpu_s


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
    path = f"/t/o/{token}"
    ceiling = _Load(f"http://127.0.0.1:{bare_port}{path}", clients)
    tracking = _Load(f"http://127.0.0.1:{tracked_port}{path}", clients)
    try:
        # Alternating slices, so that another process's burst of CPU falls on both alike.
        for n in range(max(1, round(seconds / SLICE_S))):
            first, then = (ceiling, tracking) if n % 2 == 0 else (tracking, ceiling)
            await first.run(SLICE_S)
            await then.run(SLICE_S)
    finally:
        await ceiling.session.close()
        await tracking.session.close()
        await tracked.cleanup()
        await bare.cleanup()
    cost = rewriting_us(settings, links)
    ratio, cpu_ratio = tracking.rate / ceiling.rate, tracking.per_cpu_s / ceiling.per_cpu_s
    print(f"bare handler ceiling : {ceiling.rate:,.0f} hits/s ({ceiling.per_cpu_s:,.0f}/CPU-s)")
    print(
        f"tracking pixel       : {tracking.rate:,.0f} hits/s ({tracking.per_cpu_s:,.0f}/CPU-s;"
        f" {len(batcher._pending):,} events batched)"
    )
    print(f"link rewriting       : {cost:,.0f} us per email of {links} links")
    print(
        f"summary: tracking {tracking.rate:,.0f} hits/s = ratio {ratio:.2f} of the bare handler"
        f" ({ceiling.rate:,.0f}/s, target >= 0.7; per CPU second {cpu_ratio:.2f}); link"
        f" rewriting {cost:,.0f} us/email ({links} links)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per server, in slices")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--links", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.clients, args.links))
