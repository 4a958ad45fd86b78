"""Provider events into the events queue over the real mechanisms, on LocalStack:

- SES: `gomail init` (ensure_resources) builds configuration set -> SNS -> SQS; a real send
  with the configuration set publishes Send and Delivery; an AWS-shaped Bounce published to the
  topic travels the same path and reads as a hard bounce of the right email.
- SendGrid: the stand-in's signed events reach POST /events/sendgrid and land on the events
  queue; forged, replayed and unsigned posts change nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from api.app import create_app
from gomailpy.config.providers import SendGridSettings
from gomailpy.config.settings import Settings
from gomailpy.events import Event, EventType
from gomailpy.feedback.parse import parse_report
from gomailpy.feedback.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, public_key_text, sign
from gomailpy.operating.resources import EVENT_DESTINATION, ensure_resources
from gomailpy.providers.sendgrid import SendGridProvider
from gomailpy.providers.ses import SesProvider
from gomailpy.queues.aws import open_aws_client
from gomailpy.queues.sqs import create_queue_client
from gomailpy_local.standins import SendGridStandIn
from tests.support import StartServer, create_queues, make_envelope, make_settings, unique

API_KEY = "SG.events-test"
BOUNCE_SAMPLE: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "ses" / "notifications.json").read_text()
)["event_bounce"]


def events_settings(endpoint: str, **events: Any) -> Settings:
    return make_settings(
        endpoint,
        events={
            "enabled": True,
            "queue": unique("events"),
            "ses_topic": unique("ses-topic"),
            "ses_configuration_set": unique("cs"),
            **events,
        },
    )


async def read_events(
    settings: Settings, done: Callable[[list[Event]], bool], *, rounds: int = 20
) -> tuple[list[Event], int]:
    """Receive from the events queue (deleting) until `done(events)` or `rounds` empty polls;
    returns the events and how many bodies carried none (SES's validation message)."""
    events: list[Event] = []
    empty_bodies = 0
    async with create_queue_client(settings) as queues:
        url = await queues.resolve(settings.events.queue)
        idle = 0
        while not done(events) and idle < rounds:
            messages = await queues.receive(url, wait_time_s=1)
            idle = 0 if messages else idle + 1
            for message in messages:
                parsed = parse_report(message.body)
                empty_bodies += not parsed
                events += parsed
            if messages:
                await queues.delete_batch(url, [m.receipt_handle for m in messages])
    return events, empty_bodies


async def queue_depth(settings: Settings) -> int:
    async with create_queue_client(settings) as queues:
        url = await queues.resolve(settings.events.queue)
        return (await queues.depth(url)).total


# -- SES ----------------------------------------------------------------------------------------


async def test_init_creates_the_ses_sns_sqs_path_and_is_safe_twice(sqs_endpoint: str) -> None:
    settings = events_settings(sqs_endpoint)
    first = await ensure_resources(settings)
    assert await ensure_resources(settings) == first
    assert any(line.startswith("configuration set ") for line in first)
    async with AsyncExitStack() as stack:
        sqs = await open_aws_client(stack, "sqs", settings.aws)
        sns = await open_aws_client(stack, "sns", settings.aws)
        ses = await open_aws_client(stack, "ses", settings.aws)
        url = (await sqs.get_queue_url(QueueName=settings.events.queue))["QueueUrl"]
        attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))[
            "Attributes"
        ]
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"].endswith(settings.events.queue + "-dlq")
        topic = next(
            t["TopicArn"]
            for t in (await sns.list_topics())["Topics"]
            if t["TopicArn"].endswith(":" + settings.events.ses_topic)
        )
        policy = json.loads(attributes["Policy"])
        assert policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] == topic
        subscriptions = (await sns.list_subscriptions_by_topic(TopicArn=topic))["Subscriptions"]
        assert [s["Endpoint"] for s in subscriptions] == [attributes["QueueArn"]]
        subscription = await sns.get_subscription_attributes(
            SubscriptionArn=subscriptions[0]["SubscriptionArn"]
        )
        assert subscription["Attributes"].get("RawMessageDelivery", "false") == "false"
        described = await ses.describe_configuration_set(
            ConfigurationSetName=settings.events.ses_configuration_set,
            ConfigurationSetAttributeNames=["eventDestinations"],
        )
        [destination] = described["EventDestinations"]
        assert destination["Name"].startswith(EVENT_DESTINATION)
        assert destination["SNSDestination"]["TopicARN"] == topic
        assert {"send", "bounce", "complaint", "delivery", "reject"} <= set(
            destination["MatchingEventTypes"]
        )


async def test_a_real_ses_send_publishes_send_and_delivery_for_its_email(
    sqs_endpoint: str,
) -> None:
    settings = events_settings(sqs_endpoint)
    await ensure_resources(settings)
    envelope = make_envelope(toEmail="rcpt@example.org")
    async with AsyncExitStack() as stack:
        ses = await open_aws_client(stack, "ses", settings.aws)
        await ses.verify_domain_identity(Domain="example.com")
        provider = await stack.enter_async_context(
            SesProvider(settings.providers.ses, settings.aws, events=settings.events)
        )
        result = await provider.send(envelope)
    assert result.ok, result.reason

    def seen(events: list[Event]) -> bool:
        return {EventType.SENT, EventType.DELIVERED} <= {e.type for e in events}

    events, empty_bodies = await read_events(settings, seen)
    assert seen(events), events
    assert empty_bodies == 1  # "Successfully validated SNS topic ...": read, skipped
    for event in events:
        assert event.provider == "ses"
        assert event.message_id == envelope.id  # the gomailpy-id tag came back
        assert event.provider_message_id == result.provider_message_id
        assert event.recipient == "rcpt@example.org"


async def test_a_bounce_published_to_the_topic_reads_as_a_hard_bounce(sqs_endpoint: str) -> None:
    settings = events_settings(sqs_endpoint)
    await ensure_resources(settings)
    bounce = json.loads(json.dumps(BOUNCE_SAMPLE))
    bounce["mail"]["tags"]["gomailpy-id"] = ["email-42"]
    async with AsyncExitStack() as stack:
        sns = await open_aws_client(stack, "sns", settings.aws)
        topic = (await sns.create_topic(Name=settings.events.ses_topic))["TopicArn"]
        await sns.publish(
            TopicArn=topic,
            Subject="Amazon SES Email Event Notification",
            Message=json.dumps(bounce),
        )

    def bounced(events: list[Event]) -> bool:
        return any(e.type is EventType.BOUNCED for e in events)

    events, _ = await read_events(settings, bounced)
    [event] = [e for e in events if e.type is EventType.BOUNCED]
    assert (event.message_id, event.recipient, event.subtype) == (
        "email-42",
        "recipient@example.com",
        "hard",
    )
    assert event.mta_response == "smtp; 550 5.1.1 user unknown"


# -- SendGrid -----------------------------------------------------------------------------------


async def sendgrid_api(
    sqs_endpoint: str, start_server: StartServer, public_key: str, **events: Any
) -> tuple[Settings, str]:
    """Settings with events on and the API serving them; returns (settings, webhook URL)."""
    settings = events_settings(sqs_endpoint, sendgrid_public_key=public_key, **events)
    await create_queues(settings)
    async with create_queue_client(settings) as queues:
        await queues.ensure_queue(settings.events.queue)
    server = await start_server(create_app(settings))
    return settings, str(server.make_url("/events/sendgrid"))


async def test_standin_events_reach_the_api_and_land_on_the_events_queue(
    sqs_endpoint: str, start_server: StartServer
) -> None:
    async with SendGridStandIn(api_key=API_KEY) as standin:
        settings, webhook = await sendgrid_api(sqs_endpoint, start_server, standin.public_key)
        standin.events_url = webhook
        sendgrid = SendGridSettings(base_url=standin.base_url, api_key=SecretStr(API_KEY))
        envelope = make_envelope(
            toEmail="ok@example.org", cc=["bounce@example.org", "complain+1@example.org"]
        )
        async with SendGridProvider(sendgrid) as provider:
            result = await provider.send(envelope)
        assert result.ok, result.reason
        for _ in range(100):
            if standin.webhook.posts:
                break
            await asyncio.sleep(0.05)
        assert [post.status for post in standin.webhook.posts] == [200]

    def complete(events: list[Event]) -> bool:
        return len(events) >= 7

    events, _ = await read_events(settings, complete)
    outcomes = {(e.recipient, e.type, e.subtype) for e in events if e.type is not EventType.SENT}
    assert outcomes == {
        ("ok@example.org", EventType.DELIVERED, None),
        ("bounce@example.org", EventType.BOUNCED, "hard"),
        ("complain+1@example.org", EventType.DELIVERED, None),
        ("complain+1@example.org", EventType.COMPLAINED, None),
    }
    assert sum(e.type is EventType.SENT for e in events) == 3
    assert {e.message_id for e in events} == {envelope.id}
    assert {e.provider_message_id for e in events} == {result.provider_message_id}


async def test_forged_replayed_and_unsigned_posts_change_nothing(
    sqs_endpoint: str, start_server: StartServer
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    forger = ec.generate_private_key(ec.SECP256R1())
    settings, webhook = await sendgrid_api(
        sqs_endpoint, start_server, public_key_text(key.public_key())
    )
    body = json.dumps([{"event": "bounce", "email": "a@example.org", "timestamp": 1}]).encode()
    now = str(int(time.time()))
    old = str(int(now) - settings.events.sendgrid_replay_window_s - 60)

    def headers(signer: ec.EllipticCurvePrivateKey, timestamp: str) -> dict[str, str]:
        return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(signer, timestamp, body)}

    async with aiohttp.ClientSession() as http:
        cases = [
            ({}, 401),
            ({TIMESTAMP_HEADER: now}, 401),
            (headers(forger, now), 403),  # signed by another key
            ({**headers(key, now), TIMESTAMP_HEADER: str(int(now) + 1)}, 403),  # altered
            (headers(key, old), 403),  # replayed: signed long ago
        ]
        for sent_headers, status in cases:
            async with http.post(webhook, data=body, headers=sent_headers) as answer:
                assert answer.status == status, (sent_headers, await answer.text())
                assert "errors" in await answer.json()
        # Signed, but not events: refused before anything is queued.
        for bad in (b'{"event": "bounce"}', b"not json", b'["x"]'):
            signed = {TIMESTAMP_HEADER: now, SIGNATURE_HEADER: sign(key, now, bad)}
            async with http.post(webhook, data=bad, headers=signed) as answer:
                assert answer.status == 400, await answer.text()
        assert await queue_depth(settings) == 0
        # The same request, signed now by the right key, is taken: the checks above were real.
        async with http.post(webhook, data=body, headers=headers(key, now)) as answer:
            assert answer.status == 200, await answer.text()
            assert await answer.json() == {"received": 1}
    assert await queue_depth(settings) == 1


async def test_no_events_queue_answers_503_and_events_off_404(
    sqs_endpoint: str, start_server: StartServer
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    settings = events_settings(sqs_endpoint, sendgrid_public_key=public_key_text(key.public_key()))
    await create_queues(settings)  # the events queue is never created
    webhook = str((await start_server(create_app(settings))).make_url("/events/sendgrid"))
    off = make_settings(sqs_endpoint)
    await create_queues(off)
    webhook_off = str((await start_server(create_app(off))).make_url("/events/sendgrid"))
    body = b"[]"
    now = str(int(time.time()))
    signed = {TIMESTAMP_HEADER: now, SIGNATURE_HEADER: sign(key, now, b"[{}]")}
    async with aiohttp.ClientSession() as http:
        async with http.post(webhook, data=b"[{}]", headers=signed) as answer:
            assert answer.status == 400  # an event without a timestamp: unreadable
        good = json.dumps([{"event": "delivered", "timestamp": 1}]).encode()
        signed = {TIMESTAMP_HEADER: now, SIGNATURE_HEADER: sign(key, now, good)}
        async with http.post(webhook, data=good, headers=signed) as answer:
            assert answer.status == 503, await answer.text()
        async with http.post(webhook_off, data=body) as answer:
            assert answer.status == 404
