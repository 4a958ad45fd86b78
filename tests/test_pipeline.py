"""The pipeline node against the real SQS server (LocalStack), providers scripted at the boundary."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from gomailpy.config.settings import Settings
from gomailpy.email.envelope import Envelope
from gomailpy.providers.base import Outcome, SendResult
from gomailpy.queues.deadletter import FAILURE_KIND, FAILURE_REASON
from gomailpy.queues.sqs import ReceivedMessage, create_queue_client
from pipeline.node import PipelineNode
from pipeline.sending.dispatch import ProviderLane
from pipeline.sending.health import CircuitState
from tests.boundary import ScriptedProvider
from tests.support import create_queues, enqueue, make_envelope, make_settings, queue_totals


def pipeline_settings(endpoint: str, **pipeline: Any) -> Settings:
    return make_settings(
        endpoint,
        queue_count=2,
        queues={"visibility_timeout_s": 10, "wait_time_s": 1, "max_receive_count": 50},
        pipeline={
            "healthy_threshold": 2,
            "unhealthy_threshold": 2,
            "retry_base_delay_s": 0,
            "retry_max_delay_s": 0,
            "send_timeout_s": 1,
            "min_iteration_duration_s": 0,
            **pipeline,
        },
    )


async def drain(
    settings: Settings, providers: Sequence[ScriptedProvider], expected: int, max_iterations: int = 200
) -> list[Any]:
    """Run whole iterations until `expected` emails were accepted in all; return the reports."""
    reports = []
    async with create_queue_client(settings) as queues:
        node = PipelineNode(settings, queues, {p.name: p for p in providers})
        async with node:
            for _ in range(max_iterations):
                reports.append(await node.run_iteration())
                if sum(len(p.accepted) for p in providers) >= expected:
                    break
    return reports


async def test_every_email_delivered_exactly_once_and_deleted(sqs_endpoint: str) -> None:
    settings = pipeline_settings(sqs_endpoint)
    await create_queues(settings)
    ids = await enqueue(settings, 120)
    a, b = ScriptedProvider("a"), ScriptedProvider("b")
    await drain(settings, [a, b], expected=120)
    delivered = a.accepted + b.accepted
    assert sorted(delivered) == sorted(ids)
    assert Counter(delivered).most_common(1)[0][1] == 1
    assert a.accepted and b.accepted  # both shared the work
    assert set((await queue_totals(settings)).values()) == {0}


async def test_failing_provider_loses_traffic_then_comes_back(sqs_endpoint: str) -> None:
    settings = pipeline_settings(sqs_endpoint)
    await create_queues(settings)
    good, bad = ScriptedProvider("good"), ScriptedProvider("bad", mode="fail")
    ids = await enqueue(settings, 60)
    async with create_queue_client(settings) as queues:
        async with PipelineNode(settings, queues, {"good": good, "bad": bad}) as node:
            per_iteration: list[int] = []
            while len(good.accepted) < 60:
                before = sum(bad.attempts.values())
                await node.run_iteration()
                per_iteration.append(sum(bad.attempts.values()) - before)
            assert node.health["bad"].state is CircuitState.UNHEALTHY
            # once unhealthy (after unhealthy_threshold=2 failing iterations) it got one probe each
            assert all(n <= 1 for n in per_iteration[2:])
            assert sorted(good.accepted) == sorted(ids)

            # it recovers: after healthy_threshold=2 good probes, it is healthy and shares again
            bad.mode = "ok"
            more: list[str] = []
            states = []
            while not node.health["bad"].healthy and len(states) < 20:
                more += await enqueue(settings, 10, start=100 + len(more))
                while len(good.accepted) + len(bad.accepted) < 60 + len(more):
                    await node.run_iteration()
                states.append(node.health["bad"].state)
            assert states[-1] is CircuitState.HEALTHY
            assert len(states) >= 2  # healthy_threshold good iterations were needed, not one
            probes = len(bad.accepted)
            more += await enqueue(settings, 40, start=1000)
            while len(good.accepted) + len(bad.accepted) < 60 + len(more):
                await node.run_iteration()
            assert len(bad.accepted) - probes >= 15  # it shares by weight again (about 20)
            assert sorted(good.accepted + bad.accepted) == sorted(ids + more)
    assert set((await queue_totals(settings)).values()) == {0}


async def test_hanging_provider_times_out_and_mail_goes_elsewhere(sqs_endpoint: str) -> None:
    settings = pipeline_settings(sqs_endpoint, send_timeout_s=0.5)
    await create_queues(settings)
    ids = await enqueue(settings, 30)
    ok, hung = ScriptedProvider("ok"), ScriptedProvider("hung", mode="hang")
    reports = await drain(settings, [ok, hung], expected=30)
    assert sorted(ok.accepted) == sorted(ids)
    assert any("hung" in r.changes for r in reports)
    assert set((await queue_totals(settings)).values()) == {0}


async def test_permanent_failure_recorded_in_dead_letter_queue_not_retried(sqs_endpoint: str) -> None:
    settings = pipeline_settings(sqs_endpoint)
    [url, _] = await create_queues(settings)
    ids = await enqueue(settings, 10)
    bad_ids = set(ids[:3])
    provider = ScriptedProvider("p", permanent_ids=bad_ids)
    reports = await drain(settings, [provider], expected=7)
    assert sorted(provider.accepted) == sorted(set(ids) - bad_ids)
    assert all(provider.attempts[i] == 1 for i in bad_ids)  # never retried
    assert sum(r.failed for r in reports) == 3
    assert node_health_untouched(reports)
    async with create_queue_client(settings) as queues:
        dead = []
        for queue in await queues.resolve_all():
            dlq = await queues.dead_letter_url(queue)
            for _ in range(5):
                dead += await queues.receive(dlq, wait_time_s=1)
    assert len(dead) == 3
    assert {m.attributes[FAILURE_KIND] for m in dead} == {"permanent"}
    assert all("550" in m.attributes[FAILURE_REASON] for m in dead)
    totals = await queue_totals(settings)
    assert [totals[q] for q in settings.queues.urls] == [0, 0]


def node_health_untouched(reports: list[Any]) -> bool:
    return not any(r.changes for r in reports)


async def test_poison_messages_reach_the_dead_letter_queue_and_the_node_goes_on(
    sqs_endpoint: str,
) -> None:
    settings = pipeline_settings(sqs_endpoint)
    [url, _] = await create_queues(settings)
    poison = ["not json", '{"v": 99, "id": "x"}', '{"v": 1, "id": "x"}', "[]"]
    async with create_queue_client(settings) as queues:
        await queues.send_batch(url, [(str(i), body) for i, body in enumerate(poison)])
    ids = await enqueue(settings, 6)
    provider = ScriptedProvider("p")
    reports = await drain(settings, [provider], expected=6)
    # the last poison may arrive after the last good email
    async with create_queue_client(settings) as queues:
        node = PipelineNode(settings, queues, {"p": provider})
        async with node:
            for _ in range(5):
                reports.append(await node.run_iteration())
        dlq = await queues.dead_letter_url(url)
        dead = []
        for _ in range(5):
            dead += await queues.receive(dlq, wait_time_s=1)
    assert sorted(provider.accepted) == sorted(ids)
    assert sorted(m.body for m in dead) == sorted(poison)
    assert {m.attributes[FAILURE_KIND] for m in dead} == {"unreadable"}
    assert sum(r.dead_lettered for r in reports) == 4


async def test_no_provider_releases_messages_back(sqs_endpoint: str) -> None:
    settings = pipeline_settings(sqs_endpoint)
    await create_queues(settings)
    await enqueue(settings, 5)
    async with create_queue_client(settings) as queues:
        async with PipelineNode(settings, queues, {}) as node:
            report = await node.run_iteration()
    assert report.read > 0 and report.retried == report.read
    assert sum((await queue_totals(settings)).values()) == 5


async def test_run_loop_delivers_then_stops_gracefully(sqs_endpoint: str) -> None:
    settings = pipeline_settings(sqs_endpoint, min_iteration_duration_s=0.01)
    await create_queues(settings)
    ids = await enqueue(settings, 200)
    slow = ScriptedProvider("slow", latency_s=0.05)
    async with create_queue_client(settings) as queues:
        node = PipelineNode(settings, queues, {"slow": slow})
        await node.resolve_queues()
        runner = asyncio.create_task(node.run())
        while len(slow.accepted) < 200:
            await asyncio.sleep(0.05)
        node.stop()
        await asyncio.wait_for(runner, 30)
    assert sorted(slow.accepted) == sorted(ids)
    assert set((await queue_totals(settings)).values()) == {0}


async def test_stop_mid_send_finishes_in_flight_then_exits(sqs_endpoint: str) -> None:
    settings = pipeline_settings(sqs_endpoint, send_timeout_s=2)
    await create_queues(settings)
    ids = await enqueue(settings, 20)
    slow = ScriptedProvider("slow", latency_s=0.5)
    async with create_queue_client(settings) as queues:
        node = PipelineNode(settings, queues, {"slow": slow})
        await node.resolve_queues()
        runner = asyncio.create_task(node.run())
        while not slow.attempts:
            await asyncio.sleep(0.01)
        node.stop()
        await asyncio.wait_for(runner, 30)
    # what was being sent was finished and deleted; nothing else was touched or lost
    totals = await queue_totals(settings)
    assert len(slow.accepted) + sum(totals.values()) == len(ids)
    assert slow.accepted


async def test_account_refusal_is_offered_to_another_provider_at_once(sqs_endpoint: str) -> None:
    # "unverified" refuses every sender (its account's fault, not the email's): each email
    # goes on to "ok" in the same iteration, with no retry and nothing dead-lettered.
    settings = pipeline_settings(sqs_endpoint, unhealthy_threshold=100)
    await create_queues(settings)
    ids = await enqueue(settings, 40)
    refusing, ok = ScriptedProvider("unverified", mode="account"), ScriptedProvider("ok")
    reports = await drain(settings, [refusing, ok], expected=40)
    assert sorted(ok.accepted) == sorted(ids)
    assert sum(refusing.attempts.values()) > 0  # it had its share first
    assert sum(r.retried for r in reports) == 0
    assert set((await queue_totals(settings)).values()) == {0}


class CrashingProvider(ScriptedProvider):
    async def send(self, envelope: Envelope) -> SendResult:
        raise RuntimeError("a bug in the provider")


@pytest.mark.parametrize(
    ("provider", "reason"),
    [
        (CrashingProvider("crash"), "RuntimeError: a bug in the provider"),
        (ScriptedProvider("hang", mode="hang", timeout_s=0.2), "timed out after 0.2 s"),
        (ScriptedProvider("hang", mode="hang"), "timed out after 0.3 s"),
    ],
)
async def test_the_lane_turns_a_crash_or_a_hang_into_a_transient_result(
    provider: ScriptedProvider, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    lane = ProviderLane(provider, timeout_s=0.3, in_flight=asyncio.Semaphore(1))
    result = await lane.send_one(make_envelope())
    assert (result.provider, result.outcome, result.reason) == (
        provider.name,
        Outcome.TRANSIENT,
        reason,
    )
    if isinstance(provider, CrashingProvider):
        assert "provider crash raised instead of answering" in caplog.text


# -- the lease: count from the receive, keep it while working, never send on a lapsed one ------


async def test_a_slow_batch_keeps_its_lease_and_no_other_node_gets_its_messages(
    sqs_endpoint: str,
) -> None:
    # 12 sends one at a time, 0.4 s each: about 5 s, more than twice the visibility timeout.
    settings = pipeline_settings(sqs_endpoint)
    settings = settings.model_copy(
        update={"queues": settings.queues.model_copy(update={"visibility_timeout_s": 2})}
    )
    await create_queues(settings)
    ids = await enqueue(settings, 12)
    slow = ScriptedProvider("slow", latency_s=0.4, max_concurrency=1)
    seen_elsewhere: list[str] = []
    async with create_queue_client(settings) as queues:
        urls = await queues.resolve_all()
        async with PipelineNode(settings, queues, {"slow": slow}) as node:
            batch: list[ReceivedMessage] = []
            for _ in range(50):  # everything in one batch, as one dispatch
                for url in urls:
                    batch += await queues.receive(url, wait_time_s=0)
                if len(batch) == 12:
                    break
            assert len(batch) == 12
            sending = asyncio.create_task(node.dispatch(batch))
            while not sending.done():  # another node, polling the same queues meanwhile
                for url in urls:
                    seen_elsewhere += [m.body for m in await queues.receive(url, wait_time_s=0)]
                await asyncio.sleep(0.1)
            report = await sending
            assert node.leases.renewals > 0
    assert seen_elsewhere == []
    assert sorted(slow.accepted) == sorted(ids) and report.retried == 0
    assert set((await queue_totals(settings)).values()) == {0}


async def test_a_message_whose_lease_ran_out_is_neither_sent_nor_released(
    sqs_endpoint: str,
) -> None:
    # A node paused (SIGSTOP) or starved past the visibility timeout: when it resumes, the
    # messages it held may be another node's. It must not send them, nor release them.
    settings = pipeline_settings(sqs_endpoint)
    settings = settings.model_copy(
        update={"queues": settings.queues.model_copy(update={"visibility_timeout_s": 2})}
    )
    await create_queues(settings)
    ids = await enqueue(settings, 4)
    provider = ScriptedProvider("p")
    async with create_queue_client(settings) as queues:
        urls = await queues.resolve_all()
        batch = [m for url in urls for m in await queues.receive(url, wait_time_s=1)]
        assert len(batch) == 4
        lapsed = [dataclasses.replace(m, received_at=m.received_at - 10) for m in batch]
        async with PipelineNode(settings, queues, {"p": provider}) as node:
            report = await node.dispatch(lapsed)
            assert node.leases.broken == 4
        assert provider.attempts == Counter()  # nothing sent
        assert report.retried == 4
        # not released either: each comes back only once its own visibility timeout is over
        assert await queues.receive(urls[0], wait_time_s=0) == []
    await asyncio.sleep(2.5)
    provider2 = ScriptedProvider("p2")
    await drain(settings, [provider2], expected=4)
    assert sorted(provider2.accepted) == sorted(ids)


async def test_a_long_poll_answered_late_counts_its_lease_from_the_receive(
    sqs_endpoint: str,
) -> None:
    settings = pipeline_settings(sqs_endpoint)
    await create_queues(settings)
    await enqueue(settings, 1)
    provider = ScriptedProvider("p")
    async with create_queue_client(settings) as queues:
        urls = await queues.resolve_all()
        received = [m for url in urls for m in await queues.receive(url, wait_time_s=1)]
        assert len(received) == 1 and received[0].received_at > 0
        async with PipelineNode(settings, queues, {"p": provider}) as node:
            # dispatched 9 s after the receive (visibility 10 s): 1 s left, less than a send
            # needs (1 s), so the lease is renewed first, then the email sent
            late = [dataclasses.replace(m, received_at=m.received_at - 8.2) for m in received]
            report = await node.dispatch(late)
            assert node.leases.renewals == 1
    assert len(provider.accepted) == 1 and report.retried == 0
