"""End to end, over the real events path: an email sent through the SendGrid provider to the
stand-in, which posts its signed Event Webhook to the API, which puts it on the events queue,
which a pipeline node's event consumer records and offers to the webhooks; the node's deliverer
POSTs to `gomail up`'s local receiver, which verifies every request with `standardwebhooks`.

An address that bounces produces `sent` (settlement, when SendGrid accepted it) then `bounced`
(SendGrid's report) for that message id; a delivered one produces `sent` then `delivered`.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack

from pydantic import SecretStr

from api.app import create_app
from gomailpy.events import epoch
from gomailpy.operating.resources import ensure_resources
from gomailpy.providers.sendgrid import SendGridProvider
from gomailpy.queues.sqs import create_queue_client
from gomailpy.webhooks.signing import new_secret
from gomailpy_local.receiver import WebhookReceiver
from gomailpy_local.standins import SendGridStandIn
from pipeline.feedback import open_feedback
from pipeline.node import PipelineNode
from pipeline.steps import create_steps
from pipeline.webhooks import open_webhooks
from tests.support import StartServer, create_queues, make_envelope, make_settings, unique

API_KEY = "SG.webhooks-e2e"


async def test_bounce_and_delivery_reach_a_verifying_receiver_as_signed_webhooks(
    sqs_endpoint: str, stack: AsyncExitStack, start_server: StartServer
) -> None:
    secret = new_secret()
    receiver = await stack.enter_async_context(WebhookReceiver(secret))
    standin = await stack.enter_async_context(SendGridStandIn(api_key=API_KEY))
    settings = make_settings(
        sqs_endpoint,
        queue_count=1,
        queues={"visibility_timeout_s": 10, "wait_time_s": 1},
        pipeline={"send_timeout_s": 2, "min_iteration_duration_s": 0},
        status={"backend": "memory"},
        events={
            "enabled": True,
            "queue": unique("events"),
            "ses_topic": unique("topic"),
            "ses_configuration_set": unique("cs"),
            "sendgrid_public_key": standin.public_key,
        },
        webhooks={
            "enabled": True,
            "queue": unique("hooks"),
            "allow_loopback_targets": True,
            "endpoints": [{"name": "app", "url": receiver.url}],
            "secrets": json.dumps({"app": secret}),
        },
    )
    await create_queues(settings)
    await ensure_resources(settings)  # the events and webhook queues
    server = await start_server(create_app(settings))
    standin.events_url = str(server.make_url("/events/sendgrid"))
    sendgrid = settings.providers.sendgrid.model_copy(
        update={"base_url": standin.base_url, "api_key": SecretStr(API_KEY)}
    )
    provider = await stack.enter_async_context(SendGridProvider(sendgrid))
    queues = await stack.enter_async_context(create_queue_client(settings))
    node = await stack.enter_async_context(PipelineNode(settings, queues, {"sendgrid": provider}))
    feedback = await open_feedback(stack, settings, queues, node, None)
    node.steps = create_steps(settings, queues, suppression=feedback.screen)
    await open_webhooks(stack, settings, queues)

    bounced = make_envelope(1, toEmail="bounce@example.org")
    delivered = make_envelope(2, toEmail="someone@example.org")
    [url] = await queues.resolve_all()
    for envelope in (bounced, delivered):
        await queues.send(url, envelope.encode())
    report = await node.run_iteration()
    assert report.sent["sendgrid"] == 2

    def types(message_id: str) -> list[str]:
        return [e["type"] for e in receiver.of(message_id)]

    for _ in range(300):
        if {"email.sent", "email.bounced"} <= set(types(bounced.id)) and {
            "email.sent",
            "email.delivered",
        } <= set(types(delivered.id)):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"webhooks so far: {list(receiver.events)}")
    by_type = {e["type"]: e for e in receiver.of(bounced.id)}
    # In time order (SendGrid stamps whole seconds; webhooks, like SQS, promise no order).
    assert int(epoch(by_type["email.sent"]["timestamp"])) <= epoch(
        by_type["email.bounced"]["timestamp"]
    )
    assert by_type["email.bounced"]["data"]["recipient"] == "bounce@example.org"
    assert by_type["email.bounced"]["data"]["subtype"] == "hard"
    assert by_type["email.sent"]["data"]["provider"] == "sendgrid"
    assert "email.bounced" not in types(delivered.id)
    assert receiver.unverified == 0
    # SendGrid's own `processed` is not offered beside gomailpy's `sent`: one each.
    assert types(bounced.id).count("email.sent") == 1
