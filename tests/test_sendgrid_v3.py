"""POST /v3/mail/send with SendGrid's own Python client, unmodified but for its host, against the
real API on a loopback port (SQS on LocalStack, templates on moto's DynamoDB)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from python_http_client.exceptions import (
    BadRequestsError,
    PayloadTooLargeError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Attachment,
    Category,
    ContentId,
    CustomArg,
    Disposition,
    FileContent,
    FileName,
    FileType,
    Header,
    MailSettings,
    Personalization,
    SandBoxMode,
    To,
)
from sendgrid.helpers.mail import (
    Mail as SendGridMail,
)

from api.app import create_app
from api.auth import hash_key
from gomailpy.config.settings import Settings
from gomailpy.email.envelope import Envelope
from gomailpy.email.templates import Template
from gomailpy.email.v3 import translate
from gomailpy.email.v3_fields import V3RequestError
from gomailpy.operating.resources import ensure_resources
from gomailpy.providers.sendgrid import payload_for
from gomailpy.queues.sqs import create_queue_client
from gomailpy.store.items import DynamoItemTable
from gomailpy.store.templates import TemplateStore
from tests.support import StartServer, create_queues, make_settings, unique

KEY = "v3-key-" + "k" * 40
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image").decode()


async def v3_settings(sqs: str, moto: str, **api: Any) -> Settings:
    settings = make_settings(
        sqs,
        queue_count=1,
        api={"serve_webclient": False, "api_key_hashes": [hash_key(KEY)], **api},
        status={"backend": "dynamodb", "table": unique("status"), "endpoint_url": moto},
    )
    await create_queues(settings)
    await ensure_resources(settings)
    return settings


async def serve(start_server: StartServer, settings: Settings) -> str:
    server = await start_server(create_app(settings))
    return f"http://127.0.0.1:{server.port}"


async def send(host: str, mail: SendGridMail, key: str = KEY) -> Any:
    """The official client, blocking as it is: run in a thread."""
    client = SendGridAPIClient(key, host=host)
    return await asyncio.to_thread(client.send, mail)


async def queued(settings: Settings, expected: int) -> list[Envelope]:
    """Every envelope on the (single) queue, once `expected` are there."""
    found: list[Envelope] = []
    async with create_queue_client(settings) as queues:
        url = (await queues.resolve_all())[0]
        for _ in range(20):
            for message in await queues.receive(url, wait_time_s=1, visibility_timeout_s=60):
                found.append(Envelope.decode(message.body))
            if len(found) >= expected:
                break
    return sorted(found, key=lambda e: e.id)


def plain_mail(**extra: Any) -> SendGridMail:
    return SendGridMail(
        from_email=("sender@example.com", "Sender"),
        to_emails="rcpt@example.org",
        subject="Hello",
        plain_text_content="Plain body",
        html_content="<p>HTML body</p>",
        **extra,
    )


@pytest.fixture
async def settings(sqs_endpoint: str, moto_endpoint: str) -> Settings:
    return await v3_settings(sqs_endpoint, moto_endpoint)


async def test_plain_send_is_202_with_an_id_and_one_email_on_the_queue(
    settings: Settings, start_server: StartServer
) -> None:
    host = await serve(start_server, settings)
    mail = plain_mail()
    mail.add_category(Category("welcome"))
    mail.add_custom_arg(CustomArg("user", "42"))
    response = await send(host, mail)
    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    [envelope] = await queued(settings, 1)
    assert envelope.id == f"{message_id}_0"
    email = envelope.email
    assert email.sender.email == "sender@example.com" and email.sender.name == "Sender"
    assert [a.email for a in email.to] == ["rcpt@example.org"]
    assert (email.subject, email.text, email.html) == ("Hello", "Plain body", "<p>HTML body</p>")
    assert envelope.categories == ["welcome"]
    assert envelope.custom_args == {"user": "42"}


async def test_two_personalizations_with_dynamic_template_data(
    settings: Settings, start_server: StartServer
) -> None:
    async with DynamoItemTable(settings) as table:
        await TemplateStore(table).put(
            Template("d-welcome", subject="Hi {{name}}", html="<p>{{name}}</p>")
        )
    host = await serve(start_server, settings)
    mail = SendGridMail(from_email="sender@example.com")
    mail.template_id = "d-welcome"
    for n, name in enumerate(["Ada", "Grace"]):
        personalization = Personalization()
        personalization.add_to(To(f"p{n}@example.org"))
        personalization.dynamic_template_data = {"name": name}
        mail.add_personalization(personalization)
    response = await send(host, mail)
    assert response.status_code == 202
    message_id = response.headers["X-Message-Id"]
    envelopes = await queued(settings, 2)
    assert [e.id for e in envelopes] == [f"{message_id}_0", f"{message_id}_1"]
    by_rcpt = {e.email.to[0].email: e.email.template for e in envelopes}
    assert by_rcpt["p0@example.org"] is not None and by_rcpt["p1@example.org"] is not None
    assert by_rcpt["p0@example.org"].id == "d-welcome"
    assert by_rcpt["p0@example.org"].data == {"name": "Ada"}
    assert by_rcpt["p1@example.org"].data == {"name": "Grace"}


async def test_attachments_travel_base64_and_inline_keeps_its_content_id(
    settings: Settings, start_server: StartServer
) -> None:
    host = await serve(start_server, settings)
    mail = plain_mail()
    mail.add_attachment(
        Attachment(FileContent(base64.b64encode(b"report").decode()), FileName("r.txt"))
    )
    mail.add_attachment(
        Attachment(
            FileContent(PNG),
            FileName("logo.png"),
            FileType("image/png"),
            Disposition("inline"),
            ContentId("logo"),
        )
    )
    assert (await send(host, mail)).status_code == 202
    [envelope] = await queued(settings, 1)
    logo, report = sorted(envelope.email.attachments, key=lambda a: a.filename)
    assert report.data() == b"report" and report.content_id is None
    assert (logo.filename, logo.content_type, logo.content_id) == ("logo.png", "image/png", "logo")
    assert logo.content == PNG


async def test_sandbox_mode_validates_and_queues_nothing(
    settings: Settings, start_server: StartServer
) -> None:
    host = await serve(start_server, settings)
    mail = plain_mail()
    mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
    response = await send(host, mail)
    assert response.status_code == 200
    assert await queued(settings, 0) == []
    bad = plain_mail()
    bad.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
    bad.add_header(Header("Bcc", "x@example.org"))
    with pytest.raises(BadRequestsError) as refused:
        await send(host, bad)
    [error] = json.loads(refused.value.body)["errors"]
    assert error["field"] == "headers" and "'Bcc' is not allowed" in error["message"]


async def test_a_bad_key_raises_the_clients_401_error(
    settings: Settings, start_server: StartServer
) -> None:
    host = await serve(start_server, settings)
    with pytest.raises(UnauthorizedError) as refused:
        await send(host, plain_mail(), key="not-a-key")
    assert json.loads(refused.value.body)["errors"][0]["message"]
    assert await queued(settings, 0) == []


async def test_a_too_large_request_is_413(
    sqs_endpoint: str, moto_endpoint: str, start_server: StartServer
) -> None:
    settings = await v3_settings(sqs_endpoint, moto_endpoint, max_body_size_bytes=64 * 1024)
    host = await serve(start_server, settings)
    mail = plain_mail()
    mail.add_attachment(
        Attachment(FileContent(base64.b64encode(b"x" * 100_000).decode()), FileName("big.bin"))
    )
    with pytest.raises(PayloadTooLargeError) as refused:
        await send(host, mail)
    assert "too large" in json.loads(refused.value.body)["errors"][0]["message"]


async def test_rate_limited_is_429_with_rate_limit_headers(
    sqs_endpoint: str, moto_endpoint: str, start_server: StartServer
) -> None:
    settings = await v3_settings(
        sqs_endpoint, moto_endpoint, rate_limit_per_key=0.001, rate_limit_per_key_burst=1
    )
    host = await serve(start_server, settings)
    assert (await send(host, plain_mail())).status_code == 202
    with pytest.raises(TooManyRequestsError) as limited:
        await send(host, plain_mail())
    headers = limited.value.headers
    assert headers["X-RateLimit-Limit"] == "1" and headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["X-RateLimit-Reset"]) > 0
    assert json.loads(limited.value.body)["errors"][0]["message"] == "too many requests"


# -- the translation alone ---------------------------------------------------------------------


def body(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "personalizations": [{"to": [{"email": "a@example.org"}]}],
        "from": {"email": "sender@example.com"},
        "subject": "Hi",
        "content": [{"type": "text/plain", "value": "Hello -name-"}],
    }
    data.update(extra)
    return data


def problems(data: dict[str, Any]) -> list[tuple[str | None, str]]:
    with pytest.raises(V3RequestError) as refused:
        translate(data, message_id="m", now=1000.0)
    return [(p.field, p.message) for p in refused.value.problems]


def test_unknown_and_unsupported_fields_are_refused_by_name() -> None:
    found = problems(body(colour="red", batch_id="b1", ip_pool_name="p"))
    fields = [f for f, _ in found]
    assert fields == ["colour", "batch_id", "ip_pool_name"]
    assert "not supported" in found[1][1]
    personalized = body(personalizations=[{"to": [{"email": "a@example.org"}], "cc_me": True}])
    assert problems(personalized)[0][0] == "personalizations.0.cc_me"


def test_each_address_once_and_substitutions_and_header_injection() -> None:
    twice = body(
        personalizations=[
            {"to": [{"email": "a@example.org"}]},
            {"to": [{"email": "A@example.org"}]},
        ]
    )
    assert problems(twice)[0][0] == "personalizations.1.to"
    injected = body(subject="Hi\r\nBcc: x@example.org")
    assert problems(injected)[0][0] == "subject"
    mail = translate(
        body(
            personalizations=[
                {"to": [{"email": "a@example.org"}], "substitutions": {"-name-": "Ada"}}
            ]
        ),
        message_id="m",
        now=1000.0,
    )
    assert mail.envelopes[0].email.text == "Hello Ada"


def test_send_at_within_72_hours() -> None:
    mail = translate(body(send_at=1000 + 3600), message_id="m", now=1000.0)
    assert mail.envelopes[0].send_at == 4600.0
    assert problems(body(send_at=1000 + 73 * 3600))[0][0] == "send_at"
    past = translate(body(send_at=10), message_id="m", now=1000.0)
    assert past.envelopes[0].send_at is None  # in the past: now


def test_at_most_1000_recipients_in_all() -> None:
    many = [{"to": [{"email": f"r{n}@example.org"}]} for n in range(1001)]
    assert problems(body(personalizations=many))[0][0] == "personalizations"
    spread = [{"to": [{"email": f"r{n}-{k}@example.org"} for k in range(3)]} for n in range(334)]
    assert any("1000" in m for _, m in problems(body(personalizations=spread)))


def test_content_types_other_than_text_and_html_are_refused() -> None:
    assert problems(body(content=[{"type": "text/markdown", "value": "x"}]))[0] == (
        "content.0.type",
        "type must be text/plain or text/html",
    )


def test_custom_args_and_categories_reach_the_sendgrid_provider() -> None:
    mail = translate(
        body(custom_args={"user": "42"}, categories=["welcome"]), message_id="m", now=1000.0
    )
    [envelope] = mail.envelopes
    payload = payload_for(envelope)
    assert payload["custom_args"]["user"] == "42"
    assert payload["custom_args"]["gomailpy_id"] == envelope.id  # the events' link, kept
    assert payload["categories"] == ["welcome"]
