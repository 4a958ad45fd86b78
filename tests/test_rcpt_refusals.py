"""End to end: a recipient an SMTP relay refuses at RCPT time is a hard bounce, recorded and
suppressing in the same step that records the send (pipeline.sending.settlement `record_events`,
wired by pipeline.feedback.open_feedback), with no report through the events queue.

The API (`POST /email/send`, `GET /email/{id}`) and a pipeline node share the delivery store on
moto's DynamoDB; the node sends through the real SMTP provider to the SMTP stand-in, which
refuses `reject…` recipients with 550 5.1.1 and takes the others. Also: a failover to a second
provider keeps the events of the first one's answer (pipeline.sending.dispatch.offer_elsewhere).
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.views.suppressions import SUPPRESSION_STORE
from gomailpy.config.settings import Settings
from gomailpy.events import Event, EventType, Subtype
from gomailpy.operating.resources import ensure_resources
from gomailpy.providers.base import Outcome, SendResult
from gomailpy.providers.smtp import SmtpProvider
from gomailpy.queues.sqs import create_queue_client
from gomailpy.store.deliveries import open_delivery_store
from gomailpy_local.standins.smtp import SmtpStandIn
from pipeline.feedback import open_feedback
from pipeline.node import PipelineNode
from pipeline.prepare.suppress import RecipientScreen
from pipeline.sending.dispatch import ProviderLane, offer_elsewhere
from pipeline.steps import create_steps
from tests.boundary import ScriptedProvider
from tests.support import create_queues, email_request, make_envelope, make_settings, unique

Client = TestClient[web.Request, web.Application]
REFUSED = "reject-1@example.org"
TAKEN = "ok-1@example.org"


def refusal_settings(sqs: str, moto: str, smtp_port: int) -> Settings:
    return make_settings(
        sqs,
        queue_count=1,
        queues={"visibility_timeout_s": 10, "wait_time_s": 1},
        pipeline={"send_timeout_s": 5, "min_iteration_duration_s": 0},
        api={"serve_webclient": False},
        status={"backend": "dynamodb", "endpoint_url": moto, "table": unique("status")},
        events={"enabled": True, "queue": unique("events")},
        providers={"smtp": {"enabled": True, "host": "127.0.0.1", "port": smtp_port}},
    )


async def start_node(stack: AsyncExitStack, settings: Settings) -> PipelineNode:
    """A node as `pipeline` builds it, with the SMTP provider only."""
    queues = await stack.enter_async_context(create_queue_client(settings))
    smtp = await stack.enter_async_context(SmtpProvider(settings.providers.smtp, settings.events))
    status = await open_delivery_store(stack, settings)
    node = await stack.enter_async_context(
        PipelineNode(settings, queues, {"smtp": smtp}, status=status)
    )
    feedback = await open_feedback(stack, settings, queues, node, status)
    node.steps = create_steps(settings, queues, status=status, suppression=feedback.screen)
    return node


System = tuple[SmtpStandIn, Client, PipelineNode]


@pytest.fixture
async def system(sqs_endpoint: str, moto_endpoint: str, stack: AsyncExitStack) -> System:
    """The SMTP stand-in, the API, and a node sending to the stand-in, on fresh resources."""
    relay = SmtpStandIn()
    await relay.start()
    stack.push_async_callback(relay.stop)
    settings = refusal_settings(sqs_endpoint, moto_endpoint, relay.port)
    await create_queues(settings)
    await ensure_resources(settings)
    client: Client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
    await client.start_server()
    stack.push_async_callback(client.close)
    return relay, client, await start_node(stack, settings)


async def send(client: Client, body: dict[str, Any]) -> str:
    response = await client.post("/email/send", json=body)
    assert response.status == 200, await response.text()
    message_id: str = (await response.json())["messageId"]
    return message_id


async def status_of(client: Client, message_id: str) -> dict[str, Any]:
    response = await client.get(f"/email/{message_id}")
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def test_a_recipient_refused_at_rcpt_is_a_hard_bounce_and_suppressed(
    system: System,
) -> None:
    relay, client, node = system

    both = email_request(1, toEmail=TAKEN, cc=[{"email": REFUSED}])
    first = await send(client, both)
    report = await node.run_iteration()
    assert report.sent["smtp"] == 1  # sent: the relay took it for the other recipient
    assert [mail.rcpt_tos for mail in relay.messages] == [[TAKEN]]

    answer = await status_of(client, first)
    assert answer["state"] == "sent"
    refused = answer["recipients"][REFUSED]
    assert (refused["state"], refused["subtype"]) == ("bounced", "hard")
    assert answer["recipients"].get(TAKEN, {}).get("state") != "bounced"
    entry = await client.app[SUPPRESSION_STORE].get(REFUSED)
    assert entry is not None and (entry.kind, entry.provider) == ("hard-bounce", "smtp")

    # The next email to it is dropped: never offered to the relay, failed for that reason.
    second = await send(client, email_request(2, toEmail=REFUSED))
    report = await node.run_iteration()
    assert (report.read, report.failed) == (1, 1)
    assert len(relay.messages) == 1
    dropped = await status_of(client, second)
    assert dropped["state"] == "failed"
    assert dropped["recipients"][REFUSED]["state"] == "dropped"


async def test_an_email_every_recipient_of_which_is_refused_fails_and_still_suppresses(
    system: System,
) -> None:
    relay, client, node = system

    message_id = await send(client, email_request(1, toEmail=REFUSED))
    report = await node.run_iteration()
    assert (report.read, report.failed) == (1, 1)  # refused for good: not sent to anyone
    assert relay.messages == []
    answer = await status_of(client, message_id)
    assert answer["state"] == "failed"
    refused = answer["recipients"][REFUSED]
    assert (refused["state"], refused["subtype"]) == ("bounced", "hard")
    entry = await client.app[SUPPRESSION_STORE].get(REFUSED)
    assert entry is not None and entry.kind == "hard-bounce"


async def test_with_events_off_send_result_events_are_still_recorded_and_suppress(
    sqs_endpoint: str, stack: AsyncExitStack
) -> None:
    settings = make_settings(sqs_endpoint, queue_count=1, status={"backend": "memory"})
    assert not settings.events.enabled
    await create_queues(settings)
    queues = await stack.enter_async_context(create_queue_client(settings))
    node = await stack.enter_async_context(PipelineNode(settings, queues, {}))
    feedback = await open_feedback(stack, settings, queues, node, None)
    assert node.settlement.record_events is not None and feedback.screen is not None
    await node.settlement.record_events([refusal("m-1", "gone@example.org")])
    screen = feedback.screen
    assert isinstance(screen, RecipientScreen)
    entry = await screen.suppression.get("gone@example.org")
    assert entry is not None and entry.kind == "hard-bounce"


def refusal(message_id: str, recipient: str) -> Event:
    return Event(
        id=f"rcpt-{recipient}",
        message_id=message_id,
        recipient=recipient,
        provider="smtp",
        type=EventType.BOUNCED,
        at="2026-01-01T00:00:00Z",
        subtype=Subtype.HARD.value,
    )


async def test_a_second_offer_keeps_the_first_answers_events() -> None:
    envelope = make_envelope(1)
    bounce = refusal(envelope.id, "gone@example.org")
    # An SMTP relay that refused every recipient, one for a bad mailbox, one for its policy.
    first = SendResult("smtp", Outcome.ACCOUNT, reason="relay denied", events=(bounce,))
    other = ScriptedProvider("sendgrid")
    slots = asyncio.Semaphore(10)
    lanes = {
        "smtp": ProviderLane(ScriptedProvider("smtp"), timeout_s=5, in_flight=slots),
        "sendgrid": ProviderLane(other, timeout_s=5, in_flight=slots),
    }
    [answer] = await offer_elsewhere([envelope], [first], lanes, lambda _: True, rotation=0)
    assert (answer.provider, answer.outcome) == ("sendgrid", Outcome.ACCEPTED)
    assert answer.events == (bounce,)
