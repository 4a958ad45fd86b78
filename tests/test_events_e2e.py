"""End to end, per provider, over its real mechanism: a hard bounce at any one provider puts the
address on the suppression list, and the next email to it is dropped for every provider (none of
the three is called).

- SES: an AWS-shaped Bounce published to the SNS topic `gomail init` made (LocalStack), which
  SNS delivers to the events queue;
- SendGrid: a real send through the SendGrid provider to the stand-in, which posts a signed
  `bounce` to the API's webhook, which puts it on the events queue;
- SMTP: a real send through the SMTP provider (VERP envelope sender) to the SMTP stand-in, which
  mails a DSN to the bounce listener, which puts it on the events queue.
Then the event consumer of a pipeline node (its real pollers) takes it from there. The node's
providers for the next email are scripted at the boundary, named after the three, so that "not
called" is counted exactly.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from api.app import create_app
from gomailpy.config.settings import Settings
from gomailpy.listeners.bounces import BounceListener
from gomailpy.operating.resources import ensure_resources
from gomailpy.providers.sendgrid import SendGridProvider
from gomailpy.providers.smtp import SmtpProvider
from gomailpy.queues.aws import open_aws_client
from gomailpy.queues.deadletter import FAILURE_KIND, FAILURE_REASON
from gomailpy.queues.sqs import QueueClient, ReceivedMessage, create_queue_client
from gomailpy.store.backends import EventStores, open_event_stores
from gomailpy.store.events import fold
from gomailpy.store.suppressions import Suppression
from gomailpy_local.standins import SendGridStandIn
from gomailpy_local.standins.smtp import SmtpStandIn
from pipeline.feedback import EventConsumer, SentRecipients
from pipeline.node import PipelineNode
from pipeline.prepare.suppress import RecipientScreen
from tests.boundary import ScriptedProvider
from tests.support import StartServer, create_queues, make_envelope, make_settings, unique

BOUNCE_SAMPLE: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "ses" / "notifications.json").read_text()
)["event_bounce"]
API_KEY = "SG.e2e"


@dataclass
class Loop:
    settings: Settings
    queues: QueueClient
    stores: EventStores
    node: PipelineNode
    providers: dict[str, ScriptedProvider]

    async def suppressed(self, address: str) -> Suppression:
        """The entry, once the consumer recorded the bounce (it polls on its own)."""
        assert self.stores.suppression is not None
        for _ in range(300):
            entry = await self.stores.suppression.get(address)
            if entry is not None:
                return entry
            await asyncio.sleep(0.1)
        raise AssertionError(f"{address} was never suppressed")

    async def next_email_is_dropped(self, address: str) -> None:
        envelope = make_envelope(9, toEmail=address)
        [url] = await self.queues.resolve_all()
        await self.queues.send(url, envelope.encode())
        report = await self.node.run_iteration()
        assert (report.read, report.failed) == (1, 1)
        assert {name: p.attempts.total() for name, p in self.providers.items()} == {
            "ses": 0,
            "sendgrid": 0,
            "smtp": 0,
        }
        assert self.stores.outcomes is not None
        dropped = fold(await self.stores.outcomes.events(envelope.id))
        assert dropped[address.lower()].state == "dropped"

    async def dead_letters(self, url: str) -> list[ReceivedMessage]:
        dlq = await self.queues.dead_letter_url(url)
        found: list[ReceivedMessage] = []
        for _ in range(5):
            found += await self.queues.receive(dlq, wait_time_s=1)
            if found:
                break
        return found


def e2e_settings(endpoint: str, **events: Any) -> Settings:
    return make_settings(
        endpoint,
        queue_count=1,
        queues={"visibility_timeout_s": 10, "wait_time_s": 1},
        pipeline={"send_timeout_s": 2, "min_iteration_duration_s": 0},
        status={"backend": "memory"},
        events={
            "enabled": True,
            "queue": unique("events"),
            "ses_topic": unique("topic"),
            "ses_configuration_set": unique("cs"),
            "consumers": 2,
            **events,
        },
    )


async def start_loop(stack: AsyncExitStack, settings: Settings) -> Loop:
    """`gomail init`, then a pipeline node with its event consumer running."""
    await create_queues(settings)
    await ensure_resources(settings)
    queues = await stack.enter_async_context(create_queue_client(settings))
    stores = await open_event_stores(stack, settings)
    assert stores.suppression is not None
    providers = {name: ScriptedProvider(name) for name in ("ses", "sendgrid", "smtp")}
    node = await stack.enter_async_context(PipelineNode(settings, queues, dict(providers)))
    node.steps = [RecipientScreen(stores.suppression, outcomes=stores.outcomes)]
    assert stores.outcomes is not None
    node.settlement.record_sent = SentRecipients(stores.outcomes)  # as open_feedback does
    consumer = EventConsumer(
        settings, queues, outcomes=stores.outcomes, suppression=stores.suppression
    )
    await stack.enter_async_context(consumer)
    return Loop(settings, queues, stores, node, providers)


async def publish_to_topic(settings: Settings, message: str) -> None:
    async with AsyncExitStack() as stack:
        sns = await open_aws_client(stack, "sns", settings.aws)
        topic = (await sns.create_topic(Name=settings.events.ses_topic))["TopicArn"]
        await sns.publish(TopicArn=topic, Message=message)


@pytest.mark.parametrize("backend", ["memory", "dynamodb"])
async def test_ses_bounce_through_sns_suppresses_for_every_provider(
    sqs_endpoint: str, stack: AsyncExitStack, backend: str, request: pytest.FixtureRequest
) -> None:
    settings = e2e_settings(sqs_endpoint)
    if backend == "dynamodb":  # the list shared by every node, on moto's DynamoDB
        status = {"backend": "dynamodb", "endpoint_url": request.getfixturevalue("moto_endpoint")}
        settings = settings.model_copy(
            update={"status": settings.status.model_copy(update={**status, "table": unique("t")})}
        )
    loop = await start_loop(stack, settings)
    address = f"{unique('gone')}@example.org"
    bounce = json.loads(json.dumps(BOUNCE_SAMPLE))
    bounce["mail"]["tags"]["gomailpy-id"] = ["email-1"]
    bounce["bounce"]["bouncedRecipients"][0]["emailAddress"] = address
    await publish_to_topic(loop.settings, json.dumps(bounce))
    entry = await loop.suppressed(address)
    assert (entry.kind, entry.provider) == ("hard-bounce", "ses")
    assert loop.stores.outcomes is not None
    assert fold(await loop.stores.outcomes.events("email-1"))[address].state == "bounced"
    await loop.next_email_is_dropped(address)


async def test_a_malformed_sns_message_lands_in_the_events_dead_letter_queue(
    sqs_endpoint: str, stack: AsyncExitStack
) -> None:
    loop = await start_loop(stack, e2e_settings(sqs_endpoint))
    await publish_to_topic(loop.settings, "{this is not SES's JSON")
    events_url = await loop.queues.resolve(loop.settings.events.queue)
    letters = await loop.dead_letters(events_url)
    for _ in range(10):
        if letters:
            break
        letters = await loop.dead_letters(events_url)
    [letter] = letters
    assert json.loads(letter.body)["Message"] == "{this is not SES's JSON"
    assert letter.attributes[FAILURE_KIND] == "unreadable"
    assert letter.attributes[FAILURE_REASON].startswith("ses:")


async def test_sendgrid_signed_bounce_suppresses_for_every_provider(
    sqs_endpoint: str, stack: AsyncExitStack, start_server: StartServer
) -> None:
    standin = await stack.enter_async_context(SendGridStandIn(api_key=API_KEY))
    settings = e2e_settings(sqs_endpoint, sendgrid_public_key=standin.public_key)
    loop = await start_loop(stack, settings)
    server = await start_server(create_app(settings))
    standin.events_url = str(server.make_url("/events/sendgrid"))
    sendgrid = settings.providers.sendgrid.model_copy(
        update={"base_url": standin.base_url, "api_key": SecretStr(API_KEY)}
    )
    provider = await stack.enter_async_context(SendGridProvider(sendgrid))
    envelope = make_envelope(1, toEmail="bounce@example.org", cc=["ok@example.org"])
    assert (await provider.send(envelope)).ok
    entry = await loop.suppressed("bounce@example.org")
    assert (entry.kind, entry.provider) == ("hard-bounce", "sendgrid")
    assert await loop.stores.suppression.get("ok@example.org") is None  # type: ignore[union-attr]
    await loop.next_email_is_dropped("bounce@example.org")


async def test_smtp_dsn_suppresses_for_every_provider(
    sqs_endpoint: str, stack: AsyncExitStack
) -> None:
    settings = e2e_settings(sqs_endpoint)
    loop = await start_loop(stack, settings)
    listener = await stack.enter_async_context(
        BounceListener(settings, loop.queues, host="127.0.0.1", port=0)
    )
    relay = SmtpStandIn(report_to=(listener.host, listener.port))
    await relay.start()
    stack.push_async_callback(relay.stop)
    smtp = settings.providers.smtp.model_copy(
        update={"host": "127.0.0.1", "port": relay.port, "enabled": True}
    )
    provider = await stack.enter_async_context(SmtpProvider(smtp, settings.events))
    # Sent by a node, whose settlement records who the email went to: an SMTP report suppresses
    # only a recipient of its email (gomailpy.feedback.trust).
    sender = await stack.enter_async_context(
        PipelineNode(settings, loop.queues, {"smtp": provider})
    )
    sender.settlement.record_sent = loop.node.settlement.record_sent
    envelope = make_envelope(1, toEmail="bounce@example.org")
    [url] = await loop.queues.resolve_all()
    await loop.queues.send(url, envelope.encode())
    assert (await sender.run_iteration()).sent["smtp"] == 1
    entry = await loop.suppressed("bounce@example.org")
    assert (entry.kind, entry.provider) == ("hard-bounce", "smtp")
    assert loop.stores.outcomes is not None
    outcome = fold(await loop.stores.outcomes.events(envelope.id))
    assert outcome["bounce@example.org"].state == "bounced"  # joined by the VERP address
    await loop.next_email_is_dropped("bounce@example.org")


async def test_a_malformed_dsn_lands_in_the_events_dead_letter_queue(
    sqs_endpoint: str, stack: AsyncExitStack
) -> None:
    import aiosmtplib

    settings = e2e_settings(sqs_endpoint)
    loop = await start_loop(stack, settings)
    listener = await stack.enter_async_context(
        BounceListener(settings, loop.queues, host="127.0.0.1", port=0)
    )
    await aiosmtplib.send(
        b"\x00\x01binary",
        sender="mailer-daemon@relay.example",
        recipients=[f"bounces+m1@{settings.events.bounce_domain}"],
        hostname=listener.host,
        port=listener.port,
    )
    events_url = await loop.queues.resolve(settings.events.queue)
    letters: list[ReceivedMessage] = []
    for _ in range(10):
        letters = await loop.dead_letters(events_url)
        if letters:
            break
    [letter] = letters
    assert json.loads(letter.body)["source"] == "smtp"
    assert letter.attributes[FAILURE_KIND] == "unreadable"
    assert letter.attributes[FAILURE_REASON].startswith("smtp:")
