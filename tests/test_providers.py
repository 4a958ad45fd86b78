"""Providers against real protocol servers: SES on LocalStack, SendGrid and SMTP on the stand-ins.

Only SES needs LocalStack; the SendGrid and SMTP tests build settings with an AWS endpoint nobody
calls (`NO_AWS`), so they run without it.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest

from gomailpy.email.envelope import Envelope
from gomailpy.email.models import Address, Attachment, Email
from gomailpy.providers import Outcome, Provider, open_providers
from gomailpy.providers.smtp import classify_reply
from gomailpy.queues.aws import open_aws_client
from gomailpy_local.standins import SendGridStandIn, SmtpStandIn
from gomailpy_local.standins.sendgrid import validate_payload
from pipeline.sending.dispatch import ProviderLane
from tests.support import make_settings, unique

NO_AWS = "http://127.0.0.1:9"  # never called: only SES talks to AWS
API_KEY = "SG.test-key"
PDF = b"%PDF-1.4 pretend"


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_envelope(sender: str = "sender@example.com", **fields: Any) -> Envelope:
    base: dict[str, Any] = {
        "sender": Address(email=sender, name="Sender Name"),
        "to": [Address(email="to@example.com", name="To Name")],
        "cc": [Address(email="cc@example.com")],
        "bcc": [Address(email="bcc@example.com")],
        "reply_to": Address(email="reply@example.com"),
        "subject": "Quarterly report",
        "text": "Please find the report attached.",
        "html": "<p>Please find the report attached.</p>",
        "headers": {"X-Campaign": "q3"},
        "attachments": [
            Attachment(
                filename="report.pdf",
                content_type="application/pdf",
                content=base64.b64encode(PDF).decode(),
            )
        ],
    }
    base.update(fields)
    return Envelope.wrap(Email.model_validate(base))


async def open_one(stack: AsyncExitStack, endpoint: str, name: str, **section: Any) -> Provider:
    settings = make_settings(endpoint, providers={name: {"enabled": True, **section}})
    providers = await open_providers(stack, settings)
    assert list(providers) == [name]
    return providers[name]


def lane(provider: Provider, send_timeout_s: float = 30.0) -> ProviderLane:
    """The provider as the pipeline calls it: bounded by the tighter of `send_timeout_s` and
    its own `timeout_s`, a hang or a crash answered TRANSIENT."""
    return ProviderLane(provider, timeout_s=send_timeout_s, in_flight=asyncio.Semaphore(100))


# --- SES on LocalStack ------------------------------------------------------------------------


async def ses_messages(endpoint: str, source: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{endpoint}/_aws/ses") as response:
        body = await response.json()
    return [m for m in body["messages"] if m["Source"] == source]


async def test_ses_sends_raw_message_to_every_recipient(sqs_endpoint: str) -> None:
    sender = f"{unique('sender')}@example.com"
    async with AsyncExitStack() as stack:
        provider = await open_one(stack, sqs_endpoint, "ses")
        settings = make_settings(sqs_endpoint)
        ses = await open_aws_client(stack, "ses", settings.aws)
        await ses.verify_email_identity(EmailAddress=sender)

        envelope = make_envelope(sender)
        result = await provider.send(envelope)

    assert result.outcome is Outcome.ACCEPTED, result.reason
    assert result.provider == "ses" and result.provider_message_id
    [sent] = await ses_messages(sqs_endpoint, sender)
    assert sent["Id"] == result.provider_message_id
    message = email.message_from_string(sent["RawData"], policy=email.policy.default)
    assert message["Message-ID"] == f"<{envelope.id}@gomailpy>"
    assert message["From"] == f"Sender Name <{sender}>"
    assert message["To"] == "To Name <to@example.com>"
    assert message["Cc"] == "cc@example.com"
    assert message["Bcc"] is None and "bcc@example.com" not in sent["RawData"]
    [attachment] = message.iter_attachments()
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content() == PDF


async def test_ses_unverified_sender_is_an_account_problem(sqs_endpoint: str) -> None:
    # A domain no test verifies: other tests on the same LocalStack verify example.com whole.
    sender = f"{unique('unverified')}@unverified.example.net"
    async with AsyncExitStack() as stack:
        provider = await open_one(stack, sqs_endpoint, "ses")
        result = await provider.send(make_envelope(sender))
    assert result.outcome is Outcome.ACCOUNT
    assert sender in result.reason
    assert await ses_messages(sqs_endpoint, sender) == []


async def test_ses_unreachable_endpoint_is_transient() -> None:
    async with AsyncExitStack() as stack:
        provider = await open_one(stack, f"http://127.0.0.1:{free_port()}", "ses", timeout_s=5)
        result = await provider.send(make_envelope())
    assert result.outcome is Outcome.TRANSIENT
    assert result.reason


# --- SendGrid on the stand-in -----------------------------------------------------------------


@pytest.fixture
async def sendgrid_standin() -> AsyncIterator[SendGridStandIn]:
    async with SendGridStandIn(api_key=API_KEY) as standin:
        yield standin


async def open_sendgrid(
    stack: AsyncExitStack, base_url: str, api_key: str = API_KEY, **section: Any
) -> Provider:
    return await open_one(stack, NO_AWS, "sendgrid", base_url=base_url, api_key=api_key, **section)


async def test_sendgrid_posts_the_full_payload(sendgrid_standin: SendGridStandIn) -> None:
    envelope = make_envelope()
    async with AsyncExitStack() as stack:
        provider = await open_sendgrid(stack, sendgrid_standin.base_url)
        result = await provider.send(envelope)

    assert result.outcome is Outcome.ACCEPTED, result.reason
    [received] = sendgrid_standin.messages
    assert result.provider_message_id == received.message_id
    payload = received.payload
    assert payload["from"] == {"email": "sender@example.com", "name": "Sender Name"}
    assert payload["subject"] == "Quarterly report"
    [personalization] = payload["personalizations"]
    assert personalization["to"] == [{"email": "to@example.com", "name": "To Name"}]
    assert personalization["cc"] == [{"email": "cc@example.com"}]
    assert personalization["bcc"] == [{"email": "bcc@example.com"}]
    assert payload["reply_to"] == {"email": "reply@example.com"}
    assert [c["type"] for c in payload["content"]] == ["text/plain", "text/html"]
    assert payload["attachments"] == [
        {
            "content": base64.b64encode(PDF).decode(),
            "filename": "report.pdf",
            "type": "application/pdf",
            "disposition": "attachment",
        }
    ]
    assert payload["headers"]["X-Campaign"] == "q3"
    assert payload["custom_args"] == {"gomailpy_id": envelope.id}


async def test_sendgrid_repeated_address_is_sent_once(sendgrid_standin: SendGridStandIn) -> None:
    # SendGrid answers 400 to an address repeated across to/cc/bcc; the provider drops repeats.
    envelope = make_envelope(bcc=[Address(email="TO@example.com"), Address(email="b@example.com")])
    async with AsyncExitStack() as stack:
        provider = await open_sendgrid(stack, sendgrid_standin.base_url)
        result = await provider.send(envelope)
    assert result.outcome is Outcome.ACCEPTED, result.reason
    personalization = sendgrid_standin.messages[0].payload["personalizations"][0]
    assert personalization["bcc"] == [{"email": "b@example.com"}]


async def test_sendgrid_bad_api_key_is_an_account_problem(
    sendgrid_standin: SendGridStandIn,
) -> None:
    async with AsyncExitStack() as stack:
        provider = await open_sendgrid(stack, sendgrid_standin.base_url, api_key="SG.wrong")
        result = await provider.send(make_envelope())
    assert result.outcome is Outcome.ACCOUNT
    assert "401" in result.reason and "SG.wrong" not in result.reason
    assert sendgrid_standin.messages == []


@pytest.mark.parametrize(
    ("mode", "outcome", "retry_after_s"),
    [("throttle", Outcome.THROTTLED, 1.0), ("fail", Outcome.TRANSIENT, None)],
)
async def test_sendgrid_faults(
    sendgrid_standin: SendGridStandIn, mode: str, outcome: Outcome, retry_after_s: float | None
) -> None:
    sendgrid_standin.mode = mode
    async with AsyncExitStack() as stack:
        provider = await open_sendgrid(stack, sendgrid_standin.base_url)
        result = await provider.send(make_envelope())
        assert result.outcome is outcome
        assert result.retry_after_s == retry_after_s

        sendgrid_standin.mode = "ok"  # the same provider recovers with the service
        assert (await provider.send(make_envelope())).outcome is Outcome.ACCEPTED


async def test_sendgrid_connection_refused_is_transient() -> None:
    async with AsyncExitStack() as stack:
        provider = await open_sendgrid(stack, f"http://127.0.0.1:{free_port()}")
        result = await provider.send(make_envelope())
    assert result.outcome is Outcome.TRANSIENT
    assert result.reason


async def test_sendgrid_hang_times_out_as_transient(sendgrid_standin: SendGridStandIn) -> None:
    sendgrid_standin.mode = "hang"
    async with AsyncExitStack() as stack:
        provider = await open_sendgrid(stack, sendgrid_standin.base_url, timeout_s=0.5)
        result = await lane(provider).send_one(make_envelope())
    assert result.outcome is Outcome.TRANSIENT
    assert result.reason == "timed out after 0.5 s"  # its own timeout_s, the tighter one


async def test_sendgrid_non_ascii_local_part_goes_elsewhere(
    sendgrid_standin: SendGridStandIn,
) -> None:
    async with AsyncExitStack() as stack:
        provider = await open_sendgrid(stack, sendgrid_standin.base_url)
        result = await provider.send(make_envelope(to=[Address(email="用户@example.com")]))
    assert result.outcome is Outcome.ACCOUNT
    assert sendgrid_standin.requests == 0


async def test_sendgrid_standin_refuses_a_malformed_payload(
    sendgrid_standin: SendGridStandIn,
) -> None:
    bad: dict[str, Any] = {"personalizations": [{"to": []}], "from": {}, "content": []}
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as session,
        session.post(f"{sendgrid_standin.base_url}/v3/mail/send", json=bad) as response,
    ):
        assert response.status == 400
        body = await response.json()
    fields = {error["field"] for error in body["errors"]}
    assert {"personalizations.0.to", "from", "subject", "content"} <= fields
    assert all("message" in error for error in body["errors"])
    assert validate_payload({"personalizations": "x"}) != []
    assert sendgrid_standin.messages == []


async def test_standin_control_api_flips_both_standins() -> None:
    async with (
        SmtpStandIn() as smtp,
        SendGridStandIn(api_key=API_KEY, controls={"smtp": smtp}) as sendgrid,
        aiohttp.ClientSession(base_url=sendgrid.base_url) as http,
    ):
        async with http.post("/_standin/mode", json={"mode": "throttle"}) as response:
            assert response.status == 200
        async with http.post("/_standin/smtp/mode", json={"mode": "reject"}) as response:
            assert response.status == 200
        async with http.post("/_standin/mode", json={"mode": "nonsense"}) as response:
            assert response.status == 400
        assert (sendgrid.mode, smtp.mode) == ("throttle", "reject")

        sendgrid.mode = "ok"
        async with AsyncExitStack() as stack:
            provider = await open_sendgrid(stack, sendgrid.base_url)
            assert (await provider.send(make_envelope())).outcome is Outcome.ACCEPTED
        async with http.get("/_standin/messages") as response:
            [message] = await response.json()
        assert message["payload"]["subject"] == "Quarterly report"
        async with http.get("/_standin/smtp/messages") as response:
            assert await response.json() == []


# --- SMTP on the stand-in ---------------------------------------------------------------------


@pytest.fixture
async def smtp_standin() -> AsyncIterator[SmtpStandIn]:
    async with SmtpStandIn() as standin:
        yield standin


async def open_smtp(stack: AsyncExitStack, standin: SmtpStandIn, **section: Any) -> Provider:
    return await open_one(stack, NO_AWS, "smtp", host=standin.host, port=standin.port, **section)


async def test_smtp_delivers_with_headers_and_bcc_only_in_the_envelope(
    smtp_standin: SmtpStandIn,
) -> None:
    envelope = make_envelope()
    async with AsyncExitStack() as stack:
        provider = await open_smtp(stack, smtp_standin)
        result = await provider.send(envelope)

    assert result.outcome is Outcome.ACCEPTED, result.reason
    assert result.provider_message_id and "queued" in result.provider_message_id
    [received] = smtp_standin.messages
    assert received.mail_from == "sender@example.com"
    assert received.rcpt_tos == ["to@example.com", "cc@example.com", "bcc@example.com"]
    assert received.message_id == f"<{envelope.id}@gomailpy>"
    headers = received.headers()
    assert headers["From"] == "Sender Name <sender@example.com>"
    assert headers["To"] == "To Name <to@example.com>"
    assert headers["Cc"] == "cc@example.com"
    assert headers["Subject"] == "Quarterly report"
    assert headers["Bcc"] is None and b"bcc@example.com" not in received.data
    assert b'filename="report.pdf"' in received.data


async def test_smtp_reuses_at_most_max_connections(smtp_standin: SmtpStandIn) -> None:
    async with AsyncExitStack() as stack:
        provider = await open_smtp(stack, smtp_standin, max_connections=3)
        results = await asyncio.gather(*(provider.send(make_envelope()) for _ in range(20)))
        assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 20
        for _ in range(5):  # one at a time: the pooled connections serve again
            assert (await provider.send(make_envelope())).outcome is Outcome.ACCEPTED
    assert len(smtp_standin.messages) == 25
    assert 1 <= smtp_standin.connections <= 3


@pytest.mark.parametrize(
    ("mode", "outcome"),
    [
        ("fail", Outcome.TRANSIENT),  # 451 to DATA
        ("reject", Outcome.PERMANENT),  # 550 5.1.1 no such mailbox: the email's fault
        ("relay-denied", Outcome.ACCOUNT),  # 550 5.7.1 relaying denied: this account's fault
    ],
)
async def test_smtp_refusals(smtp_standin: SmtpStandIn, mode: str, outcome: Outcome) -> None:
    async with AsyncExitStack() as stack:
        provider = await open_smtp(stack, smtp_standin, max_connections=1)
        smtp_standin.mode = mode
        result = await provider.send(make_envelope())
        assert result.outcome is outcome, result.reason
        assert result.reason.startswith(("451", "all recipients refused"))

        smtp_standin.mode = "ok"  # the refused transaction was reset: the connection serves on
        assert (await provider.send(make_envelope())).outcome is Outcome.ACCEPTED
    assert smtp_standin.connections == 1
    assert len(smtp_standin.messages) == 1


async def test_smtp_hang_times_out_as_transient(smtp_standin: SmtpStandIn) -> None:
    smtp_standin.mode = "hang"
    async with AsyncExitStack() as stack:
        provider = await open_smtp(stack, smtp_standin, timeout_s=0.5, max_connections=1)
        result = await lane(provider).send_one(make_envelope())
        assert result.outcome is Outcome.TRANSIENT
        assert result.reason == "timed out after 0.5 s"

        smtp_standin.mode = "ok"  # the hung connection was dropped, not returned to the pool
        assert (await provider.send(make_envelope())).outcome is Outcome.ACCEPTED
    assert smtp_standin.connections == 2


async def test_smtp_reconnects_after_the_server_restarts(smtp_standin: SmtpStandIn) -> None:
    async with AsyncExitStack() as stack:
        provider = await open_smtp(stack, smtp_standin, max_connections=2)
        assert (await provider.send(make_envelope())).outcome is Outcome.ACCEPTED

        await smtp_standin.stop()
        down = await provider.send(make_envelope())
        assert down.outcome is Outcome.TRANSIENT

        await smtp_standin.start()  # same port
        for _ in range(3):
            result = await provider.send(make_envelope())
            assert result.outcome is Outcome.ACCEPTED, result.reason
    assert len(smtp_standin.messages) == 4


async def test_smtp_pooled_connection_dropped_by_the_server_is_replaced(
    smtp_standin: SmtpStandIn,
) -> None:
    # The server restarts between two sends, faster than the client notices: the pooled
    # connection fails at MAIL FROM and the provider tries once on a fresh one.
    async with AsyncExitStack() as stack:
        provider = await open_smtp(stack, smtp_standin, max_connections=1)
        assert (await provider.send(make_envelope())).outcome is Outcome.ACCEPTED
        await smtp_standin.stop()
        await smtp_standin.start()
        result = await provider.send(make_envelope())
        assert result.outcome is Outcome.ACCEPTED, result.reason
    assert smtp_standin.connections == 2


async def test_smtp_connection_refused_is_transient() -> None:
    async with AsyncExitStack() as stack:
        provider = await open_one(stack, NO_AWS, "smtp", host="127.0.0.1", port=free_port())
        result = await provider.send(make_envelope())
    assert result.outcome is Outcome.TRANSIENT
    assert result.reason


async def test_smtp_non_ascii_local_part_uses_smtputf8(smtp_standin: SmtpStandIn) -> None:
    async with AsyncExitStack() as stack:
        provider = await open_smtp(stack, smtp_standin)
        result = await provider.send(make_envelope(to=[Address(email="用户@例子.example")]))
    assert result.outcome is Outcome.ACCEPTED, result.reason
    assert smtp_standin.messages[0].rcpt_tos[0] == "用户@xn--fsqu00a.example"


@pytest.mark.parametrize(
    ("code", "message", "outcome"),
    [
        (451, "4.3.0 Temporary failure", Outcome.TRANSIENT),
        (421, "4.7.0 Too many connections, slow down", Outcome.THROTTLED),
        (450, "4.2.1 Rate limit exceeded", Outcome.THROTTLED),
        (550, "5.1.1 User unknown", Outcome.PERMANENT),
        (552, "5.3.4 Message size exceeds fixed limit", Outcome.PERMANENT),
        (554, "Transaction failed", Outcome.PERMANENT),
        (550, "5.7.1 Relaying denied", Outcome.ACCOUNT),
        (550, "Relay access denied", Outcome.ACCOUNT),
        (530, "5.7.0 Authentication required", Outcome.ACCOUNT),
        (535, "5.7.8 Authentication credentials invalid", Outcome.ACCOUNT),
    ],
)
def test_smtp_reply_rule(code: int, message: str, outcome: Outcome) -> None:
    assert classify_reply(code, message) is outcome


# --- all providers at once --------------------------------------------------------------------


async def test_open_providers_builds_each_enabled_provider_once(
    smtp_standin: SmtpStandIn, sendgrid_standin: SendGridStandIn
) -> None:
    settings = make_settings(
        f"http://127.0.0.1:{free_port()}",
        providers={
            "ses": {"enabled": True},
            "sendgrid": {
                "enabled": True,
                "base_url": sendgrid_standin.base_url,
                "api_key": API_KEY,
            },
            "smtp": {"enabled": True, "host": "127.0.0.1", "port": smtp_standin.port},
        },
    )
    async with AsyncExitStack() as stack:
        providers = await open_providers(stack, settings)
        assert sorted(providers) == ["sendgrid", "ses", "smtp"]
        assert all(isinstance(p, Provider) and p.name == n for n, p in providers.items())
        # what the pipeline bounds each one's sends by, declared by the provider itself
        assert [(p.timeout_s, p.max_concurrency) for p in providers.values()] == [
            (10.0, 64),  # SES: the AWS client's pool (aws.max_pool_connections)
            (10.0, 50),  # SendGrid: providers.sendgrid.max_connections
            (10.0, 4),  # SMTP: providers.smtp.max_connections
        ]
        for name in ("sendgrid", "smtp"):
            assert (await providers[name].send(make_envelope())).outcome is Outcome.ACCEPTED
    assert len(sendgrid_standin.messages) == len(smtp_standin.messages) == 1
    assert await open_providers(AsyncExitStack(), make_settings(NO_AWS)) == {}
