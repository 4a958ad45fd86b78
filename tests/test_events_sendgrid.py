"""SendGrid's Event Webhook: the parser (`parse_sendgrid`), the signature check (with SendGrid's
own test vector from sendgrid-python) and the stand-in's events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gomailpy.errors import ConfigError, EventFormatError
from gomailpy.events import EventType
from gomailpy.feedback.sendgrid import parse_sendgrid, provider_message_id
from gomailpy.feedback.signature import (
    SignatureCheck,
    WebhookVerifier,
    load_public_key,
    public_key_text,
    sign,
)
from gomailpy_local.standins.events import events_for, outcome_for

# sendgrid-python's test vector (test/unit/test_eventwebhook.py): a real key, signature and body.
SG_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw"
    "+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
SG_SIGNATURE = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
SG_TIMESTAMP = "1600112502"
SG_EVENTS = [
    {
        "email": "hello@world.com",
        "event": "dropped",
        "reason": "Bounced Address",
        "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
        "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
        "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
        "timestamp": 1600112492,
    }
]
SG_BODY = (json.dumps(SG_EVENTS, sort_keys=True, separators=(",", ":")) + "\r\n").encode()
WINDOW_S = 600


def sg_event(event: str, **fields: Any) -> dict[str, Any]:
    return {
        "email": "rcpt@example.org",
        "timestamp": 1700000000,
        "event": event,
        "sg_event_id": f"ev-{event}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "gomailpy_id": "msg-1",
        **fields,
    }


# -- parse_sendgrid -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "fields", "kind", "subtype"),
    [
        ("processed", {}, EventType.SENT, None),
        ("delivered", {"response": "250 OK"}, EventType.DELIVERED, None),
        ("deferred", {"response": "400 try again later", "attempt": "5"}, EventType.DEFERRED, None),
        ("bounce", {"type": "bounce", "status": "5.0.0"}, EventType.BOUNCED, "hard"),
        ("bounce", {"type": "blocked", "status": "5.0.0"}, EventType.BLOCKED, "soft"),
        ("bounce", {}, EventType.BOUNCED, "hard"),
        ("dropped", {"reason": "Bounced Address"}, EventType.DROPPED, None),
        ("spamreport", {}, EventType.COMPLAINED, None),
        ("open", {"useragent": "Mozilla"}, EventType.OPENED, None),
        ("click", {"url": "https://example.org/"}, EventType.CLICKED, None),
        ("unsubscribe", {}, EventType.UNSUBSCRIBED, None),
        ("group_unsubscribe", {"asm_group_id": 1}, EventType.UNSUBSCRIBED, None),
        ("group_resubscribe", {"asm_group_id": 1}, EventType.UNKNOWN, None),
    ],
)
def test_event_types_map(
    event: str, fields: dict[str, Any], kind: EventType, subtype: str | None
) -> None:
    raw = sg_event(event, **fields)
    [parsed] = parse_sendgrid([raw])
    assert (parsed.type, parsed.subtype) == (kind, subtype)
    assert parsed.id == f"ev-{event}"
    assert parsed.message_id == "msg-1"
    assert parsed.recipient == "rcpt@example.org"
    assert parsed.provider == "sendgrid"
    assert parsed.provider_message_id == "14c5d75ce93"
    assert parsed.at == "2023-11-14T22:13:20Z"
    assert parsed.raw == raw


def test_bounce_keeps_smtp_text_and_classification() -> None:
    [event] = parse_sendgrid(
        [
            sg_event(
                "bounce",
                type="bounce",
                status="5.1.1",
                reason="550 5.1.1 The email account does not exist",
                bounce_classification="Invalid Address",
            )
        ]
    )
    assert event.mta_response == "550 5.1.1 The email account does not exist"
    # The reason by the taxonomy (gomailpy.bounce_reasons); SendGrid's stays in raw.
    assert (event.reason, event.status) == ("userunknown", "5.1.1")
    assert event.raw["bounce_classification"] == "Invalid Address"


def test_without_custom_args_the_message_id_prefix_joins() -> None:
    raw = sg_event("delivered")
    del raw["gomailpy_id"]
    [event] = parse_sendgrid([raw])
    assert event.message_id is None
    assert event.provider_message_id == "14c5d75ce93"
    legacy = sg_event("delivered", gomailpy_message_id="msg-old")
    del legacy["gomailpy_id"]
    assert parse_sendgrid([legacy])[0].message_id == "msg-old"


def test_sendgrids_own_example_parses() -> None:
    [event] = parse_sendgrid(SG_EVENTS)
    assert event.type is EventType.DROPPED
    assert event.reason == "Bounced Address"
    assert event.provider_message_id == "LRzXl_NHStOGhQ4kofSm_A"
    assert provider_message_id("abc") == "abc"


def test_an_event_without_id_gets_a_stable_one() -> None:
    raw = sg_event("delivered")
    del raw["sg_event_id"]
    assert parse_sendgrid([raw])[0].id == parse_sendgrid([dict(raw)])[0].id


@pytest.mark.parametrize(
    "events",
    [
        {"event": "delivered"},
        ["delivered"],
        [sg_event("delivered", timestamp="yesterday")],
        [sg_event("delivered", timestamp=True)],
        [sg_event("delivered", timestamp=1e300)],
        [{"event": "delivered"}],
    ],
    ids=repr,
)
def test_unreadable_events_raise(events: Any) -> None:
    with pytest.raises(EventFormatError):
        parse_sendgrid(events)


# -- the signature ------------------------------------------------------------------------------


def verifier(key: str = SG_PUBLIC_KEY) -> WebhookVerifier:
    return WebhookVerifier(key, replay_window_s=WINDOW_S)


def test_sendgrids_test_vector_verifies() -> None:
    now = float(SG_TIMESTAMP) + 5
    assert verifier().check(SG_SIGNATURE, SG_TIMESTAMP, SG_BODY, now=now) is SignatureCheck.VALID


@pytest.mark.parametrize(
    ("signature", "timestamp", "body", "expected"),
    [
        (None, SG_TIMESTAMP, SG_BODY, SignatureCheck.MISSING),
        (SG_SIGNATURE, None, SG_BODY, SignatureCheck.MISSING),
        ("", "", SG_BODY, SignatureCheck.MISSING),
        (SG_SIGNATURE, SG_TIMESTAMP, b"payload", SignatureCheck.INVALID),
        (SG_SIGNATURE, SG_TIMESTAMP, SG_BODY.rstrip(), SignatureCheck.INVALID),
        (SG_SIGNATURE, "1600112503", SG_BODY, SignatureCheck.INVALID),
        (SG_SIGNATURE, "timestamp", SG_BODY, SignatureCheck.INVALID),
        ("not base64!", SG_TIMESTAMP, SG_BODY, SignatureCheck.INVALID),
        ("bm90IGEgc2lnbmF0dXJl", SG_TIMESTAMP, SG_BODY, SignatureCheck.INVALID),
        (
            "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxF"
            "DWYNH3j/0=",
            SG_TIMESTAMP,
            SG_BODY,
            SignatureCheck.INVALID,
        ),
    ],
)
def test_forged_or_missing_signatures_are_refused(
    signature: str | None, timestamp: str | None, body: bytes, expected: SignatureCheck
) -> None:
    now = float(SG_TIMESTAMP)
    assert verifier().check(signature, timestamp, body, now=now) is expected


def test_another_key_does_not_verify() -> None:
    other = (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8RE"
        "ntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA=="
    )
    check = verifier(other).check(SG_SIGNATURE, SG_TIMESTAMP, SG_BODY, now=float(SG_TIMESTAMP))
    assert check is SignatureCheck.INVALID


@pytest.mark.parametrize(
    ("offset_s", "expected"),
    [
        (0, SignatureCheck.VALID),
        (WINDOW_S, SignatureCheck.VALID),
        (WINDOW_S + 1, SignatureCheck.REPLAYED),
        (-WINDOW_S - 1, SignatureCheck.REPLAYED),  # signed "in the future": a clock far off
        (86_400, SignatureCheck.REPLAYED),
    ],
)
def test_a_valid_signature_outside_the_window_is_a_replay(
    offset_s: int, expected: SignatureCheck
) -> None:
    now = float(SG_TIMESTAMP) + offset_s
    assert verifier().check(SG_SIGNATURE, SG_TIMESTAMP, SG_BODY, now=now) is expected


def test_own_key_pair_signs_what_verifies() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    text = public_key_text(key.public_key())
    body = b'[{"event":"delivered"}]'
    signature = sign(key, "1700000000", body)
    check = verifier(text).check(signature, "1700000000", body, now=1700000001)
    assert check is SignatureCheck.VALID
    pem = "-----BEGIN PUBLIC KEY-----\n" + text + "\n-----END PUBLIC KEY-----\n"
    assert verifier(pem).check(signature, "1700000000", body, now=1700000001) is (
        SignatureCheck.VALID
    )


@pytest.mark.parametrize("text", ["", "not a key", "aGVsbG8=", "MFkw"])
def test_an_unusable_public_key_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="sendgrid_public_key"):
        load_public_key(text)


# -- the stand-in's events ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "outcome"),
    [
        ("bounce@example.org", "bounce"),
        ("Bounce+1@example.org", "bounce"),
        ("bounce-later@example.org", "bounce"),
        ("complain@example.org", "complain"),
        ("defer@example.org", "defer"),
        ("rcpt@example.org", "deliver"),
        ("nobounce@example.org", "deliver"),
        ("rcpt@bounce.example.org", "deliver"),
    ],
)
def test_the_address_convention(address: str, outcome: str) -> None:
    assert outcome_for(address) == outcome


def test_standin_events_parse_to_the_right_outcomes() -> None:
    payload = {
        "personalizations": [
            {
                "to": [{"email": "ok@example.org"}, {"email": "bounce@example.org"}],
                "cc": [{"email": "complain@example.org"}],
                "bcc": [{"email": "defer+2@example.org"}],
            }
        ],
        "custom_args": {"gomailpy_id": "msg-9"},
    }
    events = parse_sendgrid(events_for("XMSGID", payload, 1700000000))
    outcomes = {(e.recipient, e.type, e.subtype) for e in events}
    assert outcomes == {
        ("ok@example.org", EventType.SENT, None),
        ("ok@example.org", EventType.DELIVERED, None),
        ("bounce@example.org", EventType.SENT, None),
        ("bounce@example.org", EventType.BOUNCED, "hard"),
        ("complain@example.org", EventType.SENT, None),
        ("complain@example.org", EventType.DELIVERED, None),
        ("complain@example.org", EventType.COMPLAINED, None),
        ("defer+2@example.org", EventType.SENT, None),
        ("defer+2@example.org", EventType.DEFERRED, None),
    }
    assert {e.message_id for e in events} == {"msg-9"}
    assert {e.provider_message_id for e in events} == {"XMSGID"}
    assert len({e.id for e in events}) == len(events)


# -- correlation on the way out -----------------------------------------------------------------


def test_every_outgoing_email_names_its_message_id() -> None:
    from gomailpy.email.mime import build_message
    from gomailpy.providers.sendgrid import payload_for
    from tests.support import make_envelope

    envelope = make_envelope(headers={"X-Gomailpy-Id": "spoofed"})
    message = build_message(envelope)
    assert message.get_all("X-Gomailpy-Id") == [envelope.id]  # a custom header cannot replace it
    payload = payload_for(envelope)
    assert payload["headers"]["X-Gomailpy-Id"] == envelope.id
    assert payload["custom_args"] == {"gomailpy_id": envelope.id}


def test_a_large_post_is_split_over_queue_messages_in_order() -> None:
    from api.views.events import MAX_QUEUE_BODY_BYTES, _chunks

    events = [sg_event("delivered", sg_event_id=f"ev-{n}", pad="x" * 300) for n in range(3000)]
    chunks = _chunks(events)
    assert len(chunks) > 1
    assert [e for chunk in chunks for e in chunk] == events
    for chunk in chunks:
        body = json.dumps({"source": "sendgrid", "receivedAt": 1.0, "events": chunk})
        assert len(body.encode()) <= MAX_QUEUE_BODY_BYTES + 100


def test_ses_sends_carry_the_configuration_set_only_with_events_or_one_set() -> None:
    from gomailpy.config.feedback import EventsSettings
    from gomailpy.config.providers import SesSettings
    from gomailpy.providers.ses import configuration_set_for

    on = EventsSettings(enabled=True, ses_configuration_set="events-set")
    off = EventsSettings(enabled=False, ses_configuration_set="events-set")
    assert configuration_set_for(SesSettings(), on) == "events-set"
    assert configuration_set_for(SesSettings(), off) is None
    assert configuration_set_for(SesSettings(), None) is None
    assert configuration_set_for(SesSettings(configuration_set="mine"), on) == "mine"
