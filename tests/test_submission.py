"""SMTP submission with smtplib and aiosmtplib: STARTTLS, AUTH with an API key, the message on
a queue (LocalStack's SQS) with its MIME intact, and the codes for what is refused."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

import aiosmtplib
import pytest

from api.auth import hash_key
from gomailpy.config.settings import Settings
from gomailpy.email.envelope import Envelope
from gomailpy.email.mime import build_message, message_bytes
from gomailpy.listeners.submission import MAX_MESSAGE_BYTES, SubmissionListener, tls_context
from gomailpy.providers import open_providers
from gomailpy.providers.sendgrid import payload_for
from gomailpy.queues.sqs import create_queue_client
from gomailpy_local.standins import SmtpStandIn
from gomailpy_local.tls import self_signed_certificate
from tests.support import create_queues, make_settings, unique

KEY = "smtp-key-" + "k" * 40


def self_signed(directory: Path) -> tuple[Path, Path]:
    return self_signed_certificate(directory)


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    return context


def mime_message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "App <app@example.com>"
    message["To"] = "you@example.org"
    message["Subject"] = "Submitted"
    message["X-App-Trace"] = "abc-123"
    message.set_content("Plain part")
    message.add_alternative("<p>HTML part <img src='cid:logo'></p>", subtype="html")
    message.get_payload()[1].add_related(
        b"\x89PNG fake",
        maintype="image",
        subtype="png",
        cid="<logo>",
        filename="logo.png",
        disposition="inline",
    )
    message.add_attachment(b"report", maintype="text", subtype="plain", filename="r.txt")
    return message


@pytest.fixture
async def settings(sqs_endpoint: str) -> Settings:
    settings = make_settings(sqs_endpoint, queue_count=1, api={"api_key_hashes": [hash_key(KEY)]})
    await create_queues(settings)
    return settings


@pytest.fixture
async def listener(settings: Settings, tmp_path: Path) -> AsyncIterator[SubmissionListener]:
    cert, key = self_signed(tmp_path)
    async with (
        create_queue_client(settings) as queues,
        SubmissionListener(settings, queues, tls=tls_context(str(cert), str(key)), port=0) as it,
    ):
        yield it


async def queued(settings: Settings) -> list[Envelope]:
    async with create_queue_client(settings) as queues:
        url = (await queues.resolve_all())[0]
        messages = await queues.receive(url, wait_time_s=1)
        return [Envelope.decode(m.body) for m in messages]


def smtplib_send(port: int, password: str, message: EmailMessage, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
        client.starttls(context=client_tls())
        client.login("apikey", password)
        client.send_message(message, "app@example.com", rcpts)


async def test_smtplib_submission_arrives_with_its_mime_intact(
    listener: SubmissionListener, settings: Settings
) -> None:
    message = mime_message()
    submitted = message.as_bytes()
    rcpts = ["you@example.org", "hidden@example.org"]
    await asyncio.to_thread(smtplib_send, listener.port, KEY, message, rcpts)
    [envelope] = await queued(settings)
    email = envelope.email
    assert email.sender.email == "app@example.com"
    # The envelope decides who receives it, the headers who is named: a RCPT not in To or Cc
    # is Bcc.
    assert [a.email for a in email.to] == ["you@example.org"]
    assert [a.email for a in email.bcc] == ["hidden@example.org"]
    sent = message_bytes(build_message(envelope))  # what SES and the SMTP relay send
    assert sent.startswith(f"X-Gomailpy-Id: {envelope.id}\r\n".encode())
    # Byte for byte as submitted, after the headers gomailpy puts in front (smtplib may have
    # normalised line ends and dot-stuffing on the wire; both are undone by the server).
    assert sent.endswith(submitted.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    parsed = BytesParser(policy=default_policy).parsebytes(sent)
    assert parsed["X-App-Trace"] == "abc-123" and parsed["Subject"] == "Submitted"
    # ... and an SMTP relay receives exactly that.
    async with SmtpStandIn() as relay, AsyncExitStack() as stack:
        relay_settings = make_settings(
            "http://127.0.0.1:1",
            providers={"smtp": {"enabled": True, "host": relay.host, "port": relay.port}},
        )
        provider = (await open_providers(stack, relay_settings))["smtp"]
        assert (await provider.send(envelope)).ok
        [received] = relay.messages
        assert received.data.replace(b"\r\n", b"\n") == sent.replace(b"\r\n", b"\n")
        assert received.rcpt_tos == rcpts
    # SendGrid cannot take a whole message: it gets the parts, the inline image by Content-ID.
    payload = payload_for(envelope)
    assert {c["type"] for c in payload["content"]} == {"text/plain", "text/html"}
    attachments = {a["filename"]: a for a in payload["attachments"]}
    assert attachments["logo.png"]["content_id"] == "logo"
    assert attachments["r.txt"]["disposition"] == "attachment"


async def test_aiosmtplib_submission(listener: SubmissionListener, settings: Settings) -> None:
    message = mime_message()
    errors, answer = await aiosmtplib.send(
        message,
        hostname="127.0.0.1",
        port=listener.port,
        start_tls=True,
        tls_context=client_tls(),
        username="apikey",
        password=KEY,
    )
    assert errors == {} and "Ok: queued as " in answer
    [envelope] = await queued(settings)
    assert answer.endswith(envelope.id)


async def test_refusals_have_the_right_codes(
    listener: SubmissionListener, settings: Settings
) -> None:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, tls_context=client_tls())
    await client.connect(start_tls=False)
    await client.ehlo()
    assert f"size {MAX_MESSAGE_BYTES}" in client.last_ehlo_response.message.lower() or (
        client.supports_extension("size")
    )
    refused = await client.execute_command(b"MAIL", b"FROM:<app@example.com>")
    assert refused.code == 530  # STARTTLS first
    await client.starttls()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as wrong:
        await client.login("apikey", "not-the-key")
    assert wrong.value.code == 535
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        await client.login("someone", KEY)
    await client.login("apikey", KEY)
    await client.mail("app@example.com")
    bad = await client.execute_command(b"RCPT", b"TO:<not an address>")
    assert bad.code in (501, 553)
    big = await client.execute_command(
        b"MAIL", f"FROM:<a@example.com> SIZE={MAX_MESSAGE_BYTES + 1}".encode()
    )
    assert big.code in (503, 552)
    await client.quit()
    assert await queued(settings) == []


async def test_a_queue_outage_is_451_and_nothing_is_kept(sqs_endpoint: str, tmp_path: Path) -> None:
    settings = make_settings(
        sqs_endpoint, queue_count=1, api={"api_key_hashes": [hash_key(KEY)]}
    )  # its queue was never created: every send fails
    settings.queues.urls[0] = unique("missing")
    cert, key = self_signed(tmp_path)
    async with (
        create_queue_client(settings) as queues,
        SubmissionListener(settings, queues, tls=tls_context(str(cert), str(key)), port=0) as it,
    ):
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await asyncio.to_thread(smtplib_send, it.port, KEY, mime_message(), ["a@example.org"])
    assert refused.value.smtp_code == 451
