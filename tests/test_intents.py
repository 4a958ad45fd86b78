"""Intent before send (issue 26): the intake's decision table without I/O, the intent record, the
intake holding another node's email and sending it in doubt past the grace (memory store), and a
send deadline that does not count a stall."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gomailpy import metrics
from gomailpy.email.envelope import Envelope
from gomailpy.providers.base import Outcome, SendResult
from gomailpy.queues.sqs import ReceivedMessage
from gomailpy.store.deliveries import (
    DeliveryRecord,
    DeliveryState,
    MemoryDeliveryStore,
    Verdict,
    after_attempt,
    decide,
    intent_record,
)
from pipeline.reading.intake import Intake
from pipeline.sending.dispatch import ProviderLane
from pipeline.sending.settlement import IterationReport
from tests.boundary import ScriptedProvider
from tests.support import make_envelope, make_settings

NOW = 1_800_000_000.0
GRACE = 60.0


def sending(node: str, lease_until: float | None) -> DeliveryRecord:
    record = intent_record(
        None, "m", queued_at=NOW - 100, node=node, attempt=1, lease_until=0.0, now=NOW - 50
    )
    assert record is not None
    record.lease_until = lease_until
    return record


def outcome(state: DeliveryState) -> DeliveryRecord:
    record = after_attempt(None, "m", queued_at=NOW - 100, state=state, now=NOW - 50, attempt=1)
    assert record is not None
    return record


@pytest.mark.parametrize(
    ("record", "verdict", "hold_s"),
    [
        (None, Verdict.SEND, 0.0),  # no record: never tried
        (outcome(DeliveryState.SENT), Verdict.DELETE, 0.0),  # outcome recorded: sent before
        (outcome(DeliveryState.RETRYING), Verdict.SEND, 0.0),
        (outcome(DeliveryState.FAILED), Verdict.SEND, 0.0),
        (sending("me", NOW + 5), Verdict.SEND, 0.0),  # own intent: this process's attempt is over
        (sending("other", NOW + 5), Verdict.HOLD, 65.0),  # lease still on: lease end + grace
        (sending("other", NOW - 20), Verdict.HOLD, 40.0),  # within the grace
        (sending("other", NOW - 59.5), Verdict.HOLD, 1.0),  # never less than a second
        (sending("other", NOW - GRACE), Verdict.SEND_IN_DOUBT, 0.0),  # the grace is over
        (sending("other", NOW - 3600), Verdict.SEND_IN_DOUBT, 0.0),  # long dead
        (sending("other", None), Verdict.HOLD, 10.0),  # no lease end: counted from its write
    ],
    ids=[
        "no-record",
        "sent",
        "retrying",
        "failed",
        "own-intent",
        "other-leased",
        "other-in-grace",
        "other-grace-ending",
        "other-grace-over",
        "other-long-dead",
        "other-no-lease-end",
    ],
)
def test_intake_decision_table(
    record: DeliveryRecord | None, verdict: Verdict, hold_s: float
) -> None:
    decision = decide(record, node="me", now=NOW, grace_s=GRACE)
    assert decision.verdict is verdict
    assert decision.hold_s == pytest.approx(hold_s)
    if verdict in (Verdict.HOLD, Verdict.SEND_IN_DOUBT):
        assert decision.node == "other"


def test_intent_record_then_outcome() -> None:
    intent = intent_record(
        None, "m", queued_at=NOW - 10, node="n1", attempt=2, lease_until=NOW + 50, now=NOW
    )
    assert intent is not None and intent.state is DeliveryState.SENDING
    assert (intent.node, intent.lease_until, intent.attempt) == ("n1", NOW + 50, 2)
    assert intent.timeline[-1] == {
        "state": "sending",
        "at": intent.updated_at,
        "attempt": 2,
        "node": "n1",
    }
    doubt = intent_record(
        intent,
        "m",
        queued_at=NOW,
        node="n2",
        attempt=3,
        lease_until=NOW + 99,
        now=NOW + 90,
        in_doubt=True,
    )
    assert doubt is not None and doubt.timeline[-1]["inDoubt"] is True
    assert [e["state"] for e in doubt.timeline] == ["queued", "sending", "sending"]
    # the outcome replaces the intent (and the intent's fields), keeping its timeline
    sent = after_attempt(
        doubt,
        "m",
        queued_at=NOW,
        state=DeliveryState.SENT,
        now=NOW + 91,
        attempt=3,
        provider="smtp",
        provider_message_id="x",
    )
    assert sent is not None and sent.node is None and sent.lease_until is None
    assert [e["state"] for e in sent.timeline] == ["queued", "sending", "sending", "sent"]
    # never over a send
    assert (
        intent_record(sent, "m", queued_at=NOW, node="n3", attempt=4, lease_until=NOW, now=NOW)
        is None
    )


# -- the intake, on a memory store (no queue: messages built by hand) --------------------------


def message(envelope: Envelope, n: int = 0, receive_count: int = 1) -> ReceivedMessage:
    return ReceivedMessage(
        "http://q/fq", f"sqs-{n}", f"handle-{n}-{receive_count}", envelope.encode(), receive_count
    )


def intake_for(store: MemoryDeliveryStore, node_id: str, **pipeline: Any) -> Intake:
    settings = make_settings(
        "http://127.0.0.1:9",
        queues={"visibility_timeout_s": 30},
        pipeline=pipeline,
        status={"backend": "memory"},
    )
    return Intake(settings, status=store, node_id=node_id)


async def test_another_nodes_intent_is_held_then_sent_in_doubt() -> None:
    settings = make_settings("http://127.0.0.1:9", status={"backend": "memory"})
    clock = [time.time()]
    store = MemoryDeliveryStore(settings.status, clock=lambda: clock[0])
    first = intake_for(store, "node-a", in_doubt_grace_s=20)
    second = intake_for(store, "node-b", in_doubt_grace_s=20)
    envelope = make_envelope(1)
    # node A takes it, says it is sending (its lease ends in 6 s), and freezes
    items, _ = await first.take([message(envelope)], IterationReport())
    await first.intend(items, lambda m: time.time() + 6)
    record = await store.get(envelope.id)
    assert record is not None and record.state is DeliveryState.SENDING and record.node == "node-a"

    # node B receives it: held until A's lease end + grace (26 s from now), not sent
    report = IterationReport()
    items, plan = await second.take([message(envelope, receive_count=2)], report)
    assert items == [] and report.held == 1
    [(_, delay)] = plan.releases
    assert 25 <= delay <= 27

    # past the grace, B sends it, in doubt: counted, logged, on the timeline
    record.lease_until = time.time() - 21
    await store.put_many([record])
    before = metrics.SENDS_IN_DOUBT._value.get()
    items, plan = await second.take([message(envelope, receive_count=3)], IterationReport())
    assert [i.in_doubt for i in items] == [True] and not plan.releases
    await second.intend(items, lambda m: time.time() + 30)
    assert metrics.SENDS_IN_DOUBT._value.get() == before + 1
    record = await store.get(envelope.id)
    assert record is not None and record.node == "node-b"
    assert record.timeline[-1]["inDoubt"] is True and items[0].intended


async def test_own_intent_and_a_resolved_one_are_sent_not_in_doubt() -> None:
    settings = make_settings("http://127.0.0.1:9", status={"backend": "memory"})
    store = MemoryDeliveryStore(settings.status)
    node = intake_for(store, "node-a")
    envelope = make_envelope(2)
    items, _ = await node.take([message(envelope)], IterationReport())
    await node.intend(items, lambda m: time.time() + 30)
    node.done([items[0].message])
    items, plan = await node.take([message(envelope, receive_count=2)], IterationReport())
    assert [i.in_doubt for i in items] == [False] and not plan.releases  # its own intent
    # the other node woke and recorded that its send was not started: sent at once elsewhere
    other = intake_for(store, "node-b")
    retrying = after_attempt(
        items[0].record,
        envelope.id,
        queued_at=0,
        state=DeliveryState.RETRYING,
        now=time.time(),
        attempt=2,
        reason="not started",
    )
    assert retrying is not None
    await store.put_many([retrying])
    items, plan = await other.take([message(envelope, receive_count=3)], IterationReport())
    assert [i.in_doubt for i in items] == [False] and not plan.releases


async def test_status_off_writes_no_intent_and_never_holds() -> None:
    settings = make_settings("http://127.0.0.1:9")
    intake = Intake(settings, status=None, node_id="n")
    items, plan = await intake.take([message(make_envelope(3))], IterationReport())
    await intake.intend(items, lambda m: time.time() + 30)
    assert len(items) == 1 and not items[0].intended and not plan.releases


# -- a send deadline that does not count a stall -----------------------------------------------


async def test_a_stalled_loop_reads_the_answer_instead_of_timing_out() -> None:
    """The provider answers while the loop is blocked (a stand-in for SIGSTOP): the send's
    1 s limit has passed by the clock, but not while the loop ran."""
    lane = ProviderLane(
        ScriptedProvider("p", latency_s=0.2), timeout_s=1, in_flight=asyncio.Semaphore(10)
    )
    asyncio.get_running_loop().call_later(0.1, time.sleep, 2.5)  # the whole loop stops
    result = await lane.send_one(make_envelope(4))
    assert result.outcome is Outcome.ACCEPTED


async def test_a_hung_provider_still_times_out_on_time() -> None:
    lane = ProviderLane(
        ScriptedProvider("p", mode="hang"), timeout_s=1, in_flight=asyncio.Semaphore(10)
    )
    started = time.monotonic()
    result = await lane.send_one(make_envelope(5))
    assert result.outcome is Outcome.TRANSIENT and "timed out" in result.reason
    assert 0.9 <= time.monotonic() - started < 1.6
    assert isinstance(result, SendResult)
