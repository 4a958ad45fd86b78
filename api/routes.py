"""The API's handlers: POST /email/send and the operational endpoints."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.body import BadBody, read_json
from api.gateway import NoQueueAvailable
from api.keys import GATEWAY, OPENAPI, SETTINGS
from api.responses import SERVICE_UNAVAILABLE, error_response
from gomailpy.envelope import Envelope
from gomailpy.errors import InvalidEmailError, MalformedRequestError
from gomailpy.metrics import ENQUEUE_SECONDS
from gomailpy.models import parse_send_request

logger = logging.getLogger(__name__)

# SQS refuses a message body over 256 KiB. Checked before sending, so an email that cannot fit
# is answered 400 (the client must shrink it), not 503 after every queue has refused it.
SQS_MAX_MESSAGE_BYTES = 262_144


async def send_email(request: web.Request) -> web.Response:
    limit = request.app[SETTINGS].api.max_body_size_bytes
    try:
        email = parse_send_request(await read_json(request, limit))
    except BadBody as exc:
        return error_response(400, exc.message)
    except MalformedRequestError as exc:
        return error_response(400, str(exc))
    except InvalidEmailError as exc:
        return error_response(422, errors=exc.errors)

    started = time.perf_counter()
    envelope = Envelope.wrap(email)
    body = envelope.encode()
    size = len(body.encode("utf-8"))
    if size > SQS_MAX_MESSAGE_BYTES:
        return error_response(
            400,
            f"The email is too large to queue: {size} bytes once wrapped,"
            f" the limit is {SQS_MAX_MESSAGE_BYTES} bytes",
        )
    try:
        queue = await request.app[GATEWAY].enqueue(body)
    except NoQueueAvailable as exc:
        logger.error("no queue accepted an email: %s", exc, extra={"message_id": envelope.id})
        return error_response(503, SERVICE_UNAVAILABLE)
    ENQUEUE_SECONDS.observe(time.perf_counter() - started)
    logger.info("email queued", extra={"message_id": envelope.id, "queue": queue})
    return web.json_response({"messageId": envelope.id})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    states = gateway.states()
    queues = {
        state.name: {"reachable": state.reachable, "depth": state.depth, "problem": state.problem}
        for state in states
    }
    if gateway.ready():
        return web.json_response({"status": "ready", "queues": queues})
    reason = "no queue is reachable: " + "; ".join(f"{s.name}: {s.problem}" for s in states)
    return web.json_response(
        {"status": "unavailable", "reason": reason, "queues": queues}, status=503
    )


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


def add_api_routes(app: web.Application) -> None:
    app.router.add_post("/email/send", send_email, name="send")
    app.router.add_get("/healthz", healthz, name="healthz", allow_head=False)
    app.router.add_get("/readyz", readyz, name="readyz", allow_head=False)
    app.router.add_get("/metrics", metrics, name="metrics", allow_head=False)
    app.router.add_get("/openapi.json", openapi, name="openapi", allow_head=False)
