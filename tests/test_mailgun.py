"""Mailgun, the fourth provider kind, over its real protocol (gomailpy.providers.mailgun,
gomailpy.feedback.mailgun, POST /events/mailgun/<instance>, the stand-in):

- Mailgun's documented sample events (tests/data/mailgun/event_examples.json) onto the taxonomy;
- the webhook signature as Mailgun's user manual computes it, and what does not verify;
- sends over HTTP to the stand-in, which checks the request shape of Mailgun's API reference:
  the MIME arrives byte for byte, Bcc only in the envelope `to`; 400/401/404/429/5xx outcomes;
  a throttled instance's email sent once the throttle ends, exactly once;
- signed events end to end: stand-in -> API route -> events queue -> consumer -> outcomes and
  suppression; forged, foreign-key, stale, replayed, unsigned and malformed posts refused, with
  nothing queued.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from contextlib import AsyncExitStack
from email import message_from_bytes
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from api.app import create_app
from gomailpy.config.providers import MailgunSettings
from gomailpy.config.settings import Settings, load_settings, missing_secrets
from gomailpy.email.mime import render_bytes
from gomailpy.errors import ConfigError, EventFormatError
from gomailpy.events import Event, EventType
from gomailpy.feedback.mailgun import MailgunVerifier, parse_mailgun, sign
from gomailpy.feedback.parse import parse_report
from gomailpy.feedback.signature import SignatureCheck
from gomailpy.providers import open_providers
from gomailpy.providers.base import Outcome
from gomailpy.providers.mailgun import MailgunProvider
from gomailpy.queues.sqs import create_queue_client
from gomailpy.store.events import fold
from gomailpy_local.standins import MailgunStandIn
from pipeline.node import PipelineNode
from tests.support import StartClient, StartServer, create_queues, make_envelope
from tests.test_events_e2e import e2e_settings, start_loop
from tests.test_pipeline import pipeline_settings

SAMPLES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "mailgun" / "event_examples.json").read_text()
)
DOMAIN = "mg.example.com"
API_KEY = "key-mailgun-test"
SIGNING_KEY = "signing-key-a"


def sample(name: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(json.dumps(SAMPLES[name]))
    event.update(changes)
    return event


def mailgun_settings(base_url: str, name: str = "mg", **fields: Any) -> MailgunSettings:
    return MailgunSettings(
        name=name, domain=DOMAIN, base_url=base_url, api_key=SecretStr(API_KEY), **fields
    )


# --- Mailgun's documented events onto the taxonomy ------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "subtype", "reason"),
    [
        ("accepted", "sent", None, None),
        ("accepted_routed", "sent", None, None),
        ("delivered", "delivered", None, None),
        # reason suppress-bounce, Mailgun's 605 "Not delivering to previously bounced address"
        ("failed_permanent", "bounced", "hard", "suppressed"),
        # a delayed bounce: "550-5.1.1 The email account that you tried to reach does not exist"
        ("failed_permanent_delayed_bounce", "bounced", "hard", "userunknown"),
        # Outlook's 451 4.7.652 "exceeded the maximum number of connections"
        ("failed_temporary", "deferred", None, "toomanyconn"),
        ("opened", "opened", None, None),
        ("clicked", "clicked", None, "http://example.com/signup"),
        ("unsubscribed", "unsubscribed", None, None),
        ("complained", "complained", None, None),
        ("stored", "unknown", None, "Mailgun stored"),  # inbound: kept, never fatal
        ("rejected", "rejected", None, None),
    ],
)
def test_mailguns_documented_samples_map_onto_the_taxonomy(
    name: str, kind: str, subtype: str | None, reason: str | None
) -> None:
    [event] = parse_mailgun([sample(name)], instance="mg-eu")
    assert (event.type.value, event.subtype) == (kind, subtype)
    if name != "rejected":
        assert event.reason == reason
    assert event.provider == "mailgun" and event.instance == "mg-eu"
    assert event.raw["id"] == SAMPLES[name]["id"]  # what Mailgun said, kept
    headers = SAMPLES[name]["message"]["headers"]
    assert event.provider_message_id == headers["message-id"]


def test_the_samples_keep_what_mailgun_said() -> None:
    [rejected] = parse_mailgun([sample("rejected")])
    assert rejected.reason is not None and rejected.reason.startswith("Sandbox subdomains")
    assert rejected.recipient == "joan@example.org"  # a rejected event names none: the To
    [delayed] = parse_mailgun([sample("failed_permanent_delayed_bounce")])
    assert delayed.status == "5.1.1" and delayed.recipient == "christest123@test.com"
    assert delayed.mta_response is not None and "550-5.1.1" in delayed.mta_response
    [temporary] = parse_mailgun([sample("failed_temporary")])
    assert temporary.status == "4.7.652"
    assert temporary.mta_response is not None and temporary.mta_response.startswith("451 ")
    [opened] = parse_mailgun([sample("opened")])
    assert opened.raw["userAgent"].startswith("Mozilla/5.0 (iPhone")
    assert "machine" not in opened.raw  # "bot": "" in the sample: a person, as far as Mailgun knows
    scanned = sample("opened")
    scanned["client-info"]["bot"] = "apple"
    assert parse_mailgun([scanned])[0].raw["machine"] is True
    [clicked] = parse_mailgun([sample("clicked")])
    assert (
        clicked.raw["url"] == "http://example.com/signup" and "Chromium" in clicked.raw["userAgent"]
    )
    [delivered] = parse_mailgun([sample("delivered")])
    assert delivered.at == "2018-06-22T18:29:59.626182Z"
    assert delivered.mta_response == "250 OK"


POLICY_BLOCK = {
    "attempt-no": 1,
    "code": 550,
    "enhanced-code": "5.7.1",
    "message": "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
    "description": "",
}


@pytest.mark.parametrize(
    ("changes", "kind", "subtype", "reason"),
    [
        # A permanent failure that is a policy block: blocked, the address is fine.
        ({"reason": "bounce", "delivery-status": POLICY_BLOCK}, "blocked", "soft", "blocked"),
        ({"reason": "generic", "delivery-status": POLICY_BLOCK}, "blocked", "soft", "blocked"),
        # Nothing classifiable, but Mailgun judged it permanent: a hard bounce.
        (
            {"reason": "bounce", "delivery-status": {"code": 550, "message": ""}},
            "bounced",
            "hard",
            "undefined",
        ),
        ({"reason": "espblock", "delivery-status": {}}, "blocked", "soft", "blocked"),
        (
            {"reason": "old", "delivery-status": {"code": 498, "message": "No MX"}},
            "bounced",
            "soft",
            "expired",
        ),
        ({"reason": "suppress-complaint"}, "dropped", None, "suppress-complaint"),
        ({"reason": "suppress-unsubscribe"}, "dropped", None, "suppress-unsubscribe"),
    ],
)
def test_permanent_failures_are_classified_by_reason(
    changes: dict[str, Any], kind: str, subtype: str | None, reason: str
) -> None:
    [event] = parse_mailgun([sample("failed_permanent", **changes)])
    assert (event.type.value, event.subtype, event.reason) == (kind, subtype, reason)


def test_user_variables_name_the_email_and_instance_and_ids_are_stable() -> None:
    sent = sample(
        "delivered", **{"user-variables": {"gomailpy-id": "0b6c1d2e", "gomailpy-provider": "mg-b"}}
    )
    [event] = parse_mailgun([sent], instance="mg-a")
    assert (event.message_id, event.instance) == ("0b6c1d2e", "mg-b")  # the send's own word
    # Without variables, a Message-ID gomailpy wrote names the email.
    ours = sample("delivered")
    ours["message"]["headers"]["message-id"] = "0b6c1d2e@gomailpy"
    assert parse_mailgun([ours])[0].message_id == "0b6c1d2e"
    assert parse_mailgun([sample("delivered")])[0].message_id is None  # someone else's id
    # The same event posted twice is one event; another event is another.
    first, again = parse_mailgun([sample("delivered"), sample("delivered")])
    assert first.id == again.id
    assert parse_mailgun([sample("delivered", id="other")])[0].id != first.id


@pytest.mark.parametrize(
    "events",
    [
        "not a list",
        ["not an object"],
        [{"event": "delivered"}],  # no timestamp
        [{"event": "delivered", "timestamp": True}],
        [{"event": "delivered", "timestamp": float("nan")}],
        [{"event": "delivered", "timestamp": 1e20}],
        [{"event": "delivered", "timestamp": "1529692199"}],
        [{"timestamp": 1529692199}],  # no event
        [{"event": ["delivered"], "timestamp": 1529692199}],
    ],
)
def test_unreadable_events_raise(events: Any) -> None:
    with pytest.raises(EventFormatError):
        parse_mailgun(events)


def test_odd_but_readable_fields_never_raise() -> None:
    odd = sample(
        "failed_permanent",
        **{"delivery-status": None, "message": "x", "user-variables": [1], "client-info": 3},
    )
    [event] = parse_mailgun([odd])
    assert event.type is EventType.BOUNCED and event.message_id is None


# --- the signature ---------------------------------------------------------------------------


def documented_verify(signing_key: str, token: str, timestamp: str, signature: str) -> bool:
    """Mailgun's user manual, "Securing Webhooks", its Python sample as published."""
    hmac_digest = hmac.new(
        key=signing_key.encode(),
        msg=("{}{}".format(timestamp, token)).encode(),  # noqa: UP032 (as published)
        digestmod=hashlib.sha256,
    ).hexdigest()
    return hmac.compare_digest(str(signature), str(hmac_digest))


def signature_block(key: str = SIGNING_KEY, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    token = uuid.uuid4().hex + uuid.uuid4().hex[:18]  # 50 characters, as Mailgun's
    return {"timestamp": stamp, "token": token, "signature": sign(key, stamp, token)}


def test_signatures_verify_as_mailguns_own_sample_checks_them() -> None:
    block = signature_block()
    assert documented_verify(SIGNING_KEY, block["token"], block["timestamp"], block["signature"])
    verifier = MailgunVerifier(SIGNING_KEY, replay_window_s=600)
    assert verifier.check(block, now=time.time()) is SignatureCheck.VALID
    verifier.remember(block, now=time.time())
    assert verifier.check(block, now=time.time()) is SignatureCheck.REPLAYED  # its token again
    # Forgotten once outside the window (by then the timestamp alone refuses it).
    assert verifier.check(block, now=time.time() + 601) is SignatureCheck.REPLAYED


@pytest.mark.parametrize(
    ("signature", "verdict"),
    [
        (None, SignatureCheck.MISSING),
        ("a string", SignatureCheck.MISSING),
        ({}, SignatureCheck.MISSING),
        ({"timestamp": "1", "token": "t"}, SignatureCheck.MISSING),
        ({"timestamp": "1", "token": "t", "signature": ""}, SignatureCheck.MISSING),
        ({"timestamp": ["1"], "token": "t", "signature": "a" * 64}, SignatureCheck.INVALID),
        ({"timestamp": "1e9", "token": "t", "signature": "a" * 64}, SignatureCheck.INVALID),
        ({"timestamp": "1", "token": 5, "signature": "a" * 64}, SignatureCheck.INVALID),
        ({"timestamp": "1", "token": "t", "signature": "zz"}, SignatureCheck.INVALID),
        ({"timestamp": "1", "token": "t" * 5000, "signature": "a" * 64}, SignatureCheck.INVALID),
    ],
)
def test_missing_or_malformed_signatures(signature: Any, verdict: SignatureCheck) -> None:
    verifier = MailgunVerifier(SIGNING_KEY, replay_window_s=600)
    assert verifier.check(signature, now=1.0) is verdict


def test_forged_foreign_and_stale_signatures_are_refused() -> None:
    verifier = MailgunVerifier(SIGNING_KEY, replay_window_s=600)
    now = time.time()
    foreign = signature_block(key="another-accounts-key")
    assert verifier.check(foreign, now=now) is SignatureCheck.INVALID
    tampered = {**signature_block(), "timestamp": str(int(now) + 1)}
    assert verifier.check(tampered, now=now) is SignatureCheck.INVALID
    stale = signature_block(timestamp=int(now) - 601)
    assert verifier.check(stale, now=now) is SignatureCheck.REPLAYED
    numeric = {**signature_block(timestamp=int(now))}
    numeric["timestamp"] = int(numeric["timestamp"])  # type: ignore[assignment]
    assert verifier.check(numeric, now=now) is SignatureCheck.VALID


# --- settings ---------------------------------------------------------------------------------


def test_a_mailgun_instance_is_configured_by_name_and_its_secrets_by_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gomailpy.yaml"
    path.write_text(
        "providers:\n  - {name: mg-eu, kind: mailgun, domain: mg.example.com,"
        " base_url: 'https://api.eu.mailgun.net'}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(path, env={})
    assert str(raised.value).endswith(
        "providers[0] (mg-eu).api_key: missing secret: Mailgun is enabled, so set"
        " GOMAILPY_PROVIDERS__MG_EU__API_KEY"
    )
    env = {
        "GOMAILPY_PROVIDERS__MG_EU__API_KEY": "key-1",
        "GOMAILPY_PROVIDERS__MG_EU__WEBHOOK_SIGNING_KEY": "sk-1",
    }
    settings = load_settings(path, env=env)
    mailgun = settings.providers["mg-eu"]
    assert isinstance(mailgun, MailgunSettings)
    assert mailgun.api_key is not None and mailgun.api_key.get_secret_value() == "key-1"
    assert mailgun.webhook_signing_key is not None
    assert mailgun.webhook_signing_key.get_secret_value() == "sk-1"
    assert missing_secrets(settings) == []


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{name: mg, kind: mailgun}", "providers[0] (mg).domain: is required"),
        ("{name: mg, kind: mailgun, domain: 'mg.example.com/../x'}", "providers[0] (mg).domain:"),
        ("{name: mg, kind: mailgun, domain: mg.example.com, api_key: k}", "providers[0].api_key:"),
        (
            "{name: mg, kind: mailgun, domain: mg.example.com, webhook_signing_key: k}",
            "providers[0].webhook_signing_key:",
        ),
    ],
)
def test_check_config_names_the_instance_and_key(tmp_path: Path, entry: str, problem: str) -> None:
    path = tmp_path / "gomailpy.yaml"
    path.write_text(f"providers:\n  - {entry}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(path, env={})
    assert problem in str(raised.value)


# --- sends over HTTP to the stand-in ------------------------------------------------------


def without_boundary(mime: bytes) -> bytes:
    boundary = message_from_bytes(mime).get_boundary()
    assert boundary is not None
    return mime.replace(boundary.encode(), b"BOUNDARY")


async def test_the_mime_arrives_intact_with_bcc_only_in_the_envelope(stack: AsyncExitStack) -> None:
    standin = await stack.enter_async_context(MailgunStandIn(api_key=API_KEY, domain=DOMAIN))
    provider = await stack.enter_async_context(
        MailgunProvider(mailgun_settings(standin.base_url, name="mg-eu"))
    )
    envelope = make_envelope(
        1, cc=["copy@example.org"], bcc=["hidden@example.net"], html="<p>Hi</p>"
    )
    result = await provider.send(envelope)
    assert result.outcome is Outcome.ACCEPTED, result.reason
    [received] = standin.messages
    assert result.provider_message_id == received.message_id  # without the angle brackets
    # Byte for byte what SES and SMTP send, but for the random multipart boundary.
    built = render_bytes(envelope)
    assert without_boundary(received.message) == without_boundary(built)
    assert b"<p>Hi</p>" in received.message and b"rcpt1@example.org" in received.message
    assert received.to == ["rcpt1@example.org", "copy@example.org", "hidden@example.net"]
    headers = message_from_bytes(received.message)
    assert headers["Bcc"] is None and b"hidden@example.net" not in received.message
    assert received.variables == {"gomailpy-id": envelope.id, "gomailpy-provider": "mg-eu"}


async def test_the_stand_in_refuses_what_mailgun_refuses(stack: AsyncExitStack) -> None:
    standin = await stack.enter_async_context(MailgunStandIn(api_key=API_KEY, domain=DOMAIN))
    url = f"{standin.base_url}/v3/{DOMAIN}/messages.mime"
    mime = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: s\r\n\r\nbody\r\n"

    def form(**fields: Any) -> aiohttp.FormData:
        data = aiohttp.FormData(quote_fields=False, default_to_multipart=True)
        for name, value in fields.items():
            if isinstance(value, bytes):
                data.add_field(name, value, filename="message.mime")
            else:
                data.add_field(name, value)
        return data

    async with aiohttp.ClientSession() as session:

        async def post(data: Any, *, to: str = url, login: str = "api", key: str = API_KEY) -> Any:
            headers = {"Authorization": aiohttp.encode_basic_auth(login, key)}
            async with session.post(to, data=data, headers=headers) as answer:
                return answer.status, await answer.text()

        assert (await post(form(to="b@example.org", message=mime), login="user"))[0] == 401
        assert (await post(form(to="b@example.org", message=mime), key="wrong"))[0] == 401
        other = f"{standin.base_url}/v3/other.example.com/messages.mime"
        status, text = await post(form(to="b@example.org", message=mime), to=other)
        assert (status, json.loads(text)) == (
            404,
            {"message": "Domain not found: other.example.com"},
        )
        refusals = [
            ({"to": "b@example.org", "message": "not a file"}, "'message' parameter is not a file"),
            ({"to": "b@example.org"}, "message parameter is missing"),
            ({"message": mime}, "to parameter is missing"),
            ({"to": "not an address", "message": mime}, "to parameter is not a valid address"),
            ({"to": "b@example.org", "message": mime, "v:big": "x" * 17_000}, "limited to 16 kB"),
        ]
        for fields, message in refusals:
            status, text = await post(form(**fields))
            assert status == 400 and message in json.loads(text)["message"], (fields, text)
        status, text = await post({"to": "b@example.org", "message": "x"})  # urlencoded
        assert status == 400 and "Expecting 'multipart/form-data'" in json.loads(text)["message"]
        # Comma-separated recipients in one field are Mailgun's other way to list them.
        status, _ = await post(form(to="Bee <b@example.org>, c@example.org", message=mime))
        assert status == 200
    assert standin.messages[-1].to == ["b@example.org", "c@example.org"]
    assert len(standin.messages) == 1


async def test_categories_become_tags_and_an_instance_named_after_its_kind_goes_unnamed(
    stack: AsyncExitStack,
) -> None:
    standin = await stack.enter_async_context(MailgunStandIn(api_key=API_KEY, domain=DOMAIN))
    provider = await stack.enter_async_context(
        MailgunProvider(mailgun_settings(standin.base_url, name="mailgun"))
    )
    envelope = make_envelope(1).model_copy(update={"categories": ["a", "b", "c", "d"]})
    assert (await provider.send(envelope)).ok
    [received] = standin.messages
    assert received.options == {"o:tag": ["a", "b", "c"]}  # Mailgun keeps three
    assert received.variables == {"gomailpy-id": envelope.id}  # the kind's events are its own


@pytest.mark.parametrize(
    ("mode", "outcome", "reason"),
    [
        ("fail", Outcome.TRANSIENT, "HTTP 503: Service Unavailable"),
        ("throttle", Outcome.THROTTLED, "HTTP 429: Too many requests"),
        ("reject", Outcome.PERMANENT, "HTTP 400: to parameter is not a valid address"),
        ("sandbox", Outcome.ACCOUNT, "HTTP 400: Domain mg.example.com is not allowed to send"),
    ],
)
async def test_answers_map_to_outcomes(
    stack: AsyncExitStack, mode: str, outcome: Outcome, reason: str
) -> None:
    standin = await stack.enter_async_context(
        MailgunStandIn(api_key=API_KEY, domain=DOMAIN, mode=mode)
    )
    provider = await stack.enter_async_context(MailgunProvider(mailgun_settings(standin.base_url)))
    result = await provider.send(make_envelope(1))
    assert result.outcome is outcome and result.reason.startswith(reason), result
    assert result.retry_after_s == (1.0 if mode == "throttle" else None)
    assert standin.messages == []


async def test_a_bad_key_a_wrong_domain_or_no_server_is_no_acceptance(
    stack: AsyncExitStack,
) -> None:
    standin = await stack.enter_async_context(MailgunStandIn(api_key="another", domain=DOMAIN))
    provider = await stack.enter_async_context(MailgunProvider(mailgun_settings(standin.base_url)))
    unauthorized = await provider.send(make_envelope(1))
    assert (unauthorized.outcome, unauthorized.reason) == (
        Outcome.ACCOUNT,
        "HTTP 401: Unauthorized",
    )
    standin.api_key = API_KEY
    standin.domain = "another.example.com"
    missing = await provider.send(make_envelope(2))
    assert missing.outcome is Outcome.ACCOUNT and "Domain not found" in missing.reason
    gone = await stack.enter_async_context(MailgunProvider(mailgun_settings("http://127.0.0.1:9")))
    assert (await gone.send(make_envelope(3))).outcome is Outcome.TRANSIENT
    # A non-ASCII local part: no call; an SMTPUTF8 relay may carry it.
    before = standin.requests
    result = await provider.send(make_envelope(4, toEmail="jösé@example.org"))
    assert result.outcome is Outcome.ACCOUNT and standin.requests == before


async def test_a_200_without_a_message_id_is_no_acceptance(
    stack: AsyncExitStack, start_server: StartServer
) -> None:
    from aiohttp import web

    async def magnificent(request: web.Request) -> web.Response:
        return web.Response(text="Mailgun Magnificent API")  # what a wrong path gets

    app = web.Application()
    app.router.add_post("/{tail:.*}", magnificent)
    server = await start_server(app)
    provider = await stack.enter_async_context(
        MailgunProvider(mailgun_settings(str(server.make_url("/"))))
    )
    result = await provider.send(make_envelope(1))
    assert result.outcome is Outcome.ACCOUNT and "without a message id" in result.reason


async def test_a_throttled_instance_sends_each_email_once_the_throttle_ends(
    sqs_endpoint: str, stack: AsyncExitStack
) -> None:
    standin = await stack.enter_async_context(
        MailgunStandIn(api_key=API_KEY, domain=DOMAIN, mode="throttle")
    )
    data = pipeline_settings(sqs_endpoint).model_dump(mode="python")
    data["providers"] = [
        {
            "name": "mg",
            "kind": "mailgun",
            "domain": DOMAIN,
            "base_url": standin.base_url,
            "api_key": API_KEY,
        }
    ]
    settings = Settings.model_validate(data)
    await create_queues(settings)
    queues = await stack.enter_async_context(create_queue_client(settings))
    envelopes = [make_envelope(n) for n in range(5)]
    [first, *_] = await queues.resolve_all()
    result = await queues.send_batch(first, [(str(i), e.encode()) for i, e in enumerate(envelopes)])
    assert not result.failed
    providers = await open_providers(stack, settings)
    node = await stack.enter_async_context(PipelineNode(settings, queues, providers))
    report = await node.run_iteration()
    assert report.read == 5 and standin.requests >= 1 and standin.messages == []
    standin.set_mode("ok")
    for _ in range(60):
        await node.run_iteration()
        if len(standin.messages) >= 5:
            break
    await node.run_iteration()  # one more: nothing may come twice
    sent = sorted(m.variables["gomailpy-id"] for m in standin.messages)
    assert sent == sorted(e.id for e in envelopes)  # each once
    totals = [await queues.receive(url, wait_time_s=0) for url in await queues.resolve_all()]
    assert totals == [[], []]


# --- signed events, end to end ------------------------------------------------------------


async def wait_for(condition: Any, what: str) -> None:
    for _ in range(300):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def test_signed_events_reach_outcomes_and_suppression(
    sqs_endpoint: str, stack: AsyncExitStack, start_server: StartServer
) -> None:
    standin = await stack.enter_async_context(
        MailgunStandIn(api_key=API_KEY, domain=DOMAIN, signing_key=SIGNING_KEY)
    )
    data = e2e_settings(sqs_endpoint).model_dump(mode="python")
    data["providers"] = [
        {
            "name": "mg-eu",
            "kind": "mailgun",
            "domain": DOMAIN,
            "base_url": standin.base_url,
            "api_key": API_KEY,
            "webhook_signing_key": SIGNING_KEY,
        }
    ]
    settings = Settings.model_validate(data)
    loop = await start_loop(stack, settings)
    server = await start_server(create_app(settings))
    standin.events_url = str(server.make_url("/events/mailgun/mg-eu"))
    provider = await stack.enter_async_context(
        MailgunProvider(settings.providers["mg-eu"])  # type: ignore[arg-type]
    )
    gone = f"bounce-{uuid.uuid4().hex[:6]}@example.org"
    envelope = make_envelope(
        1, toEmail=gone, cc=["ok@example.org", "defer@example.org"], bcc=["complain@example.net"]
    )
    assert (await provider.send(envelope)).ok
    assert loop.stores.outcomes is not None and loop.stores.suppression is not None
    outcomes = loop.stores.outcomes

    async def settled() -> bool:
        states = fold(await outcomes.events(envelope.id))
        return {a: s.state for a, s in states.items()} == {
            gone: "bounced",
            "ok@example.org": "delivered",
            "defer@example.org": "deferred",
            "complain@example.net": "complained",
        }

    await wait_for(settled, "every recipient's outcome recorded")
    assert all(post.status == 200 for post in standin.posts)
    entry = await loop.suppressed(gone)
    assert (entry.kind, entry.provider) == ("hard-bounce", "mailgun")
    events = await outcomes.events(envelope.id)
    assert {e.instance for e in events if e.provider == "mailgun"} == {"mg-eu"}
    await loop.next_email_is_dropped(gone)


async def test_forged_stale_replayed_unsigned_and_malformed_posts_are_refused(
    sqs_endpoint: str, start_client: StartClient
) -> None:
    data = e2e_settings(sqs_endpoint).model_dump(mode="python")
    data["providers"] = [
        {
            "name": "mg-a",
            "kind": "mailgun",
            "domain": DOMAIN,
            "api_key": "a",
            "webhook_signing_key": "key-a",
        },
        {
            "name": "mg-b",
            "kind": "mailgun",
            "domain": DOMAIN,
            "api_key": "b",
            "webhook_signing_key": "key-b",
        },
        {"name": "mg-c", "kind": "mailgun", "domain": DOMAIN, "api_key": "c"},  # no signing key
    ]
    settings = Settings.model_validate(data)
    event = sample("delivered", **{"user-variables": {"gomailpy-id": "0b6c1d2e"}})
    async with create_queue_client(settings) as queues:
        events_url = await queues.ensure_queue(settings.events.queue)
        client = await start_client(create_app(settings))

        async def post(path: str, body: Any, raw: bool = False) -> int:
            data = body if raw else json.dumps(body)
            headers = {"Content-Type": "application/json"}
            answer = await client.post(path, data=data, headers=headers)
            text = await answer.text()
            assert "Traceback" not in text
            if answer.status >= 400:
                assert "errors" in json.loads(text), text
            return answer.status

        a = "/events/mailgun/mg-a"
        refused = [
            (a, {"signature": signature_block("key-b"), "event-data": event}, 403),  # foreign key
            (a, {"signature": signature_block("forged"), "event-data": event}, 403),
            (
                a,
                {
                    "signature": signature_block("key-a", int(time.time()) - 3600),
                    "event-data": event,
                },
                403,
            ),  # stale
            (a, {"event-data": event}, 401),  # unsigned
            (a, {"signature": {"token": "t"}, "event-data": event}, 401),
            (a, {"signature": signature_block("key-a"), "event-data": "x"}, 400),
            (a, {"signature": signature_block("key-a"), "event-data": {"event": "delivered"}}, 400),
            (a, [event], 400),  # not an object
            (
                "/events/mailgun/mg-c",
                {"signature": signature_block("key-a"), "event-data": event},
                404,
            ),  # no signing key: no route
            (
                "/events/mailgun/nobody",
                {"signature": signature_block("key-a"), "event-data": event},
                404,
            ),
        ]
        for path, body, status in refused:
            assert await post(path, body) == status, body
        hostile: list[tuple[Any, int]] = [
            (b"{not json", 400),
            (b"", 400),
            (b"\xff\xfe\x00garbage", 400),
            (b"[" * 200_000 + b"]" * 200_000, 400),  # past the limit (as any API body: 400)
            (b"[" * 50_000, 400),  # deep nesting
            (b'{"signature": ' + b"9" * 5000 + b"}", 400),  # an integer past Python's limit
            (b'"just a string"', 400),
            (b"null", 400),
            (
                json.dumps(
                    {"signature": {"timestamp": None, "token": {}, "signature": []}}
                ).encode(),
                401,
            ),
            (
                json.dumps(
                    {"signature": {"timestamp": [1], "token": "t", "signature": "s"}}
                ).encode(),
                403,
            ),
            (json.dumps({"signature": signature_block("key-a"), "event-data": None}).encode(), 400),
            (b"x" * 300_000, 400),
        ]
        for body, status in hostile:
            assert await post(a, body, raw=True) == status, body[:60]
        assert await queues.receive(events_url, wait_time_s=1) == []  # nothing recorded

        # Signed: taken once; the same post again (its token) is a replay.
        signed = {"signature": signature_block("key-a"), "event-data": event}
        assert await post(a, signed) == 200
        assert await post(a, signed) == 403
        assert await post("/events/mailgun/mg-b", signed) == 403  # another instance's key
        [queued] = await queues.receive(events_url, wait_time_s=1)
        body = json.loads(queued.body)
        assert (body["source"], body["instance"]) == ("mailgun", "mg-a")
        assert "signature" not in json.dumps(body["events"])  # the secret's proof stays here
        [parsed] = parse_report(queued.body)
        assert isinstance(parsed, Event)
        assert (parsed.provider, parsed.instance, parsed.message_id, parsed.type) == (
            "mailgun",
            "mg-a",
            "0b6c1d2e",
            EventType.DELIVERED,
        )
        assert await queues.receive(events_url, wait_time_s=0) == []


async def test_the_route_answers_404_with_events_off(
    sqs_endpoint: str, start_client: StartClient
) -> None:
    data = e2e_settings(sqs_endpoint).model_dump(mode="python")
    data["events"]["enabled"] = False
    data["providers"] = [
        {
            "name": "mg",
            "kind": "mailgun",
            "domain": DOMAIN,
            "api_key": "a",
            "webhook_signing_key": "key-a",
        }
    ]
    client = await start_client(create_app(Settings.model_validate(data)))
    body = {"signature": signature_block("key-a"), "event-data": sample("delivered")}
    assert (await client.post("/events/mailgun/mg", json=body)).status == 404


def test_the_queue_body_names_its_source_and_instance() -> None:
    body = json.dumps(
        {"source": "mailgun", "receivedAt": 1.0, "instance": "mg-b", "events": [sample("opened")]}
    )
    [event] = parse_report(body)
    assert (event.provider, event.instance, event.type) == ("mailgun", "mg-b", EventType.OPENED)
    with pytest.raises(EventFormatError, match="^mailgun:"):
        parse_report(json.dumps({"source": "mailgun", "events": [{"event": "x"}]}))


# --- `gomail up` with a Mailgun instance ------------------------------------------------------


async def test_gomail_up_serves_a_configured_mailgun_instance_from_its_stand_in(
    stack: AsyncExitStack,
) -> None:
    from gomailpy_local.up import (
        _every_kind,
        _local_settings,
        _point_webhooks,
        _start_mailgun_standins,
        _start_standins,
    )

    configured = Settings.model_validate(
        {"providers": [{"name": "mg-eu", "kind": "mailgun", "domain": DOMAIN}]}
    )
    settings = _every_kind(configured)  # the three of every `gomail up`, and the Mailgun one
    assert settings.providers.names() == ["mg-eu", "ses", "sendgrid", "smtp"]
    assert _every_kind(Settings()).providers.names() == ["ses", "sendgrid", "smtp"]
    mailguns = await _start_mailgun_standins(stack, settings)
    smtps, sendgrids = await _start_standins(stack, settings, mailguns)
    local = _local_settings(
        settings,
        None,
        {n: s.port for n, s in smtps.items()},
        {n: s.base_url for n, s in sendgrids.items()},
        mailguns,
    )
    _point_webhooks("http://127.0.0.1:1", sendgrids, mailguns)
    assert mailguns["mg-eu"].events_url == "http://127.0.0.1:1/events/mailgun/mg-eu"
    mailgun = local.providers["mg-eu"]
    assert isinstance(mailgun, MailgunSettings) and mailgun.webhook_signing_key is not None
    assert mailgun.webhook_signing_key.get_secret_value() == mailguns["mg-eu"].signing_key
    provider = await stack.enter_async_context(MailgunProvider(mailgun))
    assert (await provider.send(make_envelope(1))).ok
    assert mailguns["mg-eu"].domain == DOMAIN and len(mailguns["mg-eu"].messages) == 1
    # Its faults flip through the one control API, beside the other stand-ins'.
    base = sendgrids["sendgrid"].base_url + "/_standin/mailgun/mg-eu"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/mode", json={"mode": "throttle"}) as answer:
            assert answer.status == 200
        async with session.get(f"{base}/messages") as answer:
            [captured] = await answer.json()
    assert mailguns["mg-eu"].mode == "throttle" and captured["to"] == ["rcpt1@example.org"]
    assert (await provider.send(make_envelope(2))).outcome is Outcome.THROTTLED


async def test_gomail_up_with_a_mailgun_instance_sends_and_hears_back(tmp_path: Path) -> None:
    """`gomail up --config` with a Mailgun instance beside the usual three: mail goes through its
    stand-in, the stand-in's signed events come back through the API's route to the email's
    status, and the operator overview and `gomail status` list the instance."""
    import os
    import re
    import signal
    import sys

    import yaml

    from gomailpy.operating.up_state import STATE_ENV
    from gomailpy_local.localstack import free_port
    from tests.support import email_request
    from tests.test_up import read_banner

    root = Path(__file__).resolve().parent.parent
    config = yaml.safe_load((root / "config" / "gomailpy.yaml").read_text())
    config["aws"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"
    config["queues"]["wait_time_s"] = 1
    # Disabled, as SendGrid is there: no key in the file; `gomail up` enables it on a stand-in.
    config["providers"].append(
        {"name": "mg-eu", "kind": "mailgun", "domain": DOMAIN, "enabled": False}
    )
    # The others nearly weightless: the split (largest remainder) hands the one email to Mailgun.
    for entry in config["providers"]:
        entry["weight"] = 100 if entry["kind"] == "mailgun" else 0.001
    config_path = tmp_path / "mailgun.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", STATE_ENV: str(tmp_path / "up.json")}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gomailpy_cli.main", "up", "--config", str(config_path)),
        *("--api-port", "0", "--no-open", "--nodes", "1"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    try:
        banner = await read_banner(process)
        api = re.search(r"web form\s+(http://\S+)/", banner)
        captured = re.search(r"Mailgun mg-eu: (http://\S+)/messages", banner)
        assert api and captured, banner
        api_url = api.group(1)
        async with aiohttp.ClientSession() as session:
            request = email_request(1, toEmail="bounce@example.org", cc=["ok@example.org"])
            async with session.post(api_url + "/email/send", json=request) as answer:
                assert answer.status == 200, await answer.text()
                message_id = (await answer.json())["messageId"]
            async with asyncio.timeout(90):
                while True:
                    async with session.get(f"{api_url}/email/{message_id}") as answer:
                        status = await answer.json()
                    states = {a: r["state"] for a, r in status.get("recipients", {}).items()}
                    if states == {"bounce@example.org": "bounced", "ok@example.org": "delivered"}:
                        break
                    await asyncio.sleep(0.3)
            async with session.get(captured.group(1) + "/messages") as answer:
                [sent] = await answer.json()
            assert sent["variables"]["gomailpy-id"] == message_id
            async with session.get(api_url + "/admin/overview") as answer:
                overview = await answer.json()
        assert set(overview["providers"]) == {"ses", "sendgrid", "smtp", "mg-eu"}
        assert overview["providers"]["mg-eu"]["sent"] == 1
        assert set(overview["providers"]["mg-eu"]["health"].values()) == {"healthy"}
        done = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "gomailpy_cli.main", "status"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out = (await done.communicate())[0].decode()
        assert done.returncode == 0 and "mg-eu" in out, out
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest = (await process.communicate())[0].decode()
    assert process.returncode == 0, rest
