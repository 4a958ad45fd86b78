"""SES events as SNS delivers them: AWS's documented example notifications
(tests/data/ses/notifications.json) in SNS envelopes, through `parse_sns`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gomailpy.errors import EventFormatError
from gomailpy.events import EventType
from gomailpy.feedback.ses import parse_sns

SAMPLES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "ses" / "notifications.json").read_text()
)
TOPIC = "arn:aws:sns:us-east-1:123456789012:gomailpy-ses-events"
GOMAILPY_ID = "0b9d4a0e-6f1c-4c55-8a2f-bd3e9d1c2a71"


def sns(message: dict[str, Any] | str, message_id: str = "sns-1") -> dict[str, Any]:
    """An SNS envelope as SQS receives it with raw delivery off."""
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Subject": "Amazon SES Email Event Notification",
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": "2017-08-05T00:41:03.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    }


def sample(name: str) -> dict[str, Any]:
    return json.loads(json.dumps(SAMPLES[name]))  # a copy each test may change


@pytest.mark.parametrize(
    ("name", "kind", "subtype", "recipients"),
    [
        ("identity_bounce", EventType.BOUNCED, "hard", ["jane@example.com"]),
        ("identity_complaint", EventType.COMPLAINED, None, ["richard@example.com"]),
        ("identity_delivery", EventType.DELIVERED, None, ["jane@example.com"]),
        ("event_bounce", EventType.BOUNCED, "hard", ["recipient@example.com"]),
        ("event_complaint", EventType.COMPLAINED, None, ["recipient@example.com"]),
        ("event_delivery", EventType.DELIVERED, None, ["recipient@example.com"]),
        ("event_send", EventType.SENT, None, ["recipient@example.com"]),
        ("event_reject", EventType.REJECTED, None, ["sender@example.com"]),
        ("event_delivery_delay", EventType.DEFERRED, None, ["recipient@example.com"]),
        ("event_rendering_failure", EventType.FAILED, None, ["recipient@example.com"]),
        ("event_open", EventType.OPENED, None, ["recipient@example.com"]),
        ("event_click", EventType.CLICKED, None, ["recipient@example.com"]),
        ("event_subscription", EventType.UNSUBSCRIBED, None, ["recipient@example.com"]),
    ],
)
def test_every_documented_type_reads(
    name: str, kind: EventType, subtype: str | None, recipients: list[str]
) -> None:
    message = sample(name)
    events = parse_sns(sns(message))
    assert [e.recipient for e in events] == recipients
    assert {e.type for e in events} == {kind}
    assert {e.subtype for e in events} == {subtype}
    assert all(e.provider == "ses" for e in events)
    assert all(e.provider_message_id == message["mail"]["messageId"] for e in events)
    assert all(e.raw == message for e in events)
    assert all(e.at.endswith("Z") for e in events)


def test_bounce_keeps_reason_diagnostic_and_time() -> None:
    [event] = parse_sns(sns(sample("event_bounce")))
    # The reason by the taxonomy (gomailpy.bounce_reasons); SES's own pair stays in raw.
    assert (event.reason, event.status) == ("userunknown", "5.1.1")
    assert (event.raw["bounce"]["bounceType"], event.raw["bounce"]["bounceSubType"]) == (
        "Permanent",
        "General",
    )
    assert event.mta_response == "smtp; 550 5.1.1 user unknown"
    assert event.at == "2017-08-05T00:41:02.669000Z"


@pytest.mark.parametrize(
    ("bounce_type", "subtype"),
    [("Permanent", "hard"), ("Transient", "soft"), ("Undetermined", "soft"), ("New", "soft")],
)
def test_only_permanent_bounces_are_hard(bounce_type: str, subtype: str) -> None:
    message = sample("event_bounce")
    message["bounce"]["bounceType"] = bounce_type
    message["bounce"]["bounceSubType"] = "MailboxFull"
    [event] = parse_sns(sns(message))
    assert (event.type, event.subtype) == (EventType.BOUNCED, subtype)


def test_one_event_per_bounced_recipient_with_distinct_ids() -> None:
    message = sample("identity_bounce")
    message["bounce"]["bouncedRecipients"].append(
        {"emailAddress": "mary@example.com", "status": "5.1.1", "action": "failed"}
    )
    events = parse_sns(sns(message))
    assert [e.recipient for e in events] == ["jane@example.com", "mary@example.com"]
    assert len({e.id for e in events}) == 2


def test_the_same_notification_twice_gives_the_same_ids() -> None:
    first = parse_sns(sns(sample("event_delivery"), message_id="m-1"))
    again = parse_sns(sns(sample("event_delivery"), message_id="m-1"))
    other = parse_sns(sns(sample("event_delivery"), message_id="m-2"))
    assert [e.id for e in first] == [e.id for e in again]
    assert first[0].id != other[0].id


def test_message_id_comes_from_the_tag_else_the_header() -> None:
    [tagged] = parse_sns(sns(sample("event_delivery")))
    assert tagged.message_id == GOMAILPY_ID
    [headed] = parse_sns(sns(sample("identity_delivery")))
    assert headed.message_id == "5a8e1b38-3b0e-4d5c-9d8a-3f0c2b1e4d6f"
    [neither] = parse_sns(sns(sample("event_bounce")))
    assert neither.message_id is None
    assert neither.provider_message_id == (
        "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
    )


def test_validation_text_and_subscription_confirmations_carry_no_events() -> None:
    text = "Successfully validated SNS topic for Amazon SES event publishing."
    assert parse_sns(sns(text)) == []
    confirmation = sns("You have chosen to subscribe to the topic ...")
    confirmation["Type"] = "SubscriptionConfirmation"
    assert parse_sns(confirmation) == []


def test_unknown_types_are_kept_not_fatal() -> None:
    message = sample("event_send")
    message["eventType"] = "Teleported"
    message["teleport"] = {"where": "moon"}
    [event] = parse_sns(sns(message))
    assert event.type is EventType.UNKNOWN
    assert event.recipient == "recipient@example.com"
    assert event.raw["teleport"] == {"where": "moon"}
    assert event.message_id == GOMAILPY_ID


def test_a_subscription_change_that_is_no_unsubscribe_is_unknown() -> None:
    message = sample("event_subscription")
    message["subscription"]["newTopicPreferences"]["unsubscribeAll"] = False
    [event] = parse_sns(sns(message))
    assert event.type is EventType.UNKNOWN


@pytest.mark.parametrize(
    "envelope",
    [
        [],
        {"Type": "Notification"},
        {"Type": "Notification", "Message": 42},
        {"Type": "Notice", "Message": "{}"},
        sns("not json and not the validation text"),
        sns("[1, 2]"),
        sns({"mail": {}}),
        sns({"eventType": "Bounce", "mail": [], "bounce": {}}),
        sns({"eventType": "Bounce", "mail": {}, "bounce": {"bouncedRecipients": "x"}}),
        sns({"eventType": "Bounce", "mail": {}, "bounce": {"bouncedRecipients": ["x"]}}),
        sns({"eventType": "Delivery", "mail": {}, "delivery": "yes"}),
    ],
    ids=repr,
)
def test_malformed_envelopes_raise_event_format_error(envelope: Any) -> None:
    with pytest.raises(EventFormatError):
        parse_sns(envelope)
