"""Engagement per provider (gomailpy.feedback.engagement): SES's and SendGrid's documented open,
click and complaint events and gomailpy's own hits, each counted once against the instance that
sent the email, machine opens and clicks apart."""

from __future__ import annotations

import copy
import json
import time
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from api.views.delivery import DELIVERY_STORE
from api.views.suppressions import OUTCOME_STORE
from gomailpy.bulk.hits import engaged, unsubscribed
from gomailpy.bulk.tokens import Kind, Link
from gomailpy.events import Event, EventType, iso
from gomailpy.feedback.engagement import count_engagement, is_machine_hit
from gomailpy.feedback.mailgun import parse_mailgun
from gomailpy.feedback.parse import parse_report
from gomailpy.metrics import sample
from gomailpy.store.deliveries import DeliveryRecord, DeliveryState, MemoryDeliveryStore
from gomailpy.store.events import MemoryEventStore
from pipeline.feedback import EventConsumer
from tests.support import api_client, make_settings, unique
from tests.test_events_ses import sns

DATA = Path(__file__).parent / "data"
SES: dict[str, Any] = json.loads((DATA / "ses" / "notifications.json").read_text())
SENDGRID: list[dict[str, Any]] = json.loads(
    (DATA / "sendgrid" / "event_webhook_examples.json").read_text()
)["all_events"]
SENDGRID_CLICK = next(e for e in SENDGRID if e["event"] == "click")
SENDGRID_OPEN = next(e for e in SENDGRID if e["event"] == "open")
MAILGUN_CLICK = json.loads((DATA / "mailgun" / "event_examples.json").read_text())["clicked"]
PERSON = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"


def ses_events(kind: str, **changes: Any) -> list[Event]:
    message = copy.deepcopy(SES[kind])
    for key, value in changes.items():
        message[kind.removeprefix("event_")][key] = value
    return parse_report(json.dumps(sns(message, unique("sns"))))


def mailgun_events(kind: str, agent: str) -> list[Event]:
    """Mailgun's documented sample of `kind`, its client-info's user agent replaced."""
    examples = json.loads((DATA / "mailgun" / "event_examples.json").read_text())
    entry = copy.deepcopy(examples[kind])
    entry["id"] = unique("mg")
    entry.setdefault("client-info", {})["user-agent"] = agent
    return parse_mailgun([entry])


def sendgrid_events(kind: str, **changes: Any) -> list[Event]:
    [entry] = [e for e in SENDGRID if e["event"] == kind]
    body = {"source": "sendgrid", "events": [{**entry, "sg_event_id": unique("sg"), **changes}]}
    return parse_report(json.dumps(body))


@pytest.mark.parametrize(
    ("events", "machine"),
    [
        # SES's documented open: opened the very millisecond SES took it, so a prefetch
        (lambda: ses_events("event_open"), True),
        (lambda: ses_events("event_open", timestamp="2017-08-09T23:00:19.652Z"), False),
        (
            lambda: ses_events(
                "event_open",
                timestamp="2017-08-09T23:00:19.652Z",
                userAgent="Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
                "(via ggpht.com GoogleImageProxy)",
            ),
            True,
        ),
        (lambda: ses_events("event_click", timestamp="2017-08-09T23:00:00.000Z"), False),
        (lambda: sendgrid_events("open"), False),  # documented: sg_machine_open false
        (lambda: sendgrid_events("open", sg_machine_open=True), True),  # Apple MPP
        (lambda: sendgrid_events("click", useragent="Mimecast URL scanner"), True),
        (lambda: sendgrid_events("click", useragent=PERSON), False),
        (lambda: mailgun_events("clicked", "Mimecast URL scanner"), True),
        (lambda: mailgun_events("opened", PERSON), False),
    ],
)
def test_machine_opens_and_clicks_are_told_apart(events: Any, machine: bool) -> None:
    [event] = events()
    assert event.type in (EventType.OPENED, EventType.CLICKED)
    assert is_machine_hit(event, window_s=10.0) is machine


def counted(provider: str, kind: str, machine: str = "false") -> float:
    labels = {"provider": provider, "type": kind, "machine": machine}
    return sample("gomailpy_engagement_events_total", labels)


async def test_each_event_counts_once_against_the_instance_that_sent_the_email() -> None:
    settings = make_settings("http://127.0.0.1:1", events={"enabled": True})
    relay, ses_instance = unique("relay"), unique("ses")
    deliveries = MemoryDeliveryStore(settings.status)
    now = iso(time.time())
    await deliveries.put_many(
        [DeliveryRecord("m-relay", DeliveryState.SENT, now, now, provider=relay)]
    )
    link = Link(Kind.OPEN, "m-relay", "ann@example.org", issued_at=time.time() - 3600)
    own = [
        engaged(link, EventType.OPENED, PERSON, False, time.time()),
        engaged(link, EventType.OPENED, "GoogleImageProxy", True, time.time()),
        unsubscribed(link, 3, time.time(), "one-click"),
        # mail to the mailto: address names no email: counted, but joined to no provider
        unsubscribed(Link(Kind.MAILTO, "", "bob@example.org"), None, time.time(), "mailto"),
    ]
    # SES's documented complaint, from the instance the configuration set's tag names
    complaint = [replace(e, instance=ses_instance) for e in ses_events("event_complaint")]
    delivered = ses_events("event_delivery")
    before_unknown = counted("unknown", "unsubscribed")
    consumer = EventConsumer(
        settings, None, outcomes=MemoryEventStore(), suppression=None, deliveries=deliveries
    )  # type: ignore[arg-type]  # it records here, never polls: no queue
    await consumer.record([*own, *complaint, *delivered])
    await consumer.record([*own, *complaint, *delivered])  # redelivered: nothing new to count
    assert counted(relay, "opened") == 1
    assert counted(relay, "opened", "true") == 1
    assert counted(relay, "unsubscribed") == 1
    assert counted("unknown", "unsubscribed") == before_unknown + 1
    assert counted(ses_instance, "complained") == 1
    assert counted(ses_instance, "delivered") == 0  # not engagement


async def test_without_a_delivery_store_own_hits_are_unknown() -> None:
    link = Link(Kind.CLICK, unique("m"), "ann@example.org", url="https://example.org/")
    before = counted("unknown", "clicked")
    await count_engagement(
        [engaged(link, EventType.CLICKED, PERSON, False, time.time())], None, machine_window_s=10
    )
    assert counted("unknown", "clicked") == before + 1


async def test_the_timeline_shows_each_providers_opens_and_clicks_alike() -> None:
    # GET /email/{id}: every open and click, whoever reported it, with its recipient, user
    # agent, link (clicks) and whether a machine made it, under the same names.
    settings = make_settings("http://127.0.0.1:1", status={"backend": "memory"})
    link = Link(Kind.CLICK, "m-1", "ann@example.org", url="https://shop.example/a")
    own = [
        engaged(link, EventType.CLICKED, PERSON, False, time.time()),
        engaged(replace(link, kind=Kind.OPEN), EventType.OPENED, "GoogleImageProxy", True, 0),
    ]
    later = "2017-08-09T23:00:00.000Z"  # SES's click well after SES took the email
    providers = [
        *sendgrid_events("click", useragent=PERSON),
        *sendgrid_events("open", sg_machine_open=True),
        *ses_events("event_click", timestamp=later),
        *mailgun_events("clicked", "Mimecast URL scanner"),
    ]
    events = [*own, *(replace(e, message_id="m-1") for e in providers)]
    async with AsyncExitStack() as stack:
        client = await api_client(stack, settings)
        now = iso(time.time())
        await client.app[DELIVERY_STORE].put_many(
            [DeliveryRecord("m-1", DeliveryState.SENT, now, now, provider="smtp")]
        )
        await client.app[OUTCOME_STORE].record(events)
        answer = await client.get("/email/m-1")
        assert answer.status == 200, await answer.text()
        timeline = (await answer.json())["timeline"]
    shown = {
        (e["provider"], e["state"]): (e.get("userAgent", ""), e.get("url"), e["machine"])
        for e in timeline
        if e["state"] in ("opened", "clicked")
    }
    ses_click = SES["event_click"]["click"]
    assert shown == {
        ("gomailpy", "clicked"): (PERSON, "https://shop.example/a", False),
        ("gomailpy", "opened"): ("GoogleImageProxy", None, True),
        ("sendgrid", "clicked"): (PERSON, SENDGRID_CLICK["url"], False),
        ("sendgrid", "opened"): (SENDGRID_OPEN["useragent"], None, True),
        ("ses", "clicked"): (ses_click["userAgent"], ses_click["link"], False),
        ("mailgun", "clicked"): ("Mimecast URL scanner", MAILGUN_CLICK["url"], True),
    }
    assert all(e["recipient"] for e in timeline if e["state"] in ("opened", "clicked"))
