"""The SMTP relay's bounce path: VERP envelope senders and RCPT-time refusals at the provider, the
bounce listener (gomailpy.listeners.bounces) on a real events queue (LocalStack), and the whole way
round: provider -> SMTP stand-in -> DSN -> listener -> events queue -> parse_report."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import yaml

from gomailpy.config.settings import Settings
from gomailpy.errors import EventFormatError
from gomailpy.events import Event, EventType
from gomailpy.feedback.parse import parse_report
from gomailpy.listeners.bounces import MAX_QUEUED_BYTES, BounceListener
from gomailpy.providers.base import Outcome
from gomailpy.providers.smtp import SmtpProvider, refusal_events
from gomailpy.queues.sqs import QueueClient, create_queue_client
from gomailpy_local.localstack import free_port
from gomailpy_local.standins import SmtpStandIn
from tests.support import make_envelope, make_settings, unique

DOMAIN = "bounces.test.example"
SAMPLES = Path(__file__).parent / "data" / "bounces"


def events_settings(endpoint: str, **events: Any) -> Settings:
    return make_settings(
        endpoint,
        events={"enabled": True, "queue": unique("events"), "bounce_domain": DOMAIN, **events},
        providers={"smtp": {"enabled": True}},
    )


def provider_for(settings: Settings, standin: SmtpStandIn) -> SmtpProvider:
    smtp = settings.providers.smtp.model_copy(update={"host": standin.host, "port": standin.port})
    return SmtpProvider(smtp, settings.events)


def kinds(events: tuple[Event, ...] | list[Event]) -> list[tuple[str | None, str, str | None]]:
    return [(e.recipient, e.type.value, e.subtype) for e in events]


# --- the provider: VERP and refusals at RCPT time (no AWS) --------------------------------------


@pytest.fixture
async def standin() -> AsyncIterator[SmtpStandIn]:
    async with SmtpStandIn() as server:
        yield server


@pytest.mark.parametrize("enabled", [True, False])
async def test_envelope_sender_is_verp_when_events_are_on(
    standin: SmtpStandIn, enabled: bool
) -> None:
    settings = events_settings("http://127.0.0.1:1", enabled=enabled)
    envelope = make_envelope()
    async with provider_for(settings, standin) as provider:
        result = await provider.send(envelope)
    assert result.ok, result.reason
    [received] = standin.messages
    expected = f"bounces+{envelope.id}@{DOMAIN}" if enabled else "sender@example.com"
    assert received.mail_from == expected
    assert received.headers()["From"] == "Sender <sender@example.com>"  # From is unchanged


async def test_an_id_that_fits_no_local_part_is_sent_with_the_plain_sender(
    standin: SmtpStandIn,
) -> None:
    envelope = make_envelope().model_copy(update={"id": "an id with spaces"})
    async with provider_for(events_settings("http://127.0.0.1:1"), standin) as provider:
        assert (await provider.send(envelope)).ok
    assert standin.messages[0].mail_from == "sender@example.com"


async def test_a_recipient_refused_at_rcpt_is_a_hard_bounce_of_an_accepted_email(
    standin: SmtpStandIn,
) -> None:
    envelope = make_envelope(0, toEmail="reject@example.org", cc=["fine@example.org"])
    async with provider_for(events_settings("http://127.0.0.1:1"), standin) as provider:
        result = await provider.send(envelope)
    assert result.outcome is Outcome.ACCEPTED, result.reason
    assert "refused for: reject@example.org: 550 5.1.1" in result.reason
    assert kinds(result.events) == [("reject@example.org", "bounced", "hard")]
    [event] = result.events
    assert event.message_id == envelope.id and event.provider == "smtp"
    assert event.mta_response and event.mta_response.startswith("550 5.1.1")
    assert standin.messages[0].rcpt_tos == ["fine@example.org"]


async def test_every_recipient_refused_is_a_permanent_failure_with_hard_bounces(
    standin: SmtpStandIn,
) -> None:
    envelope = make_envelope(0, toEmail="reject-1@example.org", cc=["reject-2@example.org"])
    async with provider_for(events_settings("http://127.0.0.1:1"), standin) as provider:
        result = await provider.send(envelope)
    assert result.outcome is Outcome.PERMANENT
    assert kinds(result.events) == [
        ("reject-1@example.org", "bounced", "hard"),
        ("reject-2@example.org", "bounced", "hard"),
    ]
    assert standin.messages == []


async def test_a_relay_policy_refusal_bounces_nobody(standin: SmtpStandIn) -> None:
    standin.mode = "relay-denied"  # 550 5.7.1: about us, and the email goes out elsewhere
    async with provider_for(events_settings("http://127.0.0.1:1"), standin) as provider:
        result = await provider.send(make_envelope())
    assert result.outcome is Outcome.ACCOUNT
    assert result.events == ()


@pytest.mark.parametrize(
    ("code", "text", "accepted", "expected"),
    [
        (550, "5.1.1 no such user", True, ("a@x.example", "bounced", "hard")),
        (550, "5.1.1 no such user", False, ("a@x.example", "bounced", "hard")),
        (550, "no such user", False, ("a@x.example", "bounced", "hard")),
        (552, "5.2.2 mailbox full", False, ("a@x.example", "bounced", "soft")),
        (452, "4.2.2 mailbox full", True, ("a@x.example", "bounced", "soft")),
        (550, "5.7.1 not allowed", True, ("a@x.example", "blocked", "soft")),
        (550, "5.7.1 blocked by policy", True, ("a@x.example", "blocked", "soft")),
        (550, "spam detected", False, ("a@x.example", "blocked", "soft")),  # never suppresses
        (451, "4.7.1 too many connections", True, ("a@x.example", "blocked", "soft")),
        (530, "5.7.0 authentication required", True, ("a@x.example", "blocked", "soft")),
        (452, "4.2.2 mailbox full", False, None),  # the email is tried again
        (550, "5.7.1 not allowed", False, None),  # the email goes out elsewhere
    ],
)
def test_refusal_events(
    code: int, text: str, accepted: bool, expected: tuple[str, str, str | None] | None
) -> None:
    events = refusal_events("m1", [("a@x.example", code, text)], accepted=accepted)
    assert kinds(events) == ([expected] if expected else [])
    again = refusal_events("m1", [("A@x.example", code, text)], accepted=accepted)
    assert [e.id for e in events] == [e.id for e in again]  # a retry repeats no event


# --- the bounce listener on LocalStack ----------------------------------------------------------


@pytest.fixture
async def bed(sqs_endpoint: str) -> AsyncIterator[tuple[Settings, QueueClient, str]]:
    settings = events_settings(sqs_endpoint)
    async with create_queue_client(settings) as queues:
        url = await queues.ensure_queue(settings.events.queue)
        yield settings, queues, url


@pytest.fixture
async def listener(bed: tuple[Settings, QueueClient, str]) -> AsyncIterator[BounceListener]:
    settings, queues, _ = bed
    async with BounceListener(settings, queues, host="127.0.0.1", port=0) as server:
        yield server


async def next_body(queues: QueueClient, url: str) -> dict[str, Any]:
    for _ in range(30):
        received = await queues.receive(url, max_messages=1, wait_time_s=1)
        if received:
            await queues.delete_batch(url, [received[0].receipt_handle])
            body: dict[str, Any] = json.loads(received[0].body)
            return body
    raise AssertionError("nothing arrived on the events queue")


async def mail(listener: BounceListener, data: bytes, rcpt: str, sender: str = "") -> str:
    async with aiosmtplib.SMTP(hostname=listener.host, port=listener.port) as client:
        _, reply = await client.sendmail(sender, [rcpt], data)  # "": MAIL FROM:<>, as DSNs
    return reply


async def test_listener_queues_a_report_then_answers_250(
    bed: tuple[Settings, QueueClient, str], listener: BounceListener
) -> None:
    _, queues, url = bed
    data = (SAMPLES / "postfix-hard.eml").read_bytes().replace(b"\n", b"\r\n")
    rcpt = f"bounces+5f0c1a2e-7b7d-4a57-9a0e-3c2d1b0a9f88@{DOMAIN}"
    reply = await mail(listener, data, rcpt)
    assert reply.startswith("2.0.0 Queued as ")
    body = await next_body(queues, url)
    assert {k: body[k] for k in ("source", "mailFrom", "rcptTo")} == {
        "source": "smtp",
        "mailFrom": "",
        "rcptTo": [rcpt],
    }
    assert isinstance(body["receivedAt"], float) and "truncated" not in body
    assert base64.b64decode(body["message"]) == data
    assert kinds(parse_report(json.dumps(body))) == [
        ("nobody@example.org", "bounced", "hard"),
        ("full@example.org", "bounced", "soft"),
    ]


async def test_listener_refuses_other_recipients(
    bed: tuple[Settings, QueueClient, str], listener: BounceListener
) -> None:
    for rcpt in (f"postmaster@{DOMAIN}", "bounces+abc@elsewhere.example", "someone@example.org"):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await mail(listener, b"Subject: hi\r\n\r\nhi\r\n", rcpt)
        assert refused.value.recipients[0].code == 550
    _, queues, url = bed
    assert await queues.receive(url, wait_time_s=0) == []


async def test_listener_answers_451_when_the_queue_cannot_take_it(
    bed: tuple[Settings, QueueClient, str], listener: BounceListener
) -> None:
    _, queues, url = bed
    await queues.client.delete_queue(QueueUrl=url)
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await mail(listener, b"Subject: hi\r\n\r\nhi\r\n", f"bounces@{DOMAIN}")
    assert refused.value.code == 451


async def test_listener_cuts_a_report_too_large_for_a_queue_message(
    bed: tuple[Settings, QueueClient, str], listener: BounceListener
) -> None:
    _, queues, url = bed
    data = (SAMPLES / "postfix-hard.eml").read_bytes().replace(b"\n", b"\r\n")
    padding = b"".join(b"%07d padding of the returned message\r\n" % n for n in range(12_000))
    big = data.replace(b"Hello there.\r\n", b"Hello there.\r\n" + padding)
    assert len(big) > MAX_QUEUED_BYTES
    await mail(listener, big, f"bounces+5f0c1a2e-7b7d-4a57-9a0e-3c2d1b0a9f88@{DOMAIN}")
    body = await next_body(queues, url)
    assert body["truncated"] is True
    assert len(base64.b64decode(body["message"])) == MAX_QUEUED_BYTES
    assert kinds(parse_report(json.dumps(body)))[0] == ("nobody@example.org", "bounced", "hard")


# --- the whole way round ------------------------------------------------------------------------


async def test_a_bounce_travels_from_the_relay_to_the_events_queue(
    bed: tuple[Settings, QueueClient, str], listener: BounceListener
) -> None:
    settings, queues, url = bed
    envelope = make_envelope(0, toEmail="bounce@example.org", cc=["reject@example.org"])
    async with (
        SmtpStandIn(report_to=(listener.host, listener.port)) as relay,
        AsyncExitStack() as stack,
    ):
        provider = await stack.enter_async_context(provider_for(settings, relay))
        result = await provider.send(envelope)
        # The relay refused one recipient at once, accepted the other, and mails its DSN later.
        assert result.outcome is Outcome.ACCEPTED, result.reason
        assert kinds(result.events) == [("reject@example.org", "bounced", "hard")]
        body = await next_body(queues, url)

    assert body["rcptTo"] == [f"bounces+{envelope.id}@{DOMAIN}"] and body["mailFrom"] == ""
    [event] = parse_report(json.dumps(body))
    assert (event.message_id, event.recipient, event.type, event.subtype) == (
        envelope.id,
        "bounce@example.org",
        EventType.BOUNCED,
        "hard",
    )
    assert event.mta_response and event.mta_response.startswith("550 5.1.1")
    assert [r.error for r in relay.reports] == [None]


async def test_a_complaint_travels_too(
    bed: tuple[Settings, QueueClient, str], listener: BounceListener
) -> None:
    settings, queues, url = bed
    envelope = make_envelope(0, toEmail="complain@example.org")
    async with SmtpStandIn(report_to=(listener.host, listener.port)) as relay:
        async with provider_for(settings, relay) as provider:
            assert (await provider.send(envelope)).ok
        body = await next_body(queues, url)
    [event] = parse_report(json.dumps(body))
    assert (event.message_id, event.recipient, event.type) == (
        envelope.id,
        "complain@example.org",
        EventType.COMPLAINED,
    )


async def test_a_malformed_report_is_queued_and_kept_as_unknown(
    bed: tuple[Settings, QueueClient, str], listener: BounceListener
) -> None:
    _, queues, url = bed
    data = (SAMPLES / "malformed-dsn.eml").read_bytes().replace(b"\n", b"\r\n")
    await mail(listener, data, f"bounces+5f0c1a2e-7b7d-4a57-9a0e-3c2d1b0a9f88@{DOMAIN}")
    [event] = parse_report(json.dumps(await next_body(queues, url)))
    assert event.type is EventType.UNKNOWN
    assert event.message_id == "5f0c1a2e-7b7d-4a57-9a0e-3c2d1b0a9f88"
    assert base64.b64decode(event.raw["message"]) == data


async def test_a_message_that_is_no_email_is_queued_and_refused_by_the_parser(
    bed: tuple[Settings, QueueClient, str], listener: BounceListener
) -> None:
    _, queues, url = bed
    await mail(listener, b"no headers, just words\r\n", f"bounces@{DOMAIN}")
    body = await next_body(queues, url)
    with pytest.raises(EventFormatError, match="not an email"):
        parse_report(json.dumps(body))


# --- `gomail bounces` -----------------------------------------------------------------------------


def test_api_and_pipeline_never_import_aiosmtpd() -> None:
    code = (
        "import sys, gomailpy_cli.main, api.app, pipeline.main, gomailpy.providers;"
        " sys.exit('aiosmtpd' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


async def test_gomail_bounces_serves_until_sigterm(
    bed: tuple[Settings, QueueClient, str], tmp_path: Path
) -> None:
    settings, queues, url = bed
    port = free_port()
    config = tmp_path / "bounces.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "aws": {"endpoint_url": settings.aws.endpoint_url},
                "events": {
                    "enabled": True,
                    "queue": settings.events.queue,
                    "bounce_domain": DOMAIN,
                    "bounce_host": "127.0.0.1",
                    "bounce_port": port,
                },
            }
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gomailpy_cli.main", "bounces", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        for _ in range(100):  # until it listens (or gives up: then the send below fails)
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            break
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as client:
            await client.sendmail("", [f"bounces@{DOMAIN}"], b"Subject: x\r\n\r\nx\r\n")
        assert (await next_body(queues, url))["rcptTo"] == [f"bounces@{DOMAIN}"]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        output = (await process.communicate())[0].decode()
    assert process.returncode == 0, output
    assert "bounce listener stopped" in output
