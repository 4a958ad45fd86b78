"""A pipeline node's own small HTTP server: what an operator and `gomail status` read.

    GET /metrics   Prometheus text
    GET /healthz   200 while the process runs
    GET /readyz    200 once the queues answered the last iteration, else 503
    GET /status    JSON: provider health, streaks and reputation holds, queues, a pause, the
                   per-domain exclusions
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gomailpy.queues.sqs import queue_name
from pipeline.node import PipelineNode

log = logging.getLogger("gomailpy.pipeline")


def status_of(node: PipelineNode) -> dict[str, Any]:
    return {
        "ready": node.last_iteration_ok,
        "stopping": node.stopping,
        "iterations": node.iterations,
        "paused": node.paused_by,  # why sending is paused (every provider held), or null
        # (provider, domain group) pairs whose mail goes elsewhere (pipeline.sending.mailbox_health)
        "domains_excluded": node.domains.snapshot(),
        "queues": [queue_name(url) for url in node.urls],
        "providers": {
            name: {
                "state": health.state.value,
                "weight": node.weights[name],
                "good_streak": health.good_streak,
                "failing_streak": health.failing_streak,
                "held": health.held,  # why it is held for its reputation, or null
            }
            for name, health in node.health.items()
        },
    }


def admin_app(node: PipelineNode) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if node.last_iteration_ok and not node.stopping:
            return web.json_response({"status": "ready"})
        reason = "stopping" if node.stopping else "queues not reachable (yet)"
        return web.json_response({"status": "not ready", "reason": reason}, status=503)

    async def status(_: web.Request) -> web.Response:
        return web.json_response(status_of(node))

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    return app


async def start_admin(stack: AsyncExitStack, node: PipelineNode, host: str, port: int) -> int:
    """Serve the admin app until `stack` closes; return the port it listens on."""
    runner = web.AppRunner(admin_app(node), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    actual = int(sockets[0].getsockname()[1]) if sockets else port
    log.info("pipeline admin on http://%s:%d (/metrics /healthz /readyz /status)", host, actual)
    return actual
