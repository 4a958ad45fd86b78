"""Webhooks without a queue: signatures a `standardwebhooks` receiver accepts, the config's
refusal of private targets, the guarded resolver, what the outbox makes of events (the hostile
target corpus is in test_webhooks_targets)."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from gomailpy.config.settings import load_settings
from gomailpy.config.webhooks import WebhookEndpointSettings, WebhooksSettings, secret_key
from gomailpy.errors import ConfigError
from gomailpy.events import Event, EventType, iso
from gomailpy.providers.base import Outcome, SendResult
from gomailpy.webhooks.attempt import MAX_HOP_S, SigningKeys, backoff_s
from gomailpy.webhooks.outbox import Delivery, deliveries, send_events
from gomailpy.webhooks.signing import new_secret, signed_headers
from gomailpy.webhooks.targets import GuardedResolver, TargetRefusedError
from tests.support import make_envelope

NOW = 1_800_000_000.0


def event(n: int = 0, kind: EventType = EventType.BOUNCED, **fields: Any) -> Event:
    return Event(
        id=f"ev-{n}",
        message_id=f"m-{n}",
        recipient=f"r{n}@example.org",
        provider="ses",
        type=kind,
        at=iso(NOW + n),
        **fields,
    )


# -- signatures ------------------------------------------------------------------------------


def test_signature_verifies_with_the_standardwebhooks_library() -> None:
    secret = new_secret()
    body = json.dumps({"type": "email.bounced", "data": {"messageId": "m-1"}}).encode()
    import time

    now = int(time.time())
    headers = signed_headers([secret_key(secret)], "msg_abc", now, body)
    assert Webhook(secret).verify(body.decode(), headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body.decode(), headers)
    tampered = body.replace(b"m-1", b"m-2")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered.decode(), headers)


def test_during_a_rotation_receivers_holding_either_secret_verify() -> None:
    import time

    old, new = new_secret(), new_secret()
    now = time.time()
    webhooks = WebhooksSettings.model_validate(
        {
            "endpoints": [{"name": "app", "url": "https://app.example.com/hooks"}],
            "secrets": json.dumps({"app": new}),
            "previous_secrets": json.dumps({"app": {"secret": old, "until": iso(now + 60)}}),
        }
    )
    keys = SigningKeys(webhooks)
    body = b'{"type":"email.sent"}'
    headers = signed_headers(keys("app", now), "msg_1", int(now), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body.decode(), headers)
    # Once the window is over, only the new secret signs.
    later = signed_headers(keys("app", now + 61), "msg_1", int(now), body)
    Webhook(new).verify(body.decode(), later)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body.decode(), later)


# -- configuration ---------------------------------------------------------------------------


def write(tmp_path: Path, url: str, allow: bool = False) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        "webhooks:\n  enabled: true\n"
        f"  allow_loopback_targets: {'true' if allow else 'false'}\n"
        f"  endpoints:\n    - {{name: app, url: '{url}'}}\n"
    )
    return path


ENV = {"GOMAILPY_WEBHOOKS__SECRETS": json.dumps({"app": new_secret()})}


@pytest.mark.parametrize(
    ("url", "why", "loopback"),
    [
        ("http://169.254.169.254/latest/meta-data/", "the cloud metadata service", False),
        ("http://127.0.0.1:8080/hook", "a loopback address", True),
        ("http://10.0.0.7/hook", "a private address", False),
        ("http://[::1]/hook", "a loopback address", True),
        ("http://localhost:9000/hook", "this machine", True),
    ],
)
def test_private_targets_are_refused_at_config_time(
    tmp_path: Path, url: str, why: str, loopback: bool
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, url), env=ENV)
    message = str(caught.value)
    assert "webhooks" in message and "endpoints.0 (app).url" in message and why in message
    assert ("webhooks.allow_loopback_targets" in message) == loopback
    if loopback:  # for local testing only; nothing else can be allowed
        allowed = load_settings(write(tmp_path, url, allow=True), env=ENV)
        assert allowed.webhooks.endpoints[0].url == url
    else:
        with pytest.raises(ConfigError):
            load_settings(write(tmp_path, url, allow=True), env=ENV)


def test_an_enabled_endpoint_needs_its_secret_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "https://app.example.com/hooks")
    with pytest.raises(ConfigError, match="missing secret: set GOMAILPY_WEBHOOKS__SECRETS"):
        load_settings(path, env={})
    path.write_text(path.read_text() + f"  secrets: '{{app: {new_secret()}}}'\n")
    with pytest.raises(ConfigError, match="secrets are read from the environment only"):
        load_settings(path, env={})


def test_a_secret_that_is_not_whsec_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = write(tmp_path, "https://app.example.com/hooks")
    env = {"GOMAILPY_WEBHOOKS__SECRETS": '{"app": "hunter2-not-a-secret"}'}
    with pytest.raises(ConfigError, match="secrets: app: must start with 'whsec_'") as caught:
        load_settings(path, env=env)
    assert "hunter2" not in str(caught.value)


class Fixed(AbstractResolver):
    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host, host=self.address, port=port, family=family, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("169.254.169.254", False), ("127.0.0.1", True), ("10.1.2.3", False), ("::1", True)],
)
async def test_a_name_that_resolves_to_a_private_address_is_refused_at_delivery(
    address: str, loopback: bool
) -> None:
    with pytest.raises(TargetRefusedError, match=f"resolves to {address}"):
        await GuardedResolver(allow_loopback=False, inner=Fixed(address)).resolve("hooks.example")
    local = GuardedResolver(allow_loopback=True, inner=Fixed(address))
    if loopback:
        assert (await local.resolve("h.example"))[0]["host"] == address
    else:
        with pytest.raises(TargetRefusedError, match=f"resolves to {address}"):
            await local.resolve("h.example")
    public = GuardedResolver(allow_loopback=False, inner=Fixed("93.184.216.34"))
    assert (await public.resolve("x.example"))[0]["host"] == "93.184.216.34"


# -- the outbox ------------------------------------------------------------------------------


def endpoint(name: str, **fields: Any) -> WebhookEndpointSettings:
    return WebhookEndpointSettings(name=name, url=f"https://{name}.example.com/", **fields)


def test_one_delivery_per_endpoint_and_event_with_stable_ids() -> None:
    events = [event(1), event(2, EventType.DELIVERED), event(3, EventType.SENT)]
    endpoints = [endpoint("all"), endpoint("bounces", events=["bounced"])]
    made = deliveries(endpoints, events, NOW)
    assert [(d.endpoint, json.loads(d.body)["type"]) for d in made] == [
        ("all", "email.bounced"),
        ("all", "email.delivered"),
        ("all", "email.sent"),
        ("bounces", "email.bounced"),
    ]
    again = deliveries(endpoints, events, NOW + 100)
    assert [d.webhook_id for d in again] == [d.webhook_id for d in made]
    assert len({d.webhook_id for d in made}) == 4  # another endpoint, another id
    body = json.loads(made[0].body)
    assert body == {"type": "email.bounced", "timestamp": iso(NOW + 1), "data": events[0].to_json()}
    assert Delivery.decode(made[0].encode()) == made[0]


def test_batch_endpoints_get_arrays_of_at_most_batch_max_events() -> None:
    events = [event(n) for n in range(5)]
    made = deliveries([endpoint("crm", batch=True, batch_max_events=2)], events, NOW)
    assert [d.events for d in made] == [2, 2, 1]
    assert [e["data"]["id"] for d in made for e in json.loads(d.body)] == [e.id for e in events]


def test_unreadable_deliveries_are_refused_with_a_reason() -> None:
    for text in ("nope", "{}", json.dumps({"v": 9}), "[]"):
        with pytest.raises(ValueError):
            Delivery.decode(text)


def test_settlement_events_sent_per_recipient_failed_when_refused_or_last() -> None:
    envelope = make_envelope(1, cc=["cc@example.org"])
    accepted = SendResult("ses", Outcome.ACCEPTED, provider_message_id="p-1")
    refused = SendResult("smtp", Outcome.PERMANENT, reason="550 no such user")
    retry = SendResult("sendgrid", Outcome.TRANSIENT, reason="503")
    sent = send_events([(envelope, 1, accepted)], 10, NOW)
    assert [(e.type, e.recipient, e.provider) for e in sent] == [
        (EventType.SENT, a.email, "ses") for a in envelope.email.recipients
    ]
    assert {e.type for e in send_events([(envelope, 1, refused)], 10, NOW)} == {EventType.FAILED}
    assert send_events([(envelope, 3, retry)], 10, NOW) == []
    assert {e.type for e in send_events([(envelope, 10, retry)], 10, NOW)} == {EventType.FAILED}
    # The same send settled twice (a redelivery) gives the same ids.
    assert [e.id for e in send_events([(envelope, 2, accepted)], 10, NOW + 9)] == [
        e.id for e in sent
    ]


def test_backoff_doubles_with_jitter_and_never_exceeds_12_hours() -> None:
    rng = random.Random(7)
    for attempt in range(1, 40):
        delay = backoff_s(attempt, 5.0, rng=rng)
        ceiling = min(MAX_HOP_S, 5.0 * 2 ** (attempt - 1))
        assert max(1, int(ceiling / 2)) <= delay <= ceiling


async def test_gomail_up_points_an_endpoint_at_its_receiver_and_keeps_configured_ones() -> None:
    from gomailpy.config.settings import Settings
    from gomailpy_local.receiver import WebhookReceiver, banner_lines, with_local_receiver

    theirs = new_secret()
    configured = Settings.model_validate(
        {
            "webhooks": {
                "endpoints": [{"name": "app", "url": "https://app.example.com/hooks"}],
                "secrets": json.dumps({"app": theirs}),
            }
        }
    )
    async with WebhookReceiver() as receiver:
        settings = with_local_receiver(configured, receiver)
        webhooks = settings.webhooks
        assert webhooks.enabled and webhooks.allow_loopback_targets
        assert [e.name for e in webhooks.endpoints] == ["app", "local"]
        assert webhooks.secret_map()["app"] == secret_key(theirs)
        assert webhooks.secret_map()["local"] == secret_key(receiver.secret)
        [line] = banner_lines(settings)
        assert receiver.page_url in line
