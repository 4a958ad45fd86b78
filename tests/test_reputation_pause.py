"""Providers held for their reputation (pipeline.sending.reputation) on a real pipeline node over
LocalStack's SQS: once every provider is held, sending pauses (nothing received, sent, deleted or
dead-lettered: the mail waits on the queue), logged at CRITICAL once and exported; an operator's
release (gomail provider release, through the controls) lets mail flow again through that
provider only. Waits are for outcomes; the one fixed wait gives a paused node many chances to
misbehave."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

import pytest

from gomailpy import metrics
from gomailpy.config.feedback import ReputationSettings
from gomailpy.events import Event, EventType
from gomailpy.operating.controls import ControlStore
from gomailpy.queues.sqs import create_queue_client, queue_name
from gomailpy.store.items import MemoryItemTable
from pipeline.node import PipelineNode
from pipeline.sending.reputation import ReputationGuard
from pipeline.steering import open_steering
from tests.boundary import ScriptedProvider
from tests.support import create_queues, enqueue, merge, queue_totals, unique
from tests.test_controls_nodes import until
from tests.test_pipeline import pipeline_settings

NAMES = ("ses", "sendgrid", "smtp")
PAUSED_S = 2.0  # how long the paused node runs (a pause check every 0.5 s, a poll every 0.2 s)


def hard_bounces(provider: str, count: int) -> list[Event]:
    return [
        Event(
            id=unique("bounce"),
            message_id=None,
            recipient=f"gone{n}@example.org",
            provider=provider,
            type=EventType.BOUNCED,
            at="2026-01-01T00:00:00Z",
            subtype="hard",
        )
        for n in range(count)
    ]


def paused_gauge() -> float:
    return metrics.sample("gomailpy_sending_paused", {"reason": "reputation"})


async def test_every_provider_held_pauses_sending_until_an_operator_releases_one(
    sqs_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = pipeline_settings(sqs_endpoint, min_iteration_duration_s=0.01)
    settings = type(base).model_validate(
        merge(base.model_dump(mode="python"), {"steering": {"controls_poll_s": 0.2}})
    )
    urls = await create_queues(settings)
    names = [queue_name(url) for url in urls]
    store = ControlStore(MemoryItemTable())
    providers = {name: ScriptedProvider(name) for name in NAMES}

    def sent() -> dict[str, int]:
        return {name: len(p.accepted) for name, p in providers.items()}

    def received() -> float:
        return sum(metrics.sample("gomailpy_messages_received_total", {"queue": n}) for n in names)

    caplog.set_level(logging.INFO, "gomailpy")
    async with AsyncExitStack() as stack:
        queues = await stack.enter_async_context(create_queue_client(settings))
        node = await stack.enter_async_context(PipelineNode(settings, queues, providers))
        await open_steering(stack, settings, node, store)
        reputation = ReputationSettings(window=100, min_sample=5, hold_s=3600)
        guard = ReputationGuard(reputation, node.health)
        run = asyncio.create_task(node.run())

        await enqueue(settings, 30)
        await until(lambda: sum(sent().values()) == 30, "the first mail")
        assert all(count >= 5 for count in sent().values()), sent()

        # Every provider past its bounce threshold: all held, sending pauses.
        guard.observe([e for name in NAMES for e in hard_bounces(name, 5)])
        assert all(node.health[name].held for name in NAMES)
        await until(lambda: node.paused_by == "reputation", "the pause")
        assert paused_gauge() == 1
        await asyncio.sleep(0.5)  # the long poll open when the pause began comes back and stops
        before_sent, before_received = sent(), received()
        await enqueue(settings, 40, start=30)
        await asyncio.sleep(PAUSED_S)
        assert sent() == before_sent  # not one send, not even a probe
        assert received() == before_received  # not received: no receive counts towards the DLQ
        totals = await queue_totals(settings)
        assert sum(totals[name] for name in names) == 40  # all still on the queues
        assert sum(total for name, total in totals.items() if name not in names) == 0  # no DLQ
        paused_lines = [r for r in caplog.records if r.getMessage().startswith("sending paused")]
        assert len(paused_lines) == 1 and paused_lines[0].levelno == logging.CRITICAL
        assert "hard bounce rate" in paused_lines[0].getMessage()

        # An operator releases ses: the mail flows through it, and only through it.
        await store.change("ses", "release", who="alice", why="list cleaned, case 7")
        await until(lambda: sent()["ses"] == before_sent["ses"] + 40, "mail after the release")
        after = sent()
        assert (after["sendgrid"], after["smtp"]) == (before_sent["sendgrid"], before_sent["smtp"])
        assert node.paused_by is None and paused_gauge() == 0
        assert "sending resumed: ses" in caplog.text
        assert "provider ses released from its reputation hold" in caplog.text
        guard.evaluate()  # the guard starts ses's rates afresh and keeps the others held
        assert node.health["ses"].held is None
        assert node.health["sendgrid"].held and node.health["smtp"].held
        assert metrics.sample("gomailpy_provider_reputation_held", {"provider": "ses"}) == 0
        node.stop()
        await run
    assert set((await queue_totals(settings)).values()) == {0}
    [release] = await store.history("ses")
    assert (release.action, release.by, release.reason) == (
        "release",
        "alice",
        "list cleaned, case 7",
    )


async def test_a_paused_node_reads_nothing_in_its_iterations(sqs_endpoint: str) -> None:
    settings = pipeline_settings(sqs_endpoint)
    await create_queues(settings)
    await enqueue(settings, 10)
    providers = {name: ScriptedProvider(name) for name in NAMES}
    async with create_queue_client(settings) as queues:
        async with PipelineNode(settings, queues, providers) as node:
            for health in node.health.values():
                health.held = "complaint rate 0.2% > 0.08%"
            for _ in range(20):
                report = await node.run_iteration()
                assert report.read == 0
            assert node.paused_by == "reputation"
            node.health["smtp"].release()
            while len(providers["smtp"].accepted) < 10:
                await node.run_iteration()
            assert node.paused_by is None
    assert providers["ses"].attempts == providers["sendgrid"].attempts == {}
    assert set((await queue_totals(settings)).values()) == {0}
