"""POST /events/sendgrid[/{instance}] and /events/mailgun/{instance}: providers' signed event
webhooks, onto the events queue.

    SendGrid --POST [events] + signature--> API --{"source": "sendgrid", ...}--> events queue

The signature is the authentication (SendGrid cannot send an API key): a request without one is
answered 401, one not signed by `events.sendgrid_public_key` or signed outside the replay window
403, and nothing of it is recorded. A signed body must be a JSON array of event objects (400
otherwise). The answer is 2xx only once the events are on the events queue, as
`{"source": "sendgrid", "receivedAt": <epoch s>, "events": [...]}` (split over several queue
messages when large); when the queue cannot take them the answer is 503 and SendGrid posts
again later (it retries for 24 hours; duplicates are dropped by `sg_event_id`).

With events off (`events.enabled`) or no public key configured, the route answers 404.

Each SendGrid instance (providers[].name, kind sendgrid) has its own route,
`/events/sendgrid/<name>`, checked with its own account's key (`webhook_public_key`, else
`events.sendgrid_public_key`); its events go on the queue with `"instance": <name>`, so they
count for that instance (reputation) even when they carry no custom arg naming it. A name that is
no SendGrid instance answers 404.

Mailgun (one route per Mailgun instance, `/events/mailgun/<name>`) posts one event per request,
`{"signature": {"timestamp", "token", "signature"}, "event-data": {...}}`, signed inside the body
with the instance's `webhook_signing_key` (gomailpy.feedback.mailgun). A body that is not a JSON
object is 400 (it cannot be judged signed or not), one without a signature 401, a signature that
does not verify, a timestamp outside `events.mailgun_replay_window_s` or a token already taken
403, a name that is no Mailgun instance with a signing key 404. Once verified, `event-data` must
be an event object (400 otherwise); it goes on the queue as `{"source": "mailgun", "receivedAt",
"instance", "events": [<event-data>]}` and the answer is 200 only then (503 otherwise: Mailgun
posts again later).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from api.keys import SETTINGS
from api.responses import error_response
from api.views.body import read_body
from gomailpy.batching import Batcher, all_or_first_error
from gomailpy.config.settings import Settings
from gomailpy.errors import EventFormatError, QueueError
from gomailpy.feedback.mailgun import MailgunVerifier, parse_mailgun
from gomailpy.feedback.sendgrid import parse_sendgrid
from gomailpy.feedback.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureCheck,
    WebhookVerifier,
)
from gomailpy.queues.aws import open_aws_client
from gomailpy.queues.sqs import QueueClient, create_queue_client, queue_name

logger = logging.getLogger(__name__)

PATH = "/events/sendgrid"
MAILGUN_PATH = "/events/mailgun/{instance}"
# Mailgun posts one event per request (a few KiB: headers, not the message).
MAILGUN_MAX_BODY_BYTES = 256 * 1024
# SendGrid posts a batch when it reaches 768 KB (or every 30 s); room to spare.
MAX_BODY_BYTES = 2 * 1024 * 1024
# Events per queue message are bounded by size: SQS refuses a body over 256 KiB.
MAX_QUEUE_BODY_BYTES = 250_000
SEND_ATTEMPTS = 2  # as for emails: a 503 makes SendGrid post again
# Concurrent posts share SendMessageBatch calls (gomailpy.batching): a provider posts an event
# or a few at a time, and a call per post was most of the events queue's sends.
SEND_BATCH = 10  # messages per call, SQS's limit
SEND_MAX_BYTES = 256 * 1024  # of bodies per call, SQS's limit
SEND_MAX_CALLS = 2  # partial calls under way before the next waits for one to end
SEND_LINGER_S = 0.002

NOT_CONFIGURED = (
    "SendGrid events are not taken here: set events.enabled and events.sendgrid_public_key"
)
MISSING = f"Signed requests only: {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} are required"
INVALID = "The signature does not verify with the configured SendGrid public key"
NO_INSTANCE = "No SendGrid provider instance of that name takes events here"
REPLAYED = "The signature's timestamp is outside the replay window"
NOT_AN_ARRAY = "The body must be a JSON array of SendGrid events"
MAILGUN_NO_INSTANCE = (
    "No Mailgun provider instance of that name takes events here (events.enabled and its"
    " webhook_signing_key are needed)"
)
MAILGUN_NOT_AN_OBJECT = 'The body must be a JSON object: {"signature": {...}, "event-data": {...}}'
MAILGUN_MISSING = "Signed posts only: a signature object with timestamp, token and signature"
MAILGUN_INVALID = "The signature does not verify with this instance's Mailgun webhook signing key"
MAILGUN_REPLAYED = "The signature's timestamp is outside the replay window, or its token was used"
MAILGUN_BAD_EVENT = "event-data must be one Mailgun event object"


@dataclass
class EventsSink:
    """What the handler needs: the signature checks (the shared route's, and each SendGrid
    instance's by name) and the events queue."""

    verifier: WebhookVerifier | None
    instances: dict[str, WebhookVerifier] = field(default_factory=dict)
    mailgun: dict[str, MailgunVerifier] = field(default_factory=dict)  # by instance name
    queues: QueueClient | None = None  # set once the app has started
    queue: str = ""
    sends: Batcher[str, None] = field(init=False)

    def __post_init__(self) -> None:
        self.sends = Batcher(
            self._send,
            size=SEND_BATCH,
            max_calls=SEND_MAX_CALLS,
            linger_s=SEND_LINGER_S,
            weight=lambda body: len(body.encode("utf-8")),
            max_weight=SEND_MAX_BYTES,
        )

    async def _send(self, bodies: list[str]) -> list[None | BaseException]:
        """One SendMessageBatch for the bodies of any posts; a refused entry fails its own."""
        assert self.queues is not None, "the app has not started"
        url = await self.queues.resolve(self.queue)
        result = await self.queues.send_batch(url, [(str(i), b) for i, b in enumerate(bodies)])
        return [
            QueueError(queue_name(url), "send_message_batch", result.failed[str(i)])
            if str(i) in result.failed
            else None
            for i in range(len(bodies))
        ]

    async def put(
        self,
        events: list[Any],
        received_at: float,
        instance: str | None = None,
        source: str = "sendgrid",
    ) -> None:
        """Put the events on the events queue, or raise QueueError (some of them may be on
        it then: the consumer records a report seen twice once)."""
        named = {} if instance is None else {"instance": instance}
        bodies = [
            json.dumps({"source": source, "receivedAt": received_at, **named, "events": chunk})
            for chunk in _chunks(events)
        ]
        await all_or_first_error(self.sends.submit_many(bodies))


EVENTS_SINK = web.AppKey("events_sink", EventsSink)


def _chunks(events: list[Any]) -> list[list[Any]]:
    chunks: list[list[Any]] = [[]]
    size = 0
    for event in events:
        event_size = len(json.dumps(event).encode("utf-8")) + 2
        if chunks[-1] and size + event_size > MAX_QUEUE_BODY_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(event)
        size += event_size
    return chunks


async def sendgrid_events(request: web.Request) -> web.Response:
    sink = request.app.get(EVENTS_SINK)
    instance = request.match_info.get("instance")
    if sink is None:
        return error_response(404, NOT_CONFIGURED)
    verifier = sink.verifier if instance is None else sink.instances.get(instance)
    if verifier is None:
        return error_response(404, NOT_CONFIGURED if instance is None else NO_INSTANCE)
    body = await read_body(request, MAX_BODY_BYTES)
    received_at = time.time()
    verdict = verifier.check(
        request.headers.get(SIGNATURE_HEADER),
        request.headers.get(TIMESTAMP_HEADER),
        body,
        now=received_at,
    )
    if verdict is not SignatureCheck.VALID:
        logger.warning("SendGrid webhook refused: signature %s", verdict.value)
        if verdict is SignatureCheck.MISSING:
            return error_response(401, MISSING)
        return error_response(403, REPLAYED if verdict is SignatureCheck.REPLAYED else INVALID)
    try:
        events: Any = json.loads(body)
    except (ValueError, RecursionError):
        return error_response(400, NOT_AN_ARRAY)
    if not isinstance(events, list):
        return error_response(400, NOT_AN_ARRAY)
    try:
        parse_sendgrid(events)  # what the consumer could not read is refused here, not queued
    except EventFormatError as exc:
        return error_response(400, f"{NOT_AN_ARRAY}: {exc}")
    if events:
        await sink.put(events, received_at, instance)
    return web.json_response({"received": len(events)})


async def mailgun_events(request: web.Request) -> web.Response:
    sink = request.app.get(EVENTS_SINK)
    instance = request.match_info["instance"]
    verifier = sink.mailgun.get(instance) if sink is not None else None
    if sink is None or verifier is None:
        return error_response(404, MAILGUN_NO_INSTANCE)
    body = await read_body(request, MAILGUN_MAX_BODY_BYTES)
    received_at = time.time()
    try:
        post: Any = json.loads(body)
    except (ValueError, RecursionError):
        return error_response(400, MAILGUN_NOT_AN_OBJECT)
    if not isinstance(post, dict):
        return error_response(400, MAILGUN_NOT_AN_OBJECT)
    signature: Any = post.get("signature")
    verdict = verifier.check(signature, now=received_at)
    if verdict is not SignatureCheck.VALID:
        logger.warning("Mailgun webhook of %s refused: signature %s", instance, verdict.value)
        if verdict is SignatureCheck.MISSING:
            return error_response(401, MAILGUN_MISSING)
        refused = MAILGUN_REPLAYED if verdict is SignatureCheck.REPLAYED else MAILGUN_INVALID
        return error_response(403, refused)
    event = post.get("event-data")
    try:
        parse_mailgun([event], instance=instance)  # what the consumer could not read: refused
    except EventFormatError as exc:
        return error_response(400, f"{MAILGUN_BAD_EVENT}: {exc}")
    await sink.put([event], received_at, instance, source="mailgun")
    verifier.remember(signature, now=received_at)  # only now: a 503 is posted again, same token
    return web.json_response({"received": 1})


async def _open_events_queue(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    sink = app[EVENTS_SINK]
    async with AsyncExitStack() as stack:
        client = await open_aws_client(stack, "sqs", settings.aws, max_attempts=SEND_ATTEMPTS)
        sink.queues = await stack.enter_async_context(create_queue_client(settings, client=client))
        sink.queue = settings.events.queue
        yield
        sink.queues = None


def add_event_routes(app: web.Application) -> None:
    """Add POST /events/sendgrid[/{instance}] and /events/mailgun/{instance}; when events are
    configured, the events queue's client opens
    with the app. A public key that cannot be read raises ConfigError here, at startup."""
    settings: Settings = app[SETTINGS]
    app.router.add_post(PATH, sendgrid_events, name="sendgrid_events")
    app.router.add_post(PATH + "/{instance}", sendgrid_events, name="sendgrid_instance_events")
    app.router.add_post(MAILGUN_PATH, mailgun_events, name="mailgun_events")
    events = settings.events
    if not events.enabled:
        return
    window = events.sendgrid_replay_window_s
    shared = (
        WebhookVerifier(events.sendgrid_public_key, replay_window_s=window)
        if events.sendgrid_public_key
        else None
    )
    instances = {
        sendgrid.name: (
            WebhookVerifier(sendgrid.webhook_public_key, replay_window_s=window)
            if sendgrid.webhook_public_key
            else shared
        )
        for sendgrid in settings.providers.sendgrid_instances()
    }
    checked = {name: verifier for name, verifier in instances.items() if verifier is not None}
    mailgun = {
        instance.name: MailgunVerifier(
            instance.webhook_signing_key.get_secret_value(),
            replay_window_s=events.mailgun_replay_window_s,
        )
        for instance in settings.providers.mailgun_instances()
        if instance.webhook_signing_key is not None
    }
    if shared is not None or checked or mailgun:
        app[EVENTS_SINK] = EventsSink(shared, checked, mailgun)
        app.cleanup_ctx.append(_open_events_queue)


def _errors(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Errors"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "description": description, "schema": {"type": "string"}}


OPENAPI_PATHS: dict[str, Any] = {
    PATH: {
        "post": {
            "operationId": "sendgridEvents",
            "summary": "SendGrid's Event Webhook: signed events onto the events queue",
            "description": (
                "Not behind the API key: the ECDSA signature (SendGrid's signed Event Webhook,"
                " key in events.sendgrid_public_key) is the authentication."
            ),
            "parameters": [
                _header(SIGNATURE_HEADER, "base64 ECDSA signature of timestamp + body"),
                _header(TIMESTAMP_HEADER, "epoch seconds, signed with the body"),
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}
                },
            },
            "responses": {
                "200": {
                    "description": "The events are on the events queue",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"received": {"type": "integer"}},
                                "required": ["received"],
                            }
                        }
                    },
                },
                "400": _errors("Signed, but not a JSON array of event objects"),
                "401": _errors("No signature or no timestamp header"),
                "403": _errors("A bad signature, or a timestamp outside the replay window"),
                "404": _errors("SendGrid events are not configured on this server"),
                "503": _errors("The events queue did not take the events: post again"),
            },
        }
    }
}

# The route of one SendGrid instance: the same request, checked with that instance's key.
OPENAPI_PATHS[PATH + "/{instance}"] = {
    "post": {
        **OPENAPI_PATHS[PATH]["post"],
        "operationId": "sendgridInstanceEvents",
        "summary": "One SendGrid instance's Event Webhook: its signed events onto the events queue",
        "description": (
            "Not behind the API key: the ECDSA signature, checked with the instance's"
            " webhook_public_key (else events.sendgrid_public_key), is the authentication."
        ),
        "parameters": [
            {
                "name": "instance",
                "in": "path",
                "required": True,
                "description": "The SendGrid provider instance (providers[].name)",
                "schema": {"type": "string"},
            },
            *OPENAPI_PATHS[PATH]["post"]["parameters"],
        ],
    }
}

# Mailgun's webhook, one route per instance: the signature is inside the JSON body.
OPENAPI_PATHS[MAILGUN_PATH] = {
    "post": {
        "operationId": "mailgunInstanceEvents",
        "summary": "One Mailgun instance's event webhook: its signed event onto the events queue",
        "description": (
            "Not behind the API key: the HMAC-SHA256 signature of timestamp + token, checked with"
            " the instance's webhook_signing_key, is the authentication."
        ),
        "parameters": [
            {
                "name": "instance",
                "in": "path",
                "required": True,
                "description": "The Mailgun provider instance (providers[].name)",
                "schema": {"type": "string"},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "signature": {
                                "type": "object",
                                "properties": {
                                    "timestamp": {"type": "string"},
                                    "token": {"type": "string"},
                                    "signature": {"type": "string"},
                                },
                                "required": ["timestamp", "token", "signature"],
                            },
                            "event-data": {"type": "object"},
                        },
                        "required": ["signature", "event-data"],
                    }
                }
            },
        },
        "responses": {
            "200": OPENAPI_PATHS[PATH]["post"]["responses"]["200"],
            "400": _errors("Not a JSON object, or signed but event-data is no event object"),
            "401": _errors("No signature object, or one without timestamp, token or signature"),
            "403": _errors("A bad signature, a stale timestamp, or a token already used"),
            "404": _errors("No Mailgun instance of that name takes events here"),
            "503": _errors("The events queue did not take the event: post again"),
        },
    }
}
