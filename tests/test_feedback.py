"""The loop closed inside a pipeline node, on the real SQS server (LocalStack): reports on the
events queue → the consumer → outcomes and the suppression list → the next email to a
suppressed address is dropped before any provider sees it. Providers are scripted at the
boundary (tests.boundary); the end-to-end tests over each provider's own mechanism are in
tests/test_events_e2e.py."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest

from gomailpy import metrics
from gomailpy.config.feedback import ReputationSettings
from gomailpy.config.settings import Settings
from gomailpy.email.envelope import Envelope
from gomailpy.email.verp import verp_address
from gomailpy.errors import StoreError
from gomailpy.events import Event, EventType
from gomailpy.providers.base import SendResult
from gomailpy.queues.deadletter import FAILURE_KIND, FAILURE_REASON
from gomailpy.queues.sqs import QueueClient, ReceivedMessage, create_queue_client
from gomailpy.store.backends import EventStores, open_event_stores
from gomailpy.store.events import MemoryEventStore, fold
from gomailpy.store.suppressions import MemorySuppressionStore, Suppression
from gomailpy_local.standins.reports import complaint_report, delivery_report
from pipeline.feedback import EventConsumer, SentRecipients
from pipeline.node import PipelineNode
from pipeline.prepare.suppress import RecipientScreen
from pipeline.sending.health import Health
from pipeline.sending.reputation import ReputationGuard
from pipeline.sending.splitter import split
from tests.boundary import ScriptedProvider
from tests.support import create_queues, make_envelope, make_settings, unique
from tests.test_outcomes import event, sns_bounce


@dataclass
class RecordingProvider(ScriptedProvider):
    envelopes: list[Envelope] = field(default_factory=list)

    async def send(self, envelope: Envelope) -> SendResult:
        self.envelopes.append(envelope)
        return await super().send(envelope)


def feedback_settings(endpoint: str) -> Settings:
    return make_settings(
        endpoint,
        queue_count=1,
        queues={"visibility_timeout_s": 10, "wait_time_s": 1},
        pipeline={"send_timeout_s": 1, "min_iteration_duration_s": 0},
        status={"backend": "memory"},
        events={"enabled": True, "queue": unique("events"), "consumers": 2},
    )


@dataclass
class Bed:
    settings: Settings
    queues: QueueClient
    stores: EventStores
    events_url: str
    providers: dict[str, RecordingProvider]
    node: PipelineNode
    consumer: EventConsumer

    async def report(self, *bodies: str) -> None:
        """Put reports on the events queue and let the consumer take all of them."""
        result = await self.queues.send_batch(
            self.events_url, [(str(i), b) for i, b in enumerate(bodies)]
        )
        assert not result.failed
        for _ in range(50):
            messages = await self.queues.receive(self.events_url, wait_time_s=1)
            if messages:
                await self.consumer.handle(messages)
            depth = await self.queues.depth(self.events_url)
            if depth.total == 0:
                return
        raise AssertionError("the events queue did not drain")

    async def send(self, envelope: Envelope) -> Any:
        [url] = await self.queues.resolve_all()
        await self.queues.send(url, envelope.encode())
        return await self.node.run_iteration()

    async def dead_letters(self, url: str) -> list[ReceivedMessage]:
        dlq = await self.queues.dead_letter_url(url)
        found: list[ReceivedMessage] = []
        for _ in range(3):
            found += await self.queues.receive(dlq, wait_time_s=1)
        return found


@pytest.fixture
async def bed(sqs_endpoint: str) -> AsyncIterator[Bed]:
    settings = feedback_settings(sqs_endpoint)
    await create_queues(settings)
    async with AsyncExitStack() as stack:
        queues = await stack.enter_async_context(create_queue_client(settings))
        events_url = await queues.ensure_queue(settings.events.queue)
        stores = await open_event_stores(stack, settings)
        assert stores.suppression is not None
        providers = {name: RecordingProvider(name) for name in ("ses", "sendgrid", "smtp")}
        node = await stack.enter_async_context(PipelineNode(settings, queues, dict(providers)))
        node.steps = [RecipientScreen(stores.suppression, outcomes=stores.outcomes)]
        consumer = EventConsumer(
            settings, queues, outcomes=stores.outcomes, suppression=stores.suppression
        )
        yield Bed(settings, queues, stores, events_url, providers, node, consumer)


async def test_a_hard_bounce_drops_the_next_email_for_every_provider(bed: Bed) -> None:
    first = make_envelope(1, toEmail="gone@example.org")
    await bed.report(sns_bounce("Gone@Example.org", first.id))
    assert bed.consumer.recorded == 1
    assert bed.stores.outcomes is not None
    outcome = fold(await bed.stores.outcomes.events(first.id))
    assert outcome["gone@example.org"].state == "bounced"

    second = make_envelope(2, toEmail="gone@example.org")
    report = await bed.send(second)
    assert report.failed == 1
    assert all(not p.attempts for p in bed.providers.values())  # none of the three called
    [letter] = await bed.dead_letters(bed.node.urls[0])
    assert letter.attributes[FAILURE_KIND] == "permanent"
    assert "every recipient is suppressed" in letter.attributes[FAILURE_REASON]
    assert "hard-bounce at ses" in letter.attributes[FAILURE_REASON]
    [dropped] = await bed.stores.outcomes.events(second.id)
    assert (dropped.type, dropped.subtype) == (EventType.DROPPED, "suppressed")


async def test_only_the_suppressed_recipients_are_dropped(bed: Bed) -> None:
    await bed.report(sns_bounce("gone@example.org", "earlier"))
    envelope = make_envelope(3, toEmail="gone@example.org", cc=[{"email": "here@example.org"}])
    report = await bed.send(envelope)
    assert sum(report.sent.values()) == 1
    [sent] = [e for p in bed.providers.values() for e in p.envelopes]
    assert [a.email for a in sent.email.recipients] == ["here@example.org"]
    # Roles are kept: the Cc stays Cc (providers render an email without To, gomailpy.email.mime).
    assert sent.email.to == [] and [a.email for a in sent.email.cc] == ["here@example.org"]
    assert bed.stores.outcomes is not None
    outcome = fold(await bed.stores.outcomes.events(envelope.id))
    assert outcome["gone@example.org"].state == "dropped"


async def test_a_report_seen_twice_is_recorded_once(bed: Bed) -> None:
    body = sns_bounce("twice@example.org", "m-twice")
    await bed.report(body, body)
    assert bed.consumer.recorded == 1
    assert bed.stores.suppression is not None
    assert await bed.stores.suppression.get("twice@example.org") is not None


async def test_a_malformed_report_lands_in_the_events_dead_letter_queue(bed: Bed) -> None:
    before = metrics.sample("gomailpy_event_reports_dead_lettered_total")
    malformed = json.dumps({"Type": "Notification", "TopicArn": "arn", "Message": "{not json"})
    await bed.report(malformed, sns_bounce("ok@example.org", "m-ok"))
    [letter] = await bed.dead_letters(bed.events_url)
    assert letter.body == malformed
    assert letter.attributes[FAILURE_KIND] == "unreadable"
    assert "not JSON" in letter.attributes[FAILURE_REASON]
    assert bed.consumer.recorded == 1  # the good report of the same batch went through
    assert metrics.sample("gomailpy_event_reports_dead_lettered_total") == before + 1


class FlakySuppression(MemorySuppressionStore):
    """A suppression list whose first write fails, as DynamoDB may."""

    failures = 1

    async def apply(self, events: Sequence[Event]) -> list[Suppression]:
        if self.failures:
            self.failures -= 1
            raise StoreError("update_item", "ProvisionedThroughputExceededException")
        return await super().apply(events)


async def test_a_store_failure_leaves_the_reports_to_come_back(bed: Bed) -> None:
    flaky = FlakySuppression(bed.settings.suppression)
    consumer = EventConsumer(
        bed.settings, bed.queues, outcomes=bed.stores.outcomes, suppression=flaky
    )
    await bed.queues.send(bed.events_url, sns_bounce("flaky@example.org", "m-flaky"))
    [message] = await bed.queues.receive(bed.events_url, wait_time_s=1)
    await consumer.handle([message])
    assert await flaky.get("flaky@example.org") is None
    # Not deleted: it comes back once its visibility timeout ends (here: at once).
    await bed.queues.change_visibility_batch(bed.events_url, [(message.receipt_handle, 0)])
    [again] = await bed.queues.receive(bed.events_url, wait_time_s=1)
    assert again.receive_count == 2
    await consumer.handle([again])
    assert await flaky.get("flaky@example.org") is not None
    assert consumer.recorded == 1  # kept once, though seen twice
    assert (await bed.queues.depth(bed.events_url)).total == 0


class StuckOutcomes(MemoryEventStore):
    """An outcome store that never answers: the consumer hangs on its first batch."""

    async def record(self, events: Sequence[Event]) -> list[Event]:
        await asyncio.Event().wait()
        return []


async def test_a_flood_of_events_never_blocks_sending(bed: Bed) -> None:
    flood = [sns_bounce(f"f{n}@example.org", f"m{n}") for n in range(40)]
    for start in range(0, len(flood), 10):
        await bed.queues.send_batch(
            bed.events_url, [(str(i), b) for i, b in enumerate(flood[start : start + 10])]
        )
    stuck = EventConsumer(
        bed.settings, bed.queues, outcomes=StuckOutcomes(), suppression=bed.stores.suppression
    )
    async with stuck:  # its pollers take the flood and hang on it
        sent = 0
        for n in range(5):
            report = await bed.send(make_envelope(100 + n))
            sent += sum(report.sent.values())
        assert sent == 5
    assert (await bed.queues.depth(bed.events_url)).total > 0  # nothing recorded, nothing lost


# -- the reputation guard (no I/O) -----------------------------------------------------------


def test_a_provider_past_its_bounce_rate_leaves_rotation_then_comes_back() -> None:
    name = unique("rep")
    now = [0.0]
    health = {name: Health(1, 1), "other": Health(1, 1)}
    settings = ReputationSettings(window=100, min_sample=50, max_bounce_rate=0.04, hold_s=60)
    guard = ReputationGuard(settings, health, clock=lambda: now[0])
    metrics.PROVIDER_SENDS.labels(name, "accepted").inc(40)
    bounces = [
        event(EventType.BOUNCED, f"b{n}@example.org", provider=name, subtype="hard")
        for n in range(5)
    ]
    guard.observe(bounces)
    assert health[name].healthy  # 40 sends: below the minimum sample
    metrics.PROVIDER_SENDS.labels(name, "accepted").inc(60)
    guard.observe([])
    assert not health[name].healthy  # 5 % of 100 > 4 %
    assert "hard bounce rate 5.00% > 4.00%" in (health[name].held or "")
    assignment = split(list(range(10)), [_view(name, health), _view("other", health)])
    assert len(assignment[name]) <= 1  # a probe at most, like an open circuit
    now[0] = 61.0
    guard.evaluate()
    assert health[name].healthy and health[name].held is None


def _view(name: str, health: dict[str, Health]) -> Any:
    from pipeline.sending.splitter import ProviderView

    return ProviderView(name, 1.0, health[name].healthy)


# -- SMTP reports: anyone can mail one to the bounce listener ------------------------------------


def smtp_report(settings: Settings, message_id: str, recipient: str, *, kind: str) -> str:
    """What the bounce listener queues for a DSN (or ARF complaint) about `recipient` that names
    the email `message_id` by its VERP address: what a forger can send as easily as a relay."""
    to = verp_address(message_id, settings.events.bounce_domain)
    assert to is not None
    original = f"X-Gomailpy-Id: {message_id}\r\nSubject: hi\r\n\r\nhello\r\n".encode()
    make = complaint_report if kind == "complaint" else delivery_report
    data = make(original, recipient, to=to)
    return json.dumps(
        {
            "source": "smtp",
            "receivedAt": time.time(),
            "mailFrom": "",
            "rcptTo": [to],
            "message": base64.b64encode(data).decode(),
        }
    )


async def send_through(bed: Bed, provider: str, email: Envelope) -> None:
    """Send `email` through a node whose only provider is `provider`, its settlement recording
    who SMTP sends went to, as pipeline.feedback.open_feedback has it."""
    assert bed.stores.outcomes is not None
    async with AsyncExitStack() as stack:
        only = {provider: RecordingProvider(provider)}
        node = await stack.enter_async_context(PipelineNode(bed.settings, bed.queues, dict(only)))
        node.settlement.record_sent = SentRecipients(bed.stores.outcomes)
        [url] = await bed.queues.resolve_all()
        await bed.queues.send(url, email.encode())
        assert (await node.run_iteration()).sent[provider] == 1


async def test_an_smtp_report_suppresses_only_a_recipient_of_its_email(
    bed: Bed, caplog: pytest.LogCaptureFixture
) -> None:
    assert bed.stores.outcomes is not None and bed.stores.suppression is not None
    email = make_envelope(1, toEmail="Real@Example.org", cc=[{"email": "cc@example.org"}])
    await send_through(bed, "smtp", email)

    caplog.set_level(logging.WARNING, logger="gomailpy.events")
    forged = [
        smtp_report(bed.settings, email.id, "victim@example.org", kind="bounce"),
        smtp_report(bed.settings, email.id, "victim2@example.org", kind="complaint"),
        smtp_report(bed.settings, "not-an-email-of-ours", "victim3@example.org", kind="bounce"),
    ]
    await bed.report(*forged)
    await bed.report(forged[0])  # kept once already: a recorded forgery vouches for nothing
    for victim in ("victim@example.org", "victim2@example.org", "victim3@example.org"):
        assert await bed.stores.suppression.get(victim) is None, victim
    assert "victim@example.org is not a recipient of email " + email.id in caplog.text
    kept = fold(await bed.stores.outcomes.events(email.id))  # recorded all the same
    assert (kept["victim@example.org"].state, kept["victim2@example.org"].state) == (
        "bounced",
        "complained",
    )

    await bed.report(
        smtp_report(bed.settings, email.id, "real@example.org", kind="bounce"),
        smtp_report(bed.settings, email.id, "cc@example.org", kind="complaint"),
    )
    real = await bed.stores.suppression.get("real@example.org")
    assert real is not None and (real.kind, real.provider) == ("hard-bounce", "smtp")
    cc = await bed.stores.suppression.get("cc@example.org")
    assert cc is not None and cc.kind == "complaint"


async def test_an_email_sent_through_another_provider_vouches_for_no_smtp_report(
    bed: Bed,
) -> None:
    # SES and SendGrid take their own bounces: no genuine SMTP report is about their emails.
    assert bed.stores.suppression is not None
    email = make_envelope(2, toEmail="someone@example.org")
    await send_through(bed, "ses", email)
    await bed.report(smtp_report(bed.settings, email.id, "someone@example.org", kind="bounce"))
    assert await bed.stores.suppression.get("someone@example.org") is None


# -- policy blocks never suppress (issue 25) ----------------------------------------------------

# What receiving servers say when they refuse the *sender* or the message, not the address.
POLICY_BLOCKS = {
    "ip-blocklist": (
        "5.7.1",
        "smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using"
        " zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.25",
    ),
    "dmarc": (
        "5.7.26",
        "smtp; 550-5.7.26 Unauthenticated email from example.com is not accepted due to"
        " domain's DMARC policy. Please contact the administrator of example.com domain",
    ),
    "spam-content": (
        "5.7.1",
        "smtp; 550-5.7.1 Our system has detected that this message is likely unsolicited"
        " mail. To reduce the amount of spam sent to Gmail, this message has been blocked.",
    ),
}


def relay_dsn(
    settings: Settings, message_id: str, recipient: str, status: str, diagnostic: str
) -> str:
    """The events-queue body of a Postfix-shaped DSN (RFC 3464) refusing `recipient` of the
    email `message_id` with `status` and `diagnostic`, sent to the email's VERP address."""
    to = verp_address(message_id, settings.events.bounce_domain)
    assert to is not None
    dsn = (
        f"From: MAILER-DAEMON@mx.relay.example (Mail Delivery System)\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{unique('dsn')}@mx.relay.example>\r\nAuto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n"
        f' boundary="B"\r\n\r\n'
        f"--B\r\nContent-Type: text/plain\r\n\r\n<{recipient}>: {diagnostic[6:]}\r\n\r\n"
        f"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.relay.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: {diagnostic}\r\n\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"X-Gomailpy-Id: {message_id}\r\nSubject: hi\r\n\r\n--B--\r\n"
    )
    return json.dumps(
        {
            "source": "smtp",
            "receivedAt": time.time(),
            "mailFrom": "",
            "rcptTo": [to],
            "message": base64.b64encode(dsn.encode()).decode(),
        }
    )


async def test_policy_blocks_never_suppress_and_the_address_still_receives_mail(
    bed: Bed,
) -> None:
    assert bed.stores.outcomes is not None and bed.stores.suppression is not None
    email = make_envelope(1, toEmail="fine@example.org", cc=[{"email": "gone@example.org"}])
    await send_through(bed, "smtp", email)

    # An IP blocklisting, a DMARC rejection and spam content, each for the fine address; and,
    # for contrast, an unknown user for the other recipient of the same email.
    await bed.report(
        *(
            relay_dsn(bed.settings, email.id, "fine@example.org", status, diagnostic)
            for status, diagnostic in POLICY_BLOCKS.values()
        ),
        relay_dsn(
            bed.settings,
            email.id,
            "gone@example.org",
            "5.1.1",
            "smtp; 550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown",
        ),
    )
    assert await bed.stores.suppression.get("fine@example.org") is None
    gone = await bed.stores.suppression.get("gone@example.org")
    assert gone is not None and gone.kind == "hard-bounce"
    recorded = await bed.stores.outcomes.events(email.id)
    blocks = [e for e in recorded if e.recipient == "fine@example.org" and e.provider == "smtp"]
    assert sorted(
        (e.type.value, e.subtype, e.reason) for e in blocks if e.type.value != "sent"
    ) == [
        ("blocked", "soft", "authfailure"),
        ("blocked", "soft", "blocked"),
        ("blocked", "soft", "spamdetected"),
    ]

    # The next email to the address is sent; only the bad address is dropped.
    later = make_envelope(2, toEmail="fine@example.org", cc=[{"email": "gone@example.org"}])
    report = await bed.send(later)
    assert sum(report.sent.values()) == 1
    [sent] = [e for p in bed.providers.values() for e in p.envelopes]
    assert [a.email for a in sent.email.recipients] == ["fine@example.org"]
