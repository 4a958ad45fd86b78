"""Events after "accepted": parsing reports, per-recipient outcomes and the suppression list, on
both backends (memory, and DynamoDB on moto's server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from gomailpy.config.settings import Settings
from gomailpy.errors import EventFormatError
from gomailpy.events import Event, EventType, Subtype, iso
from gomailpy.feedback.parse import parse_report
from gomailpy.operating.resources import ensure_resources
from gomailpy.store.backends import EventStores, open_event_stores
from gomailpy.store.events import fold
from gomailpy.store.suppressions import SuppressionKind, manual
from tests.support import make_settings, unique

T0 = 1_800_000_000.0


def event(
    kind: EventType,
    recipient: str = "a@example.org",
    *,
    at: float = T0,
    message_id: str | None = "m1",
    subtype: str | None = None,
    provider: str = "ses",
    event_id: str | None = None,
    provider_message_id: str | None = None,
) -> Event:
    return Event(
        id=event_id or f"{kind}-{recipient}-{at}",
        message_id=message_id,
        recipient=recipient,
        provider=provider,
        type=kind,
        at=iso(at),
        subtype=subtype,
        provider_message_id=provider_message_id,
    )


def sns_bounce(recipient: str, message_id: str, bounce_type: str = "Permanent") -> str:
    """What SNS puts on the events queue for an SES Bounce (raw delivery off)."""
    message = {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": recipient, "action": "failed", "diagnosticCode": "550 5.1.1"}
            ],
            "timestamp": "2026-11-28T07:00:00.000Z",
        },
        "mail": {
            "timestamp": "2026-11-28T06:59:59.000Z",
            "messageId": f"ses-{message_id}",
            "destination": [recipient],
            "tags": {"gomailpy-id": [message_id]},
        },
    }
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": unique("sns"),
            "TopicArn": "arn:aws:sns:us-east-1:000000000000:gomailpy-ses-events",
            "Message": json.dumps(message),
            "Timestamp": "2026-11-28T07:00:00.100Z",
        }
    )


# -- parsing ---------------------------------------------------------------------------------


def test_an_ses_bounce_through_sns_is_a_hard_bounce_of_its_email() -> None:
    [bounce] = parse_report(sns_bounce("Gone@Example.org", "m-42"))
    assert (bounce.type, bounce.subtype, bounce.message_id) == (EventType.BOUNCED, "hard", "m-42")
    assert bounce.recipient == "Gone@Example.org"
    assert parse_report(sns_bounce("Gone@Example.org", "m-42"))[0].id != bounce.id  # new SNS id


def test_gomailpy_reports_round_trip() -> None:
    sent = [event(EventType.DELIVERED), event(EventType.BOUNCED, "b@example.org", subtype="hard")]
    body = json.dumps({"source": "gomailpy", "events": [e.to_json() for e in sent]})
    assert parse_report(body) == sent


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"hello": 1}', "unknown report"),
        ('{"Type": "Notification", "TopicArn": "t", "Message": "{oops"}', "ses:"),
        ('{"source": "sendgrid", "events": 3}', "sendgrid"),
        ('{"source": "gomailpy", "events": [{"id": 1}]}', "gomailpy: KeyError"),
    ],
)
def test_a_body_nothing_can_read_says_why(body: str, why: str) -> None:
    with pytest.raises(EventFormatError, match=why):
        parse_report(body)


# -- per-recipient outcomes --------------------------------------------------------------------


def test_outcomes_do_not_depend_on_arrival_order() -> None:
    events = [
        event(EventType.SENT, "a@example.org", at=T0),
        event(EventType.SENT, "b@example.org", at=T0),
        event(EventType.DEFERRED, "b@example.org", at=T0 + 1),
        event(EventType.DELIVERED, "a@example.org", at=T0 + 2),
        event(EventType.BOUNCED, "b@example.org", at=T0 + 3, subtype="hard"),
        event(EventType.DELIVERED, "B@example.org", at=T0 + 4),  # late and lower: no undo
    ]
    expected = {"a@example.org": "delivered", "b@example.org": "bounced"}
    for order in (events, list(reversed(events)), events[3:] + events[:3]):
        assert {k: v.state for k, v in fold(order).items()} == expected
    assert fold(events)["b@example.org"].subtype == "hard"


# -- the stores, on both backends ---------------------------------------------------------------


@pytest.fixture(params=["memory", "dynamodb"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[tuple[EventStores, Settings]]:
    status: dict[str, Any] = {"backend": request.param}
    if request.param == "dynamodb":
        endpoint = request.getfixturevalue("moto_endpoint")
        status.update(endpoint_url=endpoint, table=unique("table"))
    settings = make_settings(
        "http://127.0.0.1:1",
        status=status,
        suppression={"soft_bounce_limit": 3, "soft_bounce_window_s": 3600},
    )
    if request.param == "dynamodb":
        await ensure_resources(settings)
    async with AsyncExitStack() as stack:
        yield await open_event_stores(stack, settings), settings


async def test_a_report_seen_twice_is_kept_once(stores: tuple[EventStores, Settings]) -> None:
    outcomes = stores[0].outcomes
    assert outcomes is not None
    first = [event(EventType.DELIVERED), event(EventType.DELIVERED, "b@example.org")]
    assert await outcomes.record(first) == first
    again = [first[1], event(EventType.OPENED, at=T0 + 5)]
    assert await outcomes.record(again) == again[1:]
    assert await outcomes.record(first) == []
    kept = await outcomes.events("m1")
    assert sorted(e.id for e in kept) == sorted(e.id for e in [*first, again[1]])


async def test_unjoined_events_join_their_email_by_provider_message_id(
    stores: tuple[EventStores, Settings],
) -> None:
    outcomes = stores[0].outcomes
    assert outcomes is not None
    lost = event(
        EventType.BOUNCED,
        subtype="hard",
        message_id=None,
        provider="sendgrid",
        provider_message_id="X-Id-1.filter0001.1234.5",
    )
    await outcomes.record([lost, event(EventType.SENT, message_id="m2")])
    assert await outcomes.events("m2") != []
    found = await outcomes.events("m2", provider="sendgrid", provider_message_id="X-Id-1")
    assert lost in found
    assert fold(found)["a@example.org"].state == "bounced"


async def test_hard_bounces_complaints_and_unsubscribes_suppress_at_once(
    stores: tuple[EventStores, Settings],
) -> None:
    suppression = stores[0].suppression
    assert suppression is not None
    await suppression.apply(
        [
            event(EventType.BOUNCED, "Hard@Example.org", subtype=Subtype.HARD.value),
            event(EventType.COMPLAINED, "spam@example.org", provider="sendgrid"),
            event(EventType.UNSUBSCRIBED, "bye@example.org"),
            event(EventType.DELIVERED, "fine@example.org"),
        ]
    )
    found = await suppression.lookup(
        ["hard@example.org", "SPAM@example.org", "bye@example.org", "fine@example.org"]
    )
    assert {a: s.kind for a, s in found.items()} == {
        "hard@example.org": SuppressionKind.HARD_BOUNCE,
        "spam@example.org": SuppressionKind.COMPLAINT,
        "bye@example.org": SuppressionKind.UNSUBSCRIBE,
    }
    assert found["spam@example.org"].provider == "sendgrid"
    assert found["hard@example.org"].reason == "hard"


async def test_soft_bounces_suppress_only_past_the_limit(
    stores: tuple[EventStores, Settings],
) -> None:
    suppression = stores[0].suppression
    assert suppression is not None
    now = __import__("time").time()
    soft = [
        event(EventType.BOUNCED, "full@example.org", subtype="soft", at=now - n, event_id=f"s{n}")
        for n in range(3)
    ]
    await suppression.apply(soft[:2] + soft[:2])  # the same soft bounce twice counts once
    assert await suppression.lookup(["full@example.org"]) == {}
    await suppression.apply([soft[2]])
    entry = (await suppression.lookup(["full@example.org"]))["full@example.org"]
    assert entry.kind == SuppressionKind.SOFT_BOUNCES


async def test_old_soft_bounces_do_not_count(stores: tuple[EventStores, Settings]) -> None:
    suppression = stores[0].suppression
    assert suppression is not None
    now = __import__("time").time()
    old = [
        event(EventType.BOUNCED, "x@example.org", subtype="soft", at=now - 7200 - n)
        for n in range(5)
    ]
    await suppression.apply(old)
    assert await suppression.lookup(["x@example.org"]) == {}


async def test_operators_add_list_and_remove(stores: tuple[EventStores, Settings]) -> None:
    suppression = stores[0].suppression
    assert suppression is not None
    for n in range(5):
        await suppression.put(manual(f"op{n}@example.org", "asked by phone", T0))
    assert (await suppression.get("OP3@example.org")) is not None
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        page, cursor = await suppression.page(cursor, limit=2)
        seen += [s.address for s in page]
        if cursor is None:
            break
    assert sorted(seen) == [f"op{n}@example.org" for n in range(5)]
    assert await suppression.remove("op1@example.org") is True
    assert await suppression.remove("op1@example.org") is False
    assert await suppression.get("op1@example.org") is None


async def test_lookup_costs_one_call_per_hundred_addresses(
    stores: tuple[EventStores, Settings],
) -> None:
    suppression = stores[0].suppression
    assert suppression is not None
    await suppression.put(manual("r7@example.org", "test", T0))
    before = suppression.calls
    found = await suppression.lookup([f"r{n}@example.org" for n in range(250)])
    assert list(found) == ["r7@example.org"]
    assert suppression.calls - before == 3
