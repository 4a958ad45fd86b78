"""Serving an app as a process: listen, say where, and stop gracefully on SIGTERM or SIGINT.

Graceful means: stop accepting connections at once, let requests in flight finish (each still gets
its answer, and an accepted email its messageId) for up to api.shutdown_grace_s, then close the
app's resources and return, so the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web

from api.access_log import access_logger
from gomailpy.config.settings import ApiSettings
from gomailpy.operating.loop_watch import freeze_heap

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def listening_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve(app: web.Application, api: ApiSettings, *, reuse_port: bool = False) -> None:
    """Serve `app` until SIGTERM or SIGINT. `reuse_port`: bind with SO_REUSEPORT, so that
    several processes (`gomail api --workers N`, api.workers) share the port."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with access_logger(api) as access_log:
        runner = web.AppRunner(app, access_log=access_log, shutdown_timeout=api.shutdown_grace_s)
        await runner.setup()
        try:
            site = web.TCPSite(runner, api.host, api.port, reuse_port=reuse_port or None)
            try:
                await site.start()
            except OSError as exc:
                logger.error("cannot listen on %s: %s", listening_url(api.host, api.port), exc)
                sys.exit(1)
            for signum in STOP_SIGNALS:
                loop.add_signal_handler(signum, stop.set)
            freeze_heap()  # started: what startup built is kept for the process's life
            # The bound port, which differs from the configured one when that is 0.
            port = runner.addresses[0][1]
            url = listening_url(api.host, port)
            logger.info("gomailpy API listening on %s", url)
            print(f"gomailpy API listening on {url}", flush=True)  # for people and scripts
            await stop.wait()
            logger.info(
                "stopping: no new connections; finishing requests in flight (up to %gs)",
                api.shutdown_grace_s,
            )
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)
            await runner.cleanup()
    logger.info("stopped")
