"""The `mailto:` of List-Unsubscribe (RFC 2369, RFC 8058): mail to it over a real SMTP conversation
(the standard library's smtplib) to the bounce listener on a real events queue (LocalStack), then
the event consumer and the pipeline's suppression step, as for any unsubscribe."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import smtplib
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest

from gomailpy.bulk.headers import unsubscribe_headers
from gomailpy.bulk.tokens import Kind, Link, sign, sign_mailto
from gomailpy.config.settings import Settings
from gomailpy.email.bulk.options import BulkOptions
from gomailpy.events import EventType
from gomailpy.feedback.parse import parse_report
from gomailpy.listeners.bounces import BounceListener
from gomailpy.queues.sqs import QueueClient, ReceivedMessage, create_queue_client
from gomailpy.store.backends import EventStores
from gomailpy.store.events import MemoryEventStore
from gomailpy.store.suppressions import MemorySuppressionStore
from gomailpy.webhooks.outbox import with_webhooks
from gomailpy.webhooks.queue import ensure_webhook_queue
from gomailpy.webhooks.signing import new_secret
from pipeline.feedback import EventConsumer
from pipeline.prepare.suppress import RecipientScreen
from pipeline.sending.settlement import Item, IterationReport, Plan
from tests.bulk_support import SECRET, bulk_settings
from tests.support import make_envelope, unique

DOMAIN = "bounces.test.example"
KEY = SECRET.encode()
ANN = "ann@example.org"


@pytest.fixture
async def bed(sqs_endpoint: str) -> AsyncIterator[tuple[Settings, QueueClient, BounceListener]]:
    settings = await bulk_settings(
        sqs_endpoint,
        events={"bounce_domain": DOMAIN},
        webhooks={
            "enabled": True,
            "queue": unique("hooks"),
            "endpoints": [{"name": "app", "url": "https://app.example.com/hooks"}],
            "secrets": json.dumps({"app": new_secret()}),
        },
    )
    await ensure_webhook_queue(settings)
    async with (
        create_queue_client(settings) as queues,
        BounceListener(settings, queues, host="127.0.0.1", port=0) as listener,
    ):
        yield settings, queues, listener


def mailto_of(settings: Settings, group: int | None, to: str = ANN) -> str:
    """The address the email's own List-Unsubscribe header offers."""
    bulk = BulkOptions(unsubscribe=True, group=group)
    envelope = make_envelope(0, toEmail=to).model_copy(update={"bulk": bulk})
    header = unsubscribe_headers(envelope, settings.bulk, DOMAIN, time.time())["List-Unsubscribe"]
    [address] = re.findall(r"<mailto:([^>]+)>", header)
    return str(address)


def message(sender: str, header_from: str | None = None) -> bytes:
    mail = EmailMessage()
    mail["From"] = header_from or sender
    mail["To"] = "unsubscribe"
    mail["Subject"] = "anything at all"  # RFC 8058: neither subject nor body matters
    mail.set_content("please")
    return mail.as_bytes()


def send(listener: BounceListener, sender: str, rcpts: list[str], data: bytes) -> dict[str, Any]:
    """smtplib's sendmail in a thread (it blocks): the refused recipients, as smtplib says."""
    with smtplib.SMTP(listener.host, listener.port, timeout=10) as client:
        return client.sendmail(sender, rcpts, data)


async def smtp(listener: BounceListener, sender: str, rcpts: list[str], data: bytes) -> Any:
    return await asyncio.to_thread(send, listener, sender, rcpts, data)


async def drain(settings: Settings, queues: QueueClient) -> list[ReceivedMessage]:
    url = await queues.resolve(settings.events.queue)
    found: list[ReceivedMessage] = []
    for _ in range(3):
        received = await queues.receive(url, wait_time_s=1, visibility_timeout_s=60)
        found += received
        if not received:
            break
    return found


def item(n: int, group: int) -> Item:
    bulk = BulkOptions(unsubscribe=True, group=group)
    envelope = make_envelope(n, toEmail=ANN).model_copy(update={"bulk": bulk})
    return Item(ReceivedMessage("q", f"id{n}", f"r{n}", envelope.encode(), 1), envelope)


async def test_mail_to_the_mailto_unsubscribes_from_that_group_only(
    bed: tuple[Settings, QueueClient, BounceListener],
) -> None:
    settings, queues, listener = bed
    address = mailto_of(settings, group=3)
    assert re.fullmatch(rf"unsubscribe\+[A-Za-z0-9_-]+@{re.escape(DOMAIN)}", address)
    assert await smtp(listener, "Ann@Example.org", [address], message("Ann@Example.org")) == {}

    bodies = await drain(settings, queues)
    assert [json.loads(b.body)["source"] for b in bodies] == ["gomailpy"]
    # The event consumer records it, publishes it to the webhooks and suppresses, as a node's.
    store = MemorySuppressionStore(settings.suppression)
    stores = with_webhooks(settings, queues, EventStores(MemoryEventStore(), store))
    assert stores.outcomes is not None
    consumer = EventConsumer(settings, queues, outcomes=stores.outcomes, suppression=store)
    await consumer.handle(bodies)
    assert consumer.recorded == 1
    hooks = await queues.receive(await queues.resolve(settings.webhooks.queue), wait_time_s=1)
    [(webhook_id, hook)] = [
        (json.loads(h.body)["id"], json.loads(json.loads(h.body)["body"])) for h in hooks
    ]
    assert hook["type"] == "email.unsubscribed" and hook["data"]["recipient"] == ANN
    [event] = parse_report(bodies[0].body)
    assert (event.type, event.recipient, event.subtype) == (EventType.UNSUBSCRIBED, ANN, "group")
    assert event.raw == {"via": "mailto", "asm_group_id": 3}
    entry = await store.get(ANN, group=3)
    assert entry is not None and entry.kind == "unsubscribe" and entry.group == 3
    assert await store.get(ANN) is None  # not from everything

    # The next email of group 3 is dropped; group 4's is sent.
    items = [item(0, 3), item(1, 4)]
    kept, plan = await RecipientScreen(store)((items, Plan()), IterationReport())
    assert [i.envelope.id for i in kept] == [items[1].envelope.id]
    assert len(plan.dead_letters) == 1

    # The same mail again is the same unsubscribe: nothing new is recorded.
    assert await smtp(listener, ANN, [address], message(ANN)) == {}
    again = EventConsumer(settings, queues, outcomes=stores.outcomes, suppression=store)
    await again.handle(await drain(settings, queues))
    assert again.recorded == 0
    # Webhooks are at least once: offered again, with the same webhook-id (receivers dedupe).
    hooks_url = await queues.resolve(settings.webhooks.queue)
    [repeat] = [json.loads(h.body)["id"] for h in await queues.receive(hooks_url, wait_time_s=1)]
    assert repeat == webhook_id


async def test_a_global_unsubscribe_and_a_rewritten_envelope_sender(
    bed: tuple[Settings, QueueClient, BounceListener],
) -> None:
    settings, queues, listener = bed
    address = mailto_of(settings, group=None)
    # A gateway rewrote the envelope sender (BATV); the From header is still Ann's.
    sender = "prvs=0123456789=ann@example.org"
    assert await smtp(listener, sender, [address], message(sender, f"Ann <{ANN}>")) == {}
    store = MemorySuppressionStore(settings.suppression)
    consumer = EventConsumer(settings, queues, outcomes=None, suppression=store)
    await consumer.handle(await drain(settings, queues))
    entry = await store.get(ANN)
    assert entry is not None and entry.group is None and entry.kind == "unsubscribe"


def hostile(settings: Settings) -> list[tuple[str, str, bytes, int]]:
    """(recipient, envelope sender, message, the 5xx it must get)."""
    good = sign_mailto(ANN, 3, KEY, time.time())
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    old = sign_mailto(ANN, 3, KEY, time.time() - 400 * 86400)
    foreign = sign_mailto(ANN, 3, b"f" * 40, time.time())
    url_token = sign(Link(Kind.UNSUBSCRIBE, "m-1", ANN, 3), KEY, time.time())
    raw = bytearray(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    raw[5:9] = (4).to_bytes(4, "big")  # Ann's token for group 3, made to say group 4
    regrouped = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert regrouped != good
    at = f"@{DOMAIN}"
    return [
        (f"unsubscribe+{tampered}{at}", ANN, message(ANN), 550),
        (f"unsubscribe+{foreign}{at}", ANN, message(ANN), 550),
        (f"unsubscribe+{old}{at}", ANN, message(ANN), 550),
        (f"unsubscribe+{regrouped}{at}", ANN, message(ANN), 550),
        (f"unsubscribe+{good}{at}", "mallory@example.org", message("mallory@example.org"), 550),
        # Mallory's envelope, Ann in a From header that does not parse as hers
        (f"unsubscribe+{good}{at}", "mallory@example.org", message("m@x", "=?x?q?ann?="), 550),
        (f"unsubscribe+{url_token[:40]}{at}", ANN, message(ANN), 550),
        (f"unsubscribe+{good}@elsewhere.example", ANN, message(ANN), 550),
        (f"unsubscribe+{at}", ANN, message(ANN), 550),
        (f"unsubscribe+!!!!{at}", ANN, message(ANN), 550),
        (f"unsubscribe+AAAA{at}", ANN, message(ANN), 550),
        (f"unsubscribe+{'A' * 60}{at}", ANN, message(ANN), 550),
        (f"unsubscribe+{good}%00{at}", ANN, message(ANN), 550),
        (f"unsubscribe+{good}{at}", "", message(ANN), 550),  # a null sender: an auto-reply
        (f"unsubscribe{at}", ANN, message(ANN), 550),
    ]


async def test_hostile_addresses_and_tokens_are_refused_and_nothing_is_recorded(
    bed: tuple[Settings, QueueClient, BounceListener],
) -> None:
    settings, queues, listener = bed
    for rcpt, sender, data, code in hostile(settings):
        with pytest.raises((smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError)) as refused:
            await smtp(listener, sender, [rcpt], data)
        error = refused.value
        got = (
            next(iter(error.recipients.values()))[0]
            if isinstance(error, smtplib.SMTPRecipientsRefused)
            else error.smtp_code
        )
        assert got == code, (rcpt, sender, error)
    assert await drain(settings, queues) == []


async def test_one_kind_of_mail_per_transaction(
    bed: tuple[Settings, QueueClient, BounceListener],
) -> None:
    settings, queues, listener = bed
    address = mailto_of(settings, group=3)
    # A report's address after an unsubscribe's: 452, the unsubscribe still goes through.
    refused = await smtp(listener, ANN, [address, f"bounces@{DOMAIN}"], message(ANN))
    assert {k: v[0] for k, v in refused.items()} == {f"bounces@{DOMAIN}": 452}
    [body] = await drain(settings, queues)
    [event] = [e for e in json.loads(body.body)["events"]]
    assert (event["type"], event["recipient"]) == ("unsubscribed", ANN)


async def test_451_when_the_events_queue_cannot_take_it(
    bed: tuple[Settings, QueueClient, BounceListener],
) -> None:
    settings, queues, listener = bed
    address = mailto_of(settings, group=3)
    await queues.client.delete_queue(QueueUrl=await queues.resolve(settings.events.queue))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await smtp(listener, ANN, [address], message(ANN))
    assert refused.value.smtp_code == 451


async def test_with_bulk_off_the_address_is_no_address(sqs_endpoint: str) -> None:
    settings = await bulk_settings(
        sqs_endpoint, events={"bounce_domain": DOMAIN}, bulk={"secret": None}
    )
    token = sign_mailto(ANN, 3, KEY, time.time())
    async with (
        create_queue_client(settings) as queues,
        BounceListener(settings, queues, host="127.0.0.1", port=0) as listener,
    ):
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            await smtp(listener, ANN, [f"unsubscribe+{token}@{DOMAIN}"], message(ANN))
