"""The API's handlers: POST /email/send, GET /email/{messageId} and the operational endpoints.

Handlers let gomailpy's errors through (a malformed body, invalid fields, a failed SQS, S3 or
DynamoDB call): api.middleware answers them, through `api.responses.error_answer`.
"""

from __future__ import annotations

import json
import logging
import time

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.keys import GATEWAY, OPENAPI, SETTINGS
from api.responses import error_response
from api.views.body import read_json
from api.views.bulk import add_bulk_routes
from api.views.controls import add_control_routes
from api.views.delivery import (
    CLAIM_CHECK,
    DELIVERY_STORE,
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_OFF,
    KEY_IN_PROGRESS,
    KEY_REUSED,
    check_idempotency_key,
    get_email_status,
    new_message_id,
    request_hash,
)
from api.views.events import add_event_routes
from api.views.events_feed import add_feed_routes
from api.views.overview import add_overview_routes
from api.views.schedules import add_schedule_routes, record_schedule
from api.views.sendgrid_v3 import add_v3_routes
from api.views.suppressions import add_suppression_routes, refuse_if_suppressed
from api.views.templates import add_template_routes, check_template
from gomailpy.email.bulk.options import take_bulk_options
from gomailpy.email.envelope import Envelope
from gomailpy.email.models import parse_send_request
from gomailpy.email.schedule import take_send_at
from gomailpy.errors import ClaimCheckError, NoQueueAvailableError, StoreError
from gomailpy.metrics import ENQUEUE_SECONDS
from gomailpy.queues.claim_check import ReferenceEnvelope
from gomailpy.store.deliveries import DeliveryStore

logger = logging.getLogger(__name__)

# SQS refuses a message body over 256 KiB. Checked before sending, so an email that cannot fit
# is answered 400 (the client must shrink it), not 503 after every queue has refused it, unless
# a claim check is configured: then it goes to S3 and the queue carries a reference.
SQS_MAX_MESSAGE_BYTES = 262_144


async def send_email(request: web.Request) -> web.Response:
    data = await read_json(request, request.app[SETTINGS].api.max_body_size_bytes)
    send_at = take_send_at(data, time.time())  # "sendAt": gomailpy.email.schedule
    bulk = take_bulk_options(data)  # "unsubscribe", "tracking": gomailpy.email.bulk.options
    email = parse_send_request(data)
    await refuse_if_suppressed(request.app, email)  # suppression.refuse_at_api
    await check_template(request.app, email)  # templateId: one that exists
    started = time.perf_counter()
    envelope = Envelope.wrap(email, send_at=send_at, message_id=new_message_id(request.app))
    if bulk is not None:
        envelope = envelope.model_copy(update={"bulk": bulk})
    store = request.app.get(DELIVERY_STORE)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None:
        problem = check_idempotency_key(key)
        if problem is not None:
            return error_response(400, problem)
        if store is None:
            return error_response(501, IDEMPOTENCY_OFF)
        answer = await _reserve(store, key, request_hash(data), envelope.id)
        if answer is not None:
            return answer
    try:
        response = await _enqueue(request, envelope)
    except BaseException:
        if key is not None and store is not None:
            await _release(store, key)
        raise
    if response.status != 200:
        if key is not None and store is not None:
            await _release(store, key)
        return response
    ENQUEUE_SECONDS.observe(time.perf_counter() - started)
    if store is not None:
        await _after_queued(store, envelope, key, response)
    await record_schedule(request.app, envelope)
    return response


async def _enqueue(request: web.Request, envelope: Envelope) -> web.Response:
    """Put the envelope (or, when too large, its claim-check reference) on a queue."""
    body = envelope.encode()
    size = len(body.encode("utf-8"))
    claim_check = request.app.get(CLAIM_CHECK)
    limit = claim_check.threshold_bytes if claim_check is not None else SQS_MAX_MESSAGE_BYTES
    reference: ReferenceEnvelope | None = None
    if size > limit:
        if claim_check is None:
            return error_response(
                400,
                f"The email is too large to queue: {size} bytes once wrapped,"
                f" the limit is {SQS_MAX_MESSAGE_BYTES} bytes",
            )
        reference = await claim_check.store(envelope, body)
        body = reference.encode()
    try:
        queue = await request.app[GATEWAY].enqueue(body, region=_asked_region(request))
    except NoQueueAvailableError:
        if reference is not None and claim_check is not None:
            try:
                await claim_check.delete(reference)  # nobody will ever read it
            except ClaimCheckError as problem:
                logger.warning("could not delete %s: %s", reference.ref.key, problem)
        raise
    logger.info(
        "email queued",
        extra={"message_id": envelope.id, "queue": queue, "claim_check": reference is not None},
    )
    # orjson: the answer of every accepted email, so the cheapest serialisation there is.
    return web.Response(
        body=orjson.dumps({"messageId": envelope.id}),
        content_type="application/json",
        charset="utf-8",
    )


async def _reserve(
    store: DeliveryStore, key: str, body_hash: str, message_id: str
) -> web.Response | None:
    """Reserve the Idempotency-Key for this request (None: go on), or the answer to give now."""
    held = await store.reserve_key(key, body_hash, message_id)
    if held is None:
        return None
    if held.body_hash != body_hash:
        return error_response(422, KEY_REUSED)
    answer = held.response
    if answer is None and await store.get(held.message_id) is not None:
        # The first request queued its email but could not record its answer.
        answer = json.dumps({"messageId": held.message_id})
    if answer is None:
        return error_response(409, KEY_IN_PROGRESS)
    return web.Response(
        text=answer, content_type="application/json", headers={"Idempotent-Replayed": "true"}
    )


async def _release(store: DeliveryStore, key: str) -> None:
    try:
        await store.release_key(key)
    except StoreError as exc:
        logger.warning("could not release idempotency key: %s", exc)


async def _after_queued(
    store: DeliveryStore, envelope: Envelope, key: str | None, response: web.Response
) -> None:
    """Record the answer under the Idempotency-Key, if the request had one. Nothing is written
    per email: its id, issued here, reads as `queued` until a node writes its record
    (api.views.delivery.get_email_status). The email is queued whatever happens here: a failure is
    logged, and the client still gets its messageId."""
    if key is None:
        return
    assert isinstance(response.body, bytes)
    try:
        await store.complete_key(key, response.body.decode("utf-8"))
    except StoreError as exc:
        logger.warning("answer not recorded: %s", exc, extra={"message_id": envelope.id})


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


def _asked_region(request: web.Request) -> str | None:
    """The region the caller names in `regions.header`, when the operator named one."""
    header = request.app[SETTINGS].regions.header
    return request.headers.get(header) if header is not None else None


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


def add_api_routes(app: web.Application) -> None:
    app.router.add_post("/email/send", send_email, name="send")
    # Any id but "send", so that GET /email/send stays a 405 (Allow: POST), not an unknown id.
    app.router.add_get(
        "/email/{messageId:(?!send$)[^/]+}", get_email_status, name="status", allow_head=False
    )
    app.router.add_get("/healthz", healthz, name="healthz", allow_head=False)
    app.router.add_get("/readyz", readyz, name="readyz", allow_head=False)
    app.router.add_get("/metrics", metrics, name="metrics", allow_head=False)
    app.router.add_get("/openapi.json", openapi, name="openapi", allow_head=False)
    add_event_routes(app)  # POST /events/sendgrid
    add_feed_routes(app)  # GET /events?messageId=
    add_template_routes(app)  # /templates/{id}
    add_schedule_routes(app)  # DELETE /email/{messageId}/schedule
    add_v3_routes(app)  # POST /v3/mail/send, SendGrid's
    add_suppression_routes(app)  # /suppressions/{address}
    add_control_routes(app)  # /admin/providers: the operator's controls (api.views.controls)
    add_overview_routes(app)  # /admin/overview: the operator page's data (api.views.overview)
    add_bulk_routes(app)  # /u/{token}, /t/o|c/{token}, /asm/groups: api.views.bulk
