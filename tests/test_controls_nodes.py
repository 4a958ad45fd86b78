"""Two pipeline nodes on the real SQS server obey the operator's controls within a few seconds:
a disabled provider gets nothing, a pin takes all traffic; the change and its reason are logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack

import pytest

from gomailpy.operating.controls import ControlStore
from gomailpy.queues.sqs import create_queue_client
from gomailpy.store.items import MemoryItemTable
from pipeline.node import PipelineNode
from pipeline.steering import ControlPoller, open_steering
from tests.boundary import ScriptedProvider
from tests.support import create_queues, enqueue, merge, queue_totals
from tests.test_pipeline import pipeline_settings


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Wait for `condition` (an outcome, not a timing: the bound only keeps a broken run short)."""
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


async def test_every_node_honours_disable_and_pin_within_a_few_seconds(
    sqs_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = pipeline_settings(sqs_endpoint, min_iteration_duration_s=0.01)
    settings = type(base).model_validate(
        merge(base.model_dump(mode="python"), {"steering": {"controls_poll_s": 0.2}})
    )
    await create_queues(settings)
    store = ControlStore(MemoryItemTable())  # shared by both nodes, as the status table is
    providers = [
        {name: ScriptedProvider(name) for name in ("ses", "sendgrid", "smtp")} for _ in range(2)
    ]

    def sent(name: str) -> int:
        return sum(len(node[name].accepted) for node in providers)

    def delivered() -> int:
        return sum(sent(name) for name in ("ses", "sendgrid", "smtp"))

    caplog.set_level(logging.INFO, "gomailpy")
    async with AsyncExitStack() as stack:
        pollers: list[ControlPoller] = []
        nodes: list[PipelineNode] = []
        for own in providers:
            queues = await stack.enter_async_context(create_queue_client(settings))
            node = await stack.enter_async_context(PipelineNode(settings, queues, own))
            pollers.append(await open_steering(stack, settings, node, store))
            nodes.append(node)
        runs = [asyncio.create_task(node.run()) for node in nodes]
        await enqueue(settings, 60)
        await until(lambda: delivered() == 60, "first mail")
        assert sent("ses") > 0

        await store.change("ses", "disable", who="alice", why="SES outage, case 42")
        await until(lambda: all(p.steering.controls.of("ses").disabled for p in pollers), "poll")
        before = sent("ses")
        await enqueue(settings, 60, start=60)
        await until(lambda: delivered() == 120, "while ses is disabled")
        assert sent("ses") == before  # not one more, on either node
        assert sent("sendgrid") > 0 and sent("smtp") > 0

        await store.change("smtp", "pin", who="bob", why="drill")
        await until(lambda: all(p.steering.controls.pin.provider == "smtp" for p in pollers), "pin")
        counts = {name: sent(name) for name in ("ses", "sendgrid")}
        await enqueue(settings, 40, start=120)
        await until(lambda: delivered() == 160, "while pinned")
        assert {name: sent(name) for name in ("ses", "sendgrid")} == counts
        for node in nodes:
            node.stop()
        await asyncio.gather(*runs)
    assert set((await queue_totals(settings)).values()) == {0}
    assert "controls: ses disable by alice: SES outage, case 42" in caplog.text  # the change
    assert "controls: ses: disabled (by alice" in caplog.text  # each node, as it applies it
    assert "controls: pinned to smtp (by bob" in caplog.text
