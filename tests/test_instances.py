"""Providers as named instances of a kind (issue #29): the settings (list form, the three-key form
still read, duplicate names and unknown kinds refused naming the key), then a real pipeline
node over five instances — SES in two regions on LocalStack (v2 API), SendGrid and two SMTP
relays on their stand-ins — with one relay failing and one SES region refusing, and what the
node's /status (`gomail status`) and the operator overview show of all five.

Waits are for outcomes; no test asserts a time.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import logging
import os
import re
import signal
import sys
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from pydantic import ValidationError

from api.app import create_app
from api.auth import hash_key
from gomailpy.config.settings import Settings, load_settings
from gomailpy.email.verp import instance_from, message_id_from, verp_address
from gomailpy.errors import ConfigError
from gomailpy.feedback.parse import parse_report
from gomailpy.operating.resources import ensure_resources
from gomailpy.operating.up_state import STATE_ENV
from gomailpy.providers import open_providers
from gomailpy.providers.base import Outcome
from gomailpy.providers.sendgrid import MESSAGE_ID_ARG
from gomailpy.queues.aws import open_aws_client
from gomailpy.queues.sqs import create_queue_client
from gomailpy_local.localstack import free_port
from gomailpy_local.standins import SendGridStandIn, SmtpStandIn
from gomailpy_local.standins.events import WebhookPoster
from gomailpy_local.up import _every_kind, _start_standins
from pipeline.admin import start_admin
from pipeline.node import PipelineNode
from tests.conftest import StartClient
from tests.support import create_queues, email_request, make_envelope, merge, queue_totals
from tests.test_pipeline import pipeline_settings
from tests.test_up import read_banner

ROOT = Path(__file__).resolve().parent.parent
KEY = "instances-test-key"
SENDGRID_KEY = "SG.instances"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gomailpy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- settings -------------------------------------------------------------------------------


def test_the_three_key_form_still_starts_with_one_deprecation_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "providers:\n  ses: {enabled: true, region: eu-west-1}\n  smtp: {}\n")
    with caplog.at_level(logging.WARNING, "gomailpy.settings"):
        settings = load_settings(path, env={"GOMAILPY_PROVIDERS__SMTP__PORT": "2526"})
    [line] = [r.getMessage() for r in caplog.records if "three-key form" in r.getMessage()]
    assert line == (
        "providers: the three-key form (ses:, sendgrid:, smtp:) is deprecated; write a list of"
        " named instances instead: providers: [{name: ses, kind: ses, enabled: true, region:"
        " eu-west-1}, {name: smtp, kind: smtp, port: 2526, enabled: false}]"
    )
    assert settings.providers.names() == ["ses", "smtp"]
    assert list(settings.providers.enabled()) == ["ses"]  # disabled unless enabled, as before
    assert settings.providers["smtp"].kind == "smtp"


def test_the_list_form_reads_without_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {
        "GOMAILPY_PROVIDERS__SENDGRID__API_KEY": "SG.x",
        "GOMAILPY_PROVIDERS__RELAY_B__PORT": "7",
    }
    with caplog.at_level(logging.WARNING, "gomailpy.settings"):
        settings = load_settings(ROOT / "config" / "five-providers.yaml", env=env)
    assert not caplog.records
    assert settings.providers.names() == ["ses-us", "ses-eu", "sendgrid", "relay-a", "relay-b"]
    assert [s.region for s in settings.providers.ses_instances()] == ["us-east-1", "eu-west-1"]
    assert [s.port for s in settings.providers.smtp_instances()] == [2525, 7]  # RELAY_B: relay-b


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        (
            "providers:\n  - {name: relay, kind: smtp}\n  - {name: relay, kind: smtp, port: 26}\n",
            "providers[1].name: 'relay' is already the name of providers[0]; every instance"
            " needs its own name",
        ),
        (  # unnamed: named after the kind, so a second of a kind needs a name
            "providers:\n  - {kind: smtp}\n  - {kind: smtp}\n",
            "providers[1].name: 'smtp' is already the name of providers[0]; every instance"
            " needs its own name",
        ),
        (
            "providers:\n  - {name: ses-eu, kind: ses}\n  - {name: pm, kind: postmark}\n",
            "providers[1] (pm).kind: unknown kind 'postmark'; one of 'ses', 'sendgrid', 'smtp',"
            " 'mailgun'",
        ),
        (
            "providers:\n  - {name: nokind}\n",
            "providers[0] (nokind).kind: is required: one of ses, sendgrid, smtp, mailgun",
        ),
        (
            "providers:\n  - {name: ses-eu, kind: ses, regoin: eu-west-1}\n",
            "providers[0] (ses-eu).regoin: unknown key; known keys here: name, enabled, weight,"
            " timeout_s, kind, api_version, region, endpoint_url, configuration_set, events_topic",
        ),
        (
            "providers:\n  - {name: relay-a, kind: smtp, port: 70000}\n",
            "providers[0] (relay-a).port: must be <= 65535",
        ),
        (
            "providers:\n  - {name: relay-a, kind: smtp}\n  - {name: relay-b, kind: smtp,"
            " dkim: [{domain: example.com, selector: s1}]}\n",
            "providers[1] (relay-b).dkim.0: missing secret: no key_file, so set"
            " GOMAILPY_PROVIDERS__RELAY_B__DKIM_KEYS with a key for example.com",
        ),
        (
            "providers:\n  - {name: sg, kind: sendgrid, api_key: SG.oops}\n",
            "providers[0].api_key: secrets are read from the environment only; remove it from"
            " the file and set GOMAILPY_PROVIDERS__SG__API_KEY",
        ),
    ],
)
def test_bad_instances_are_refused_naming_the_instance_and_key(
    tmp_path: Path, yaml_text: str, problem: str
) -> None:
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert caught.value.problems == [f"{path}: {problem}"]


def test_a_variable_for_no_instance_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  - {name: relay-a, kind: smtp}\n")
    with pytest.raises(ConfigError, match="GOMAILPY_PROVIDERS__RELAY_C__PORT: no provider"):
        load_settings(path, env={"GOMAILPY_PROVIDERS__RELAY_C__PORT": "25"})


def test_settings_built_from_data_refuse_duplicates_too() -> None:
    with pytest.raises(ValidationError, match=r"providers\[1\].name"):
        Settings.model_validate({"providers": [{"kind": "ses"}, {"kind": "ses"}]})


# --- five instances under a real pipeline node ----------------------------------------------


async def ses_sent(endpoint: str, sender: str) -> dict[str, list[str]]:
    """Message-IDs LocalStack's SES sent from `sender`, by region."""
    async with aiohttp.ClientSession() as session, session.get(f"{endpoint}/_aws/ses") as answer:
        body = await answer.json()
    sent: dict[str, list[str]] = {}
    for message in body["messages"]:
        if message.get("Source") != sender:
            continue
        parsed = email.message_from_string(message["RawData"], policy=email.policy.default)
        sent.setdefault(message.get("Region", "?"), []).append(str(parsed["Message-ID"]))
    return sent


def five_settings(endpoint: str, sendgrid: str, relay_a: int, relay_b: int) -> Settings:
    base = pipeline_settings(endpoint, healthy_threshold=50)  # a failed relay stays out
    instances: list[dict[str, Any]] = [
        {"name": "ses-us", "kind": "ses", "region": "us-east-1"},
        {"name": "ses-eu", "kind": "ses", "region": "eu-west-1"},
        {"name": "sendgrid", "kind": "sendgrid", "base_url": sendgrid, "api_key": SENDGRID_KEY},
        {"name": "relay-a", "kind": "smtp", "port": relay_a},
        {"name": "relay-b", "kind": "smtp", "port": relay_b},
    ]
    data = merge(base.model_dump(mode="python"), {"api": {"api_key_hashes": [hash_key(KEY)]}})
    data["providers"] = instances
    return Settings.model_validate(data)


async def test_five_instances_a_failing_relay_and_a_refusing_region_lose_nothing(
    sqs_endpoint: str, start_client: StartClient
) -> None:
    # A domain verified in us-east-1 only: ses-eu's region refuses it (ACCOUNT), ses-us sends.
    domain = f"{uuid.uuid4().hex[:10]}.instances.example.net"
    sender = f"sender@{domain}"
    count = 60
    async with AsyncExitStack() as stack:
        relay_a = await stack.enter_async_context(SmtpStandIn(mode="fail"))  # 451 at DATA
        relay_b = await stack.enter_async_context(SmtpStandIn())
        sendgrid = await stack.enter_async_context(SendGridStandIn(api_key=SENDGRID_KEY))
        settings = five_settings(sqs_endpoint, sendgrid.base_url, relay_a.port, relay_b.port)
        await create_queues(settings)
        ses_us = await open_aws_client(stack, "ses", settings.aws, region="us-east-1")
        await ses_us.verify_domain_identity(Domain=domain)

        envelopes = [make_envelope(n, fromEmail=sender) for n in range(count)]
        ids = [envelope.id for envelope in envelopes]
        async with create_queue_client(settings) as queues:
            urls = await queues.resolve_all()
            for start in range(0, count, 10):
                batch = [(str(n), envelopes[n].encode()) for n in range(start, start + 10)]
                assert not (await queues.send_batch(urls[start // 10 % 2], batch)).failed

        providers = await open_providers(stack, settings)
        assert list(providers) == ["ses-us", "ses-eu", "sendgrid", "relay-a", "relay-b"]
        assert {p.name for p in providers.values()} == set(providers)
        queues = await stack.enter_async_context(create_queue_client(settings))
        node = await stack.enter_async_context(PipelineNode(settings, queues, providers))
        admin = await start_admin(stack, node, "127.0.0.1", 0)

        async def delivered() -> list[str]:
            by_region = await ses_sent(sqs_endpoint, sender)
            return [
                *by_region.get("us-east-1", []),
                *by_region.get("eu-west-1", []),
                *(str(m.message_id) for m in relay_a.messages),
                *(str(m.message_id) for m in relay_b.messages),
                *(
                    f"<{m.payload['custom_args'][MESSAGE_ID_ARG]}@gomailpy>"
                    for m in sendgrid.messages
                ),
            ]

        for _ in range(300):
            await node.run_iteration()
            if len(await delivered()) >= count and set((await queue_totals(settings)).values()) == {
                0
            }:
                break

        by_region = await ses_sent(sqs_endpoint, sender)
        sent = await delivered()
        # Nothing lost, nothing twice: every email went out exactly once, and left its queue.
        assert sorted(sent) == sorted(f"<{i}@gomailpy>" for i in ids)
        assert set((await queue_totals(settings)).values()) == {0}
        # The failing relay and the refusing region took none; the others shared their part.
        assert relay_a.messages == [] and "eu-west-1" not in by_region
        assert by_region["us-east-1"] and relay_b.messages and sendgrid.messages

        # What `gomail status` reads: the node's /status lists all five with their health.
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{admin}/status") as answer:
                status = await answer.json()
        states = {name: p["state"] for name, p in status["providers"].items()}
        assert set(states) == {"ses-us", "ses-eu", "sendgrid", "relay-a", "relay-b"}
        assert states["relay-a"] != "healthy"
        assert states["ses-us"] == states["relay-b"] == states["sendgrid"] == "healthy"

        # The operator page's data: every instance with its kind and its health on the node.
        operator = merge(
            settings.model_dump(mode="python"),
            {"operator": {"node_admin_urls": [f"http://127.0.0.1:{admin}"]}},
        )
        client = await start_client(create_app(Settings.model_validate(operator)))
        answer = await client.get("/admin/overview", headers={"X-Api-Key": KEY})
        assert answer.status == 200, await answer.text()
        shown = (await answer.json())["providers"]
        assert {name: p["kind"] for name, p in shown.items()} == {
            "ses-us": "ses",
            "ses-eu": "ses",
            "sendgrid": "sendgrid",
            "relay-a": "smtp",
            "relay-b": "smtp",
        }
        node_url = f"http://127.0.0.1:{admin}"
        assert {name: p["health"][node_url] for name, p in shown.items()} == states


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_ses_sends_in_each_instances_own_region(
    sqs_endpoint: str, moto_endpoint: str, version: str
) -> None:
    """v1 on LocalStack; v2 (sesv2 SendEmail, raw content) on moto's server, since LocalStack's
    community edition answers sesv2 with 501. The domain is verified in eu-west-1 only."""
    endpoint = sqs_endpoint if version == "v1" else moto_endpoint
    sender = f"sender@{uuid.uuid4().hex[:10]}.regions.example.net"
    data = pipeline_settings(sqs_endpoint).model_dump(mode="python")
    data["providers"] = [
        {
            "name": f"ses-{region}",
            "kind": "ses",
            "api_version": version,
            "region": region,
            "endpoint_url": endpoint,
        }
        for region in ("us-east-1", "eu-west-1")
    ]
    settings = Settings.model_validate(data)
    async with AsyncExitStack() as stack:
        ses = await open_aws_client(
            stack, "ses", settings.aws, region="eu-west-1", endpoint_url=endpoint
        )
        await ses.verify_domain_identity(Domain=sender.split("@")[1])
        if version == "v2":  # moto verifies a domain identity on request
            await ses.verify_email_identity(EmailAddress=sender)
        providers = await open_providers(stack, settings)
        results = {
            name: await provider.send(make_envelope(n, fromEmail=sender))
            for n, (name, provider) in enumerate(providers.items())
        }
    us, eu = results["ses-us-east-1"], results["ses-eu-west-1"]
    assert (us.outcome, eu.outcome) == (Outcome.ACCOUNT, Outcome.ACCEPTED), (us, eu)
    assert "authority" in us.reason or "not verified" in us.reason
    assert (us.provider, eu.provider) == ("ses-us-east-1", "ses-eu-west-1")
    assert eu.provider_message_id
    if version == "v1":
        sent = await ses_sent(sqs_endpoint, sender)
        assert {region: len(ids) for region, ids in sent.items()} == {"eu-west-1": 1}


async def test_gomail_up_starts_a_stand_in_per_instance() -> None:
    settings = load_settings(
        ROOT / "config" / "five-providers.yaml", env={"GOMAILPY_PROVIDERS__SENDGRID__API_KEY": "k"}
    )
    async with AsyncExitStack() as stack:
        smtps, sendgrids = await _start_standins(stack, _every_kind(settings))
        assert list(smtps) == ["relay-a", "relay-b"] and list(sendgrids) == ["sendgrid"]
        assert smtps["relay-a"].port != smtps["relay-b"].port
        smtps["relay-b"].set_mode("fail")
        async with aiohttp.ClientSession() as session:  # one control API for all
            base = sendgrids["sendgrid"].base_url + "/_standin"
            for name, mode in (("relay-a", "ok"), ("relay-b", "fail")):
                async with session.get(f"{base}/{name}/mode") as answer:
                    assert (await answer.json())["mode"] == mode
    # A config without some kind still gets one instance of each, as `gomail up` always had.
    only_smtp = Settings.model_validate({"providers": [{"name": "relay", "kind": "smtp"}]})
    assert _every_kind(only_smtp).providers.names() == ["relay", "ses", "sendgrid"]


# --- events find their instance -------------------------------------------------------------


def test_verp_addresses_name_the_relay_instance() -> None:
    address = verp_address("0b6c1d2e", "bounces.example.com", instance="relay-b")
    assert address == "bounces+0b6c1d2e=relay-b@bounces.example.com"
    assert message_id_from(address, "bounces.example.com") == "0b6c1d2e"
    assert instance_from(address) == "relay-b"
    assert instance_from("bounces+0b6c1d2e@bounces.example.com") is None  # none named
    too_long = verp_address("a" * 40, "b.example", instance="r" * 30)  # past 64 octets: no name
    assert too_long == f"bounces+{'a' * 40}@b.example"


def test_a_relay_report_finds_its_instance_through_the_verp_address() -> None:
    rcpt = verp_address("0b6c1d2e", "bounces.example.com", instance="relay-b")
    dsn = (
        f"From: MAILER-DAEMON@relay.example\r\nTo: {rcpt}\r\nSubject: failed\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;"
        ' boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b\r\n'
        "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example\r\n\r\n"
        "Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n--b--\r\n"
    )
    report = {
        "source": "smtp",
        "receivedAt": 1_800_000_000.0,
        "mailFrom": "",
        "rcptTo": [rcpt],
        "message": base64.b64encode(dsn.encode()).decode(),
    }
    [event] = parse_report(json.dumps(report))
    assert (event.provider, event.instance, event.message_id) == ("smtp", "relay-b", "0b6c1d2e")
    assert event.to_json()["instance"] == "relay-b"


def test_ses_events_name_the_instance_by_its_tag() -> None:
    message = {
        "eventType": "Bounce",
        "mail": {
            "messageId": "ses-1",
            "timestamp": "2026-12-04T10:00:00.000Z",
            "tags": {"gomailpy-id": ["0b6c1d2e"], "gomailpy-provider": ["ses-eu"]},
        },
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": "gone@example.org"}],
            "timestamp": "2026-12-04T10:00:01.000Z",
        },
    }
    envelope = {"Type": "Notification", "MessageId": "sns-1", "Message": json.dumps(message)}
    [event] = parse_report(json.dumps(envelope))
    assert (event.provider, event.instance, event.message_id) == ("ses", "ses-eu", "0b6c1d2e")


async def test_each_sendgrid_instance_has_its_webhook_route_and_key(
    sqs_endpoint: str, start_client: StartClient
) -> None:
    first, second = WebhookPoster(), WebhookPoster()  # two accounts, two keys
    data = pipeline_settings(sqs_endpoint).model_dump(mode="python")
    data["events"].update(enabled=True, queue=f"events-{uuid.uuid4().hex[:8]}")
    data["providers"] = [
        {
            "name": "sg-a",
            "kind": "sendgrid",
            "api_key": "a",
            "webhook_public_key": first.public_key,
        },
        {
            "name": "sg-b",
            "kind": "sendgrid",
            "api_key": "b",
            "webhook_public_key": second.public_key,
        },
    ]
    settings = Settings.model_validate(data)
    async with create_queue_client(settings) as queues:
        events_url = await queues.ensure_queue(settings.events.queue)
        client = await start_client(create_app(settings))
        body = json.dumps(
            [
                {
                    "email": "gone@example.org",
                    "event": "bounce",
                    "timestamp": 1_800_000_000,
                    "sg_event_id": "e1",
                    "type": "bounce",
                    "gomailpy_id": "0b6c1d2e",
                }
            ]
        ).encode()

        answer = await client.post("/events/sendgrid/sg-a", data=body, headers=first.signed(body))
        assert answer.status == 200, await answer.text()
        # Forged: signed with another account's key, or with none; and a route of no instance.
        forged = await client.post("/events/sendgrid/sg-a", data=body, headers=second.signed(body))
        assert forged.status == 403
        unsigned = await client.post("/events/sendgrid/sg-b", data=body)
        assert unsigned.status == 401
        nobody = await client.post("/events/sendgrid/sg-c", data=body, headers=first.signed(body))
        assert nobody.status == 404
        assert (await client.post("/events/sendgrid", data=body)).status == 404  # no shared key

        [queued] = await queues.receive(events_url, wait_time_s=1)
    assert json.loads(queued.body)["instance"] == "sg-a"
    [event] = parse_report(queued.body)
    assert (event.provider, event.instance, event.message_id) == ("sendgrid", "sg-a", "0b6c1d2e")


async def test_init_creates_each_ses_instances_events_path_in_its_region(sqs_endpoint: str) -> None:
    data = pipeline_settings(sqs_endpoint).model_dump(mode="python")
    tag = uuid.uuid4().hex[:8]
    data["events"].update(enabled=True, queue=f"events-{tag}", ses_configuration_set=f"set-{tag}")
    data["providers"] = [
        {"name": "ses-us", "kind": "ses", "region": "us-east-1", "events_topic": f"us-{tag}"},
        {"name": "ses-eu", "kind": "ses", "region": "eu-west-1", "events_topic": f"eu-{tag}"},
    ]
    settings = Settings.model_validate(data)
    ready = await ensure_resources(settings)
    assert any("eu-west-1" in line and "SES ses-eu" in line for line in ready), ready
    async with AsyncExitStack() as stack:
        for region, topic in (("us-east-1", f"us-{tag}"), ("eu-west-1", f"eu-{tag}")):
            ses = await open_aws_client(stack, "ses", settings.aws, region=region)
            described = await ses.describe_configuration_set(
                ConfigurationSetName=f"set-{tag}",
                ConfigurationSetAttributeNames=["eventDestinations"],
            )
            [destination] = described["EventDestinations"]
            arn = destination["SNSDestination"]["TopicARN"]
            assert arn.startswith(f"arn:aws:sns:{region}:") and arn.endswith(f":{topic}"), arn


# --- `gomail up --config config/five-providers.yaml` -----------------------------------------


async def test_gomail_up_runs_the_five_provider_example(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "config" / "five-providers.yaml").read_text())
    config["aws"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"
    config["queues"]["wait_time_s"] = 1
    config["pipeline"]["healthy_threshold"] = 1000  # a failed relay stays out once it failed
    config_path = tmp_path / "five.yaml"
    config_path.write_text(yaml.safe_dump(config))
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gomailpy_cli.main", "up", "--config", str(config_path)),
        *("--api-port", "0", "--no-open", "--nodes", "1"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", STATE_ENV: str(tmp_path / "up.json")},
    )
    try:
        banner = await read_banner(process)
        api = re.search(r"web form\s+(http://\S+)/", banner)
        control = re.search(r"SMTP: (http://\S+/_standin)/relay-a/messages", banner)
        assert api and control and "SMTP relay-b: " in banner, banner
        api_url, standins = api.group(1), control.group(1)
        # A sender domain verified in us-east-1 only: ses-eu's region refuses it (identity
        # unverified there), so ses-us, SendGrid and relay-b must carry all of the mail.
        domain = f"{uuid.uuid4().hex[:10]}.up-instances.example.net"
        async with AsyncExitStack() as aws:
            settings = load_settings(config_path, env={})
            ses_us = await open_aws_client(aws, "ses", settings.aws, region="us-east-1")
            await ses_us.verify_domain_identity(Domain=domain)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{standins}/relay-a/mode", json={"mode": "fail"}) as answer:
                assert answer.status == 200
            ids = []
            for n in range(20):
                request = email_request(n, fromEmail=f"sender@{domain}")
                async with session.post(api_url + "/email/send", json=request) as r:
                    assert r.status == 200, await r.text()
                    ids.append((await r.json())["messageId"])

            async def captured(path: str) -> str:
                async with session.get(path) as answer:
                    return await answer.text()

            async with asyncio.timeout(90):
                while True:
                    relay_b = await captured(f"{standins}/relay-b/messages")
                    sendgrid = await captured(f"{standins}/messages")
                    ses = await captured(config["aws"]["endpoint_url"] + "/_aws/ses")
                    if all(i in relay_b + sendgrid + ses for i in ids):
                        break
                    await asyncio.sleep(0.3)
            assert json.loads(await captured(f"{standins}/relay-a/messages")) == []
            async with session.get(api_url + "/admin/overview") as answer:
                overview = await answer.json()
        providers = overview["providers"]
        assert list(providers) == ["ses-us", "ses-eu", "sendgrid", "relay-a", "relay-b"]
        assert sum(p["sent"] for p in providers.values()) == 20
        assert providers["relay-a"]["sent"] == 0 and providers["ses-eu"]["sent"] == 0
        assert providers["ses-eu"]["failed"] > 0  # tried, refused: its share went elsewhere
        assert set(providers["relay-a"]["health"].values()) != {"healthy"}
        assert set(providers["ses-eu"]["health"].values()) != {"healthy"}
        assert set(providers["relay-b"]["health"].values()) == {"healthy"}
        by_region = await ses_sent(config["aws"]["endpoint_url"], f"sender@{domain}")
        assert "eu-west-1" not in by_region, by_region

        # `gomail status` finds the running stack by its state file and lists all five.
        status = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "gomailpy_cli.main", "status"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, STATE_ENV: str(tmp_path / "up.json")},
        )
        printed = (await status.communicate())[0].decode()
        assert status.returncode == 0, printed
        for name in ("ses-us", "ses-eu", "sendgrid", "relay-a", "relay-b"):
            assert re.search(rf"\b{name}\b", printed), printed
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest = (await process.communicate())[0].decode()
    assert process.returncode == 0, rest
