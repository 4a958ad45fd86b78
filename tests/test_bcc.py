"""Bcc recipients stay hidden: whichever way an email comes in (`POST /email/send`, `POST
/v3/mail/send`, SMTP submission) and whichever provider sends it (SES on LocalStack, SMTP and
SendGrid on the stand-ins), no copy names a Bcc recipient to anyone, also once every To
recipient is suppressed.

Every test reads what the provider's far end was handed, as copies: SES the raw MIME and its
Destinations (as the SendRawEmail call carried them, LocalStack's own record of the raw data
compared), SMTP the data every RCPT of a transaction received, SendGrid one copy per
personalization, its headers as SendGrid writes them (To and Cc from the personalization, Bcc
never).
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.parser
import email.policy
import smtplib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from email.headerregistry import AddressHeader
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api.app import create_app
from gomailpy.config.settings import Settings
from gomailpy.email.envelope import Envelope
from gomailpy.email.mime import build_message, message_bytes, without_bcc_header
from gomailpy.email.models import Address, Email
from gomailpy.listeners.submission import SubmissionListener, tls_context
from gomailpy.providers import Provider, open_providers
from gomailpy.providers.sendgrid import payload_for
from gomailpy.providers.ses import SesProvider
from gomailpy.queues.aws import open_aws_client
from gomailpy.queues.sqs import create_queue_client
from gomailpy.store.suppressions import MemorySuppressionStore, manual
from gomailpy_local.standins import SendGridStandIn, SmtpStandIn
from gomailpy_local.tls import self_signed_certificate
from pipeline.node import PipelineNode
from pipeline.prepare.suppress import RecipientScreen
from tests.support import StartServer, create_queues, make_settings, unique

SG_KEY = "SG.bcc-test"
UNDISCLOSED = "undisclosed-recipients:;"
BCC_PAIR = ["hidden1@example.org", "hidden2@example.org"]


@dataclass(frozen=True)
class Copy:
    """One copy as sent: who receives it, and the header fields it shows them."""

    recipients: tuple[str, ...]
    headers: list[tuple[str, str]]

    def field(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def addresses(self, name: str) -> list[str]:
        """The addresses the `name` fields (To, Cc) name, lower-cased."""
        found: list[str] = []
        for value in self.field(name):
            parsed = email.policy.default.header_factory(name, value)
            assert isinstance(parsed, AddressHeader)
            found += [a.addr_spec.lower() for a in parsed.addresses]
        return found

    def text(self, *, but: str = "") -> str:
        """Every header field but those named `but`, as one lower-case text."""
        shown = [(k, v) for k, v in self.headers if k.lower() != but.lower()]
        return "\n".join(f"{key}: {value}" for key, value in shown).lower()


def mime_headers(raw: bytes | str) -> list[tuple[str, str]]:
    data = raw.encode() if isinstance(raw, str) else raw
    message = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    return [(key, str(value)) for key, value in message.items()]


def sendgrid_copies(payload: dict[str, Any]) -> list[Copy]:
    """SendGrid writes each personalization's to and cc as its copy's To and Cc headers, over
    the request's own headers; bcc it leaves out of every header."""
    common = [("From", payload["from"]["email"]), ("Subject", payload["subject"])]
    common += list(payload.get("headers", {}).items())
    if "reply_to" in payload:
        common.append(("Reply-To", payload["reply_to"]["email"]))
    copies = []
    for block in payload["personalizations"]:
        shown = [
            (kind.capitalize(), ", ".join(r["email"] for r in block[kind]))
            for kind in ("to", "cc")
            if block.get(kind)
        ]
        receive = [r["email"] for kind in ("to", "cc", "bcc") for r in block.get(kind, [])]
        copies.append(Copy(tuple(receive), shown + common))
    return copies


@dataclass
class Far:
    """The provider under test and what its far end received, as copies, by sender."""

    name: str
    provider: Provider
    copies: Callable[[str], Awaitable[list[Copy]]]


@pytest.fixture(params=["ses", "smtp", "sendgrid"])
async def far(request: pytest.FixtureRequest, sqs_endpoint: str) -> AsyncIterator[Far]:
    async with AsyncExitStack() as stack:
        if request.param == "ses":
            settings = make_settings(sqs_endpoint, providers={"ses": {"enabled": True}})
            client = await open_aws_client(stack, "ses", settings.aws, max_attempts=1)
            calls: list[dict[str, Any]] = []

            def record(params: dict[str, Any], **_: Any) -> None:
                calls.append(dict(params))

            # What the call carries: LocalStack keeps the raw data, not the Destinations.
            client.meta.events.register("before-parameter-build.ses.SendRawEmail", record)
            ses = SesProvider(settings.providers.ses, settings.aws, client=client)
            await stack.enter_async_context(ses)

            async def from_ses(sender: str) -> list[Copy]:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"{sqs_endpoint}/_aws/ses") as response,
                ):
                    kept = [m for m in (await response.json())["messages"] if m["Source"] == sender]
                mine = [c for c in calls if c["Source"] == sender]
                raws = [c["RawMessage"]["Data"].decode() for c in mine]
                assert sorted(raws) == sorted(m["RawData"] for m in kept)  # what SES got
                return [
                    Copy(tuple(c["Destinations"]), mime_headers(raw))
                    for c, raw in zip(mine, raws, strict=True)
                ]

            yield Far("ses", ses, from_ses)
        elif request.param == "smtp":
            relay = await stack.enter_async_context(SmtpStandIn())
            section = {"enabled": True, "host": relay.host, "port": relay.port}
            settings = make_settings("http://127.0.0.1:9", providers={"smtp": section})
            providers = await open_providers(stack, settings)

            async def from_smtp(sender: str) -> list[Copy]:
                return [
                    Copy(tuple(m.rcpt_tos), mime_headers(m.data))
                    for m in relay.messages
                    if m.mail_from == sender
                ]

            yield Far("smtp", providers["smtp"], from_smtp)
        else:
            standin = await stack.enter_async_context(SendGridStandIn(api_key=SG_KEY))
            section = {"enabled": True, "base_url": standin.base_url, "api_key": SG_KEY}
            settings = make_settings("http://127.0.0.1:9", providers={"sendgrid": section})
            providers = await open_providers(stack, settings)

            async def from_sendgrid(sender: str) -> list[Copy]:
                return [
                    copy
                    for m in standin.messages
                    if m.payload["from"]["email"] == sender
                    for copy in sendgrid_copies(m.payload)
                ]

            yield Far("sendgrid", providers["sendgrid"], from_sendgrid)


@dataclass
class Bed:
    """The API, SMTP submission and a pipeline node sending through `far.provider` only, with
    a suppression list in front of it."""

    settings: Settings
    far: Far
    api_url: str
    submission_port: int
    node: PipelineNode
    suppression: MemorySuppressionStore

    async def sender(self) -> str:
        address = f"{unique('from')}@example.com"
        if self.far.name == "ses":
            async with AsyncExitStack() as stack:
                ses = await open_aws_client(stack, "ses", self.settings.aws)
                await ses.verify_email_identity(EmailAddress=address)
        return address

    async def suppress(self, address: str) -> None:
        await self.suppression.put(manual(address, "test", 0.0))

    async def post(self, path: str, body: dict[str, Any]) -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.api_url}{path}", json=body) as response,
        ):
            assert response.status in (200, 202), await response.text()

    async def submit(self, sender: str, rcpts: list[str], raw: bytes) -> None:
        def send() -> None:
            with smtplib.SMTP("127.0.0.1", self.submission_port, timeout=5) as client:
                client.starttls(context=_client_tls())
                client.login("apikey", "any")  # no key configured: any password
                # sendmail, not send_message: the bytes as given, a Bcc header left in.
                refused = client.sendmail(sender, rcpts, raw)
                assert refused == {}

        await asyncio.to_thread(send)

    async def copies(self, sender: str, expected: int) -> list[Copy]:
        """The copies sent from `sender`, once the pipeline has sent `expected` of them."""
        for _ in range(20):
            found = await self.far.copies(sender)
            if len(found) >= expected:
                return found
            await self.node.run_iteration()
        raise AssertionError(f"{self.far.name} did not receive {expected} copies from {sender}")


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    return context


@pytest.fixture
async def bed(
    far: Far, sqs_endpoint: str, start_server: StartServer, tmp_path: Path
) -> AsyncIterator[Bed]:
    settings = make_settings(
        sqs_endpoint,
        queue_count=1,
        queues={"visibility_timeout_s": 30, "wait_time_s": 1},
        pipeline={"send_timeout_s": 5, "min_iteration_duration_s": 0},
        api={"serve_webclient": False},
    )
    await create_queues(settings)
    server = await start_server(create_app(settings))
    cert, key = self_signed_certificate(tmp_path)
    async with AsyncExitStack() as stack:
        queues = await stack.enter_async_context(create_queue_client(settings))
        listener = await stack.enter_async_context(
            SubmissionListener(settings, queues, tls=tls_context(str(cert), str(key)), port=0)
        )
        node = await stack.enter_async_context(
            PipelineNode(settings, queues, {far.name: far.provider})
        )
        suppression = MemorySuppressionStore(settings.suppression)
        node.steps = [RecipientScreen(suppression)]
        yield Bed(
            settings, far, f"http://127.0.0.1:{server.port}", listener.port, node, suppression
        )


# -- the three ways in ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipients:
    to: list[str]
    cc: list[str]
    bcc: list[str]

    @property
    def all(self) -> list[str]:
        return [*self.to, *self.cc, *self.bcc]


async def via_api(bed: Bed, sender: str, r: Recipients) -> None:
    await bed.post(
        "/email/send",
        {
            "email": {
                "fromEmail": sender,
                "toEmail": r.to[0],
                "to": r.to[1:],
                "cc": r.cc,
                "bcc": r.bcc,
                "subject": "Bcc test",
                "body": "Hello",
            }
        },
    )


async def via_v3(bed: Bed, sender: str, r: Recipients) -> None:
    personalization: dict[str, Any] = {"to": [{"email": a} for a in r.to]}
    if r.cc:
        personalization["cc"] = [{"email": a} for a in r.cc]
    personalization["bcc"] = [{"email": a} for a in r.bcc]
    await bed.post(
        "/v3/mail/send",
        {
            "personalizations": [personalization],
            "from": {"email": sender},
            "subject": "Bcc test",
            "content": [{"type": "text/plain", "value": "Hello"}],
        },
    )


def submitted_message(sender: str, to: list[str], cc: list[str], bcc: list[str]) -> bytes:
    """A message as some clients submit it: its Bcc header left in (folded over two lines)."""
    lines = [f"From: {sender}", f"To: {', '.join(to) if to else UNDISCLOSED}"]
    if cc:
        lines.append(f"Cc: {', '.join(cc)}")
    lines += [
        f"Bcc: {bcc[0]},",
        f"  {', '.join(bcc[1:])}",
        "Subject: Bcc test",
        "",
        "Hello",
        "",
    ]
    return "\r\n".join(lines).encode()


async def via_smtp(bed: Bed, sender: str, r: Recipients) -> None:
    await bed.submit(sender, r.all, submitted_message(sender, r.to, r.cc, r.bcc))


WAYS_IN = {"api": via_api, "v3": via_v3, "smtp": via_smtp}


def recipients(*, cc: bool = True) -> Recipients:
    return Recipients(
        to=[f"{unique('to')}@example.org"],
        cc=[f"{unique('cc')}@example.org"] if cc else [],
        bcc=[f"{unique('bcca')}@example.org", f"{unique('bccb')}@example.org"],
    )


def lower(addresses: list[str] | tuple[str, ...]) -> list[str]:
    return [a.lower() for a in addresses]


# -- what every copy may show --------------------------------------------------------------------


def check_hidden(copies: list[Copy], r: Recipients, receiving: list[str]) -> None:
    """Every `receiving` address gets exactly one copy; no copy has a Bcc header; a Bcc address
    shows in no copy's headers but, on SendGrid, its own copy's To when it receives it alone."""
    received = sorted(a.lower() for c in copies for a in c.recipients)
    assert received == sorted(a.lower() for a in receiving)
    for copy in copies:
        assert copy.field("Bcc") == [] and copy.field("Resent-Bcc") == []
        for hidden in r.bcc:
            if copy.recipients == (hidden,) and copy.addresses("To") == [hidden.lower()]:
                assert hidden.lower() not in copy.text(but="To")  # its own copy, To itself only
                continue
            assert hidden.lower() not in copy.text(), (hidden, copy)


@pytest.mark.parametrize("way_in", WAYS_IN)
async def test_no_copy_names_a_bcc_recipient(bed: Bed, way_in: str) -> None:
    sender, r = await bed.sender(), recipients()
    await WAYS_IN[way_in](bed, sender, r)
    [copy] = await bed.copies(sender, 1)
    check_hidden([copy], r, r.all)
    # One copy for everyone: it names the To and Cc recipients, as the sender wrote them.
    assert copy.addresses("To") == lower(r.to) and copy.addresses("Cc") == lower(r.cc)
    if bed.far.name == "sendgrid":
        assert list(copy.recipients) == r.all  # one personalization, the Bcc as its bcc


@pytest.mark.parametrize("way_in", WAYS_IN)
async def test_to_suppressed_and_two_bcc_neither_bcc_sees_the_other(bed: Bed, way_in: str) -> None:
    sender, r = await bed.sender(), recipients(cc=False)
    await bed.suppress(r.to[0])
    await WAYS_IN[way_in](bed, sender, r)
    copies = await bed.copies(sender, 2 if bed.far.name == "sendgrid" else 1)
    check_hidden(copies, r, r.bcc)
    if bed.far.name == "sendgrid":
        # SendGrid needs a To in each personalization: one each, naming that recipient only.
        assert sorted(c.recipients for c in copies) == sorted((a,) for a in r.bcc)
        assert all(c.addresses("To") == lower(c.recipients) for c in copies)
    elif way_in == "smtp":
        [copy] = copies  # sent as submitted: its To as written, no Bcc
        assert copy.addresses("To") == lower(r.to)
    else:
        [copy] = copies
        assert copy.field("To") == [UNDISCLOSED]


async def test_a_submission_for_bcc_recipients_only(bed: Bed) -> None:
    sender, r = await bed.sender(), recipients(cc=False)
    r = Recipients(to=[], cc=[], bcc=r.bcc)
    await bed.submit(sender, r.bcc, submitted_message(sender, [], [], r.bcc))
    copies = await bed.copies(sender, 2 if bed.far.name == "sendgrid" else 1)
    check_hidden(copies, r, r.bcc)
    if bed.far.name == "sendgrid":
        assert sorted(c.recipients for c in copies) == sorted((a,) for a in r.bcc)
    else:
        [copy] = copies
        assert copy.field("To") == [UNDISCLOSED]  # as the submitter wrote it


def test_a_submission_queued_before_the_fix_is_sent_without_naming_its_bcc() -> None:
    """The previous release queued every RCPT of a submission as `to`, its Bcc header kept: such
    an email (on a queue, in a dead-letter queue) is sent as if submitted today."""
    raw = submitted_message("app@example.com", ["to@example.org"], [], BCC_PAIR)
    rcpts = ["to@example.org", *BCC_PAIR]
    email_then = Email(
        sender=Address(email="app@example.com"),
        to=[Address(email=a) for a in rcpts],
        text="Hello",
        raw=base64.b64encode(raw).decode(),
    )
    envelope = Envelope.wrap(email_then)
    [block] = payload_for(envelope)["personalizations"]
    assert block["to"] == [{"email": "to@example.org"}]
    assert block["bcc"] == [{"email": a} for a in BCC_PAIR]
    sent = message_bytes(build_message(envelope))
    assert b"Bcc:" not in sent and not any(a.encode() in sent for a in BCC_PAIR)
    assert sent.endswith(b"Subject: Bcc test\r\n\r\nHello\r\n")  # the rest byte for byte


@pytest.mark.parametrize(
    ("submitted", "sent"),
    [
        (
            b"From: a\r\nBcc: x,\r\n  y\r\nTo: b\r\n\r\nBcc: body\r\n",
            b"From: a\r\nTo: b\r\n\r\nBcc: body\r\n",
        ),
        (b"From: a\nBCC: x\nTo: b\n\nbody\n", b"From: a\nTo: b\n\nbody\n"),
        (b"Resent-Bcc: z\r\n\tw\r\nTo: b\r\n\r\n", b"To: b\r\n\r\n"),
        (b"From: a\r\nbcc: x", b"From: a\r\n"),
        (b"\r\nBcc: body", b"\r\nBcc: body"),  # no header at all: the body is left alone
        (b"From: a\r\nTo: b\r\n\r\nBcc: body", b"From: a\r\nTo: b\r\n\r\nBcc: body"),
    ],
)
def test_a_bcc_header_is_taken_out_and_nothing_else(submitted: bytes, sent: bytes) -> None:
    assert without_bcc_header(submitted) == sent
