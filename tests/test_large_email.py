"""A 5 MB email with attachments, cc and bcc: API → S3 claim check → SQS reference → pipeline →
each real provider (SES on LocalStack, SMTP and SendGrid on the stand-ins), bytes compared at the
receiving end, the S3 object gone afterwards."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from gomailpy.config.settings import Settings
from gomailpy.operating.resources import ensure_resources
from gomailpy.providers import open_providers
from gomailpy.queues.aws import open_aws_client
from gomailpy.queues.claim_check import ClaimCheck, ReferenceEnvelope, decode_message
from gomailpy.queues.sqs import create_queue_client
from gomailpy_local.standins import SendGridStandIn, SmtpStandIn
from pipeline.node import PipelineNode
from tests.support import make_settings, queue_totals, unique

API_KEY = "SG.large-test"
MIB = 1024 * 1024
TO = ["to@example.org", "to2@example.org"]
CC = ["cc1@example.org", "cc2@example.org"]
BCC = ["bcc1@example.org", "bcc2@example.org"]


def attachments() -> dict[str, tuple[str, bytes]]:
    """About 5 MB in all, incompressible, every byte value present."""
    rng = random.Random(8)
    return {
        "report.pdf": ("application/pdf", rng.randbytes(3 * MIB)),
        "photo.jpg": ("image/jpeg", rng.randbytes(2 * MIB)),
        "all-bytes.bin": ("application/octet-stream", bytes(range(256)) * 64),
    }


FILES = attachments()


def large_request(sender: str) -> dict[str, Any]:
    return {
        "email": {
            "fromEmail": sender,
            "fromName": "Big Sender",
            "toEmail": TO[0],
            "toName": "To One",
            "to": TO[1:],
            "cc": CC,
            "bcc": [{"email": address} for address in BCC],
            "replyTo": "replies@example.org",
            "subject": "The big one",
            "body": "Five megabytes, attached.",
            "html": "<p>Five megabytes, attached.</p>",
            "headers": {"X-Campaign": "large"},
            "attachments": [
                {"filename": name, "contentType": kind, "content": base64.b64encode(data).decode()}
                for name, (kind, data) in FILES.items()
            ],
        }
    }


def large_settings(endpoint: str, **providers: dict[str, Any]) -> Settings:
    return make_settings(
        endpoint,
        queue_count=1,
        queues={"visibility_timeout_s": 60, "wait_time_s": 1},
        pipeline={"send_timeout_s": 20, "min_iteration_duration_s": 0, "retry_base_delay_s": 0},
        api={"max_body_size_bytes": 10 * MIB, "serve_webclient": False},
        claim_check={"bucket": unique("large")},
        providers=providers,
    )


@dataclass
class Receiver:
    """One provider as enabled in settings, and how to read what its far end received."""

    name: str
    section: dict[str, Any]
    received: Callable[[str], Any]  # sender -> awaitable list of received messages (parsed)


def parse(raw: bytes | str) -> EmailMessage:
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.fixture(params=["ses", "smtp", "sendgrid"])
async def receiver(request: pytest.FixtureRequest, sqs_endpoint: str) -> AsyncIterator[Receiver]:
    name = request.param
    if name == "ses":

        async def from_ses(sender: str) -> list[Any]:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{sqs_endpoint}/_aws/ses") as response,
            ):
                body = await response.json()
            return [m for m in body["messages"] if m["Source"] == sender]

        yield Receiver("ses", {"enabled": True, "timeout_s": 20}, from_ses)
    elif name == "smtp":
        async with SmtpStandIn() as smtp:

            async def from_smtp(sender: str) -> list[Any]:
                return [m for m in smtp.messages if m.mail_from == sender]

            yield Receiver(
                "smtp",
                {"enabled": True, "host": smtp.host, "port": smtp.port, "timeout_s": 20},
                from_smtp,
            )
    else:
        async with SendGridStandIn(api_key=API_KEY) as sendgrid:

            async def from_sendgrid(sender: str) -> list[Any]:
                return [m for m in sendgrid.messages if m.payload["from"]["email"] == sender]

            yield Receiver(
                "sendgrid",
                {
                    "enabled": True,
                    "base_url": sendgrid.base_url,
                    "api_key": API_KEY,
                    "timeout_s": 20,
                },
                from_sendgrid,
            )


async def bucket_keys(stack: AsyncExitStack, settings: Settings) -> list[str]:
    s3 = await open_aws_client(stack, "s3", settings.aws)
    answer = await s3.list_objects_v2(Bucket=settings.claim_check.bucket)
    return [item["Key"] for item in answer.get("Contents", [])]


async def post_large(settings: Settings, sender: str) -> str:
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(create_app(settings), host="127.0.0.1")
    )
    await client.start_server()
    try:
        response = await client.post("/email/send", json=large_request(sender))
        assert response.status == 200, await response.text()
        message_id: str = (await response.json())["messageId"]
    finally:
        await client.close()
    return message_id


async def peek_reference(settings: Settings) -> ReferenceEnvelope:
    async with create_queue_client(settings) as queues:
        url = await queues.resolve(settings.queues.urls[0])
        [message] = await queues.receive(url, wait_time_s=2)
        await queues.change_visibility_batch(url, [(message.receipt_handle, 0)])
    assert len(message.body) < 1024
    reference = decode_message(message.body)
    assert isinstance(reference, ReferenceEnvelope)
    return reference


async def run_pipeline(stack: AsyncExitStack, settings: Settings, done: Callable[[], Any]) -> None:
    queues = await stack.enter_async_context(create_queue_client(settings))
    providers = await open_providers(stack, settings)
    claim_check = await stack.enter_async_context(ClaimCheck(settings))
    async with PipelineNode(settings, queues, providers, claim_check=claim_check) as node:
        for _ in range(30):
            await node.run_iteration()
            if await done():
                return
    raise AssertionError("the pipeline did not deliver the email")


def check_mime(message: EmailMessage, sender: str) -> None:
    assert message["From"] == f"Big Sender <{sender}>"
    assert message["To"] == f"To One <{TO[0]}>, {TO[1]}"
    assert message["Cc"] == ", ".join(CC)
    assert message["Bcc"] is None
    assert message["Reply-To"] == "replies@example.org"
    assert message["X-Campaign"] == "large"
    found = {
        part.get_filename(): (part.get_content_type(), part.get_content())
        for part in message.iter_attachments()
    }
    assert set(found) == set(FILES)
    for name, (kind, data) in FILES.items():
        got_kind, got = found[name]
        assert got_kind == kind
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest(), name


async def test_a_5_mb_email_goes_through_each_provider_intact(
    sqs_endpoint: str, receiver: Receiver
) -> None:
    settings = large_settings(sqs_endpoint, **{receiver.name: receiver.section})
    sender = f"{unique('big')}@example.com"
    async with create_queue_client(settings) as queues:
        await queues.ensure_queue(settings.queues.urls[0])
    await ensure_resources(settings)
    async with AsyncExitStack() as stack:
        if receiver.name == "ses":
            ses = await open_aws_client(stack, "ses", settings.aws)
            await ses.verify_email_identity(EmailAddress=sender)

        message_id = await post_large(settings, sender)
        reference = await peek_reference(settings)
        assert reference.id == message_id and reference.ref.size > 5 * MIB
        assert await bucket_keys(stack, settings) == [reference.ref.key]

        async def delivered() -> bool:
            return bool(await receiver.received(sender))

        await run_pipeline(stack, settings, delivered)
        [received] = await receiver.received(sender)
        if receiver.name == "ses":
            check_mime(parse(received["RawData"]), sender)
            assert "bcc1@example.org" not in received["RawData"]
        elif receiver.name == "smtp":
            assert received.rcpt_tos == TO + CC + BCC
            check_mime(parse(received.data), sender)
        else:
            payload = received.payload
            [personalization] = payload["personalizations"]
            assert [r["email"] for r in personalization["to"]] == TO
            assert [r["email"] for r in personalization["cc"]] == CC
            assert [r["email"] for r in personalization["bcc"]] == BCC
            got = {a["filename"]: base64.b64decode(a["content"]) for a in payload["attachments"]}
            assert got == {name: data for name, (_, data) in FILES.items()}

        assert await bucket_keys(stack, settings) == []  # removed once sent
    assert set((await queue_totals(settings)).values()) == {0}


async def test_a_large_email_failed_for_good_leaves_no_object(sqs_endpoint: str) -> None:
    async with SmtpStandIn(mode="reject") as smtp:
        settings = large_settings(
            sqs_endpoint, smtp={"enabled": True, "host": smtp.host, "port": smtp.port}
        )
        async with create_queue_client(settings) as queues:
            await queues.ensure_queue(settings.queues.urls[0])
        await ensure_resources(settings)
        async with AsyncExitStack() as stack:
            await post_large(settings, "big@example.com")
            assert len(await bucket_keys(stack, settings)) == 1
            totals_key = settings.queues.urls[0] + "-dlq"

            async def dead_lettered() -> bool:
                return (await queue_totals(settings))[totals_key] == 1

            await run_pipeline(stack, settings, dead_lettered)
            assert await bucket_keys(stack, settings) == []
        assert smtp.messages == []


async def test_without_a_bucket_a_too_large_email_is_still_400(sqs_endpoint: str) -> None:
    settings = make_settings(sqs_endpoint, api={"max_body_size_bytes": 10 * MIB})
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(create_app(settings), host="127.0.0.1")
    )
    await client.start_server()
    try:
        response = await client.post("/email/send", json=large_request("big@example.com"))
        assert response.status == 400
        assert "too large to queue" in (await response.json())["errors"]["base"]
    finally:
        await client.close()
