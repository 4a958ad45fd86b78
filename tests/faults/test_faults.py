"""The fault suite: real API and pipeline processes, a real queue server, faults injected.

Each scenario prints its counters (acknowledged, delivered, lost, duplicates, HTTP 5xx) and
asserts: nothing acknowledged is lost, no HTTP 500, duplicates only where SQS's at-least-once
delivery allows them (a node that died or lost the queue between a send and its delete).
GOMAILPY_FAULT_EMAILS sets the emails per scenario (default 2000).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gomailpy.queue import create_queue_client
from gomailpy.settings import Settings
from tests.faults.harness import Counts, System, running_system

GOMAIL = [sys.executable, "-m", "gomailpy.cli"]
EMAILS = int(os.environ.get("GOMAILPY_FAULT_EMAILS", "2000"))

pytestmark = pytest.mark.slow


def report(name: str, counts: Counts, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + counts.line(name), flush=True)


def assert_nothing_lost(system: System, counts: Counts, *, duplicates_allowed: int = 0) -> None:
    assert counts.acknowledged > 0
    assert counts.lost == 0, f"lost {counts.lost}; api log:\n{system.log('api')}"
    assert counts.http_500 == 0
    assert counts.duplicates <= duplicates_allowed


async def until(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.1)


async def test_provider_failing_then_recovering(
    sqs_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_system(sqs_endpoint, tmp_path) as system:
        system.smtp.set_mode("fail")
        stop = asyncio.Event()
        watcher = asyncio.create_task(system.watch_states(stop))
        await system.post(EMAILS // 2)
        await until(lambda: "unhealthy" in system.seen_states.get("smtp", set()))
        smtp_during_outage = len(system.smtp.messages)
        system.smtp.set_mode("ok")
        await system.post(EMAILS // 2)
        await system.wait_delivered()
        stop.set()
        await watcher
        counts = system.counts()
        report("provider failing, then recovering", counts, capsys)
        assert_nothing_lost(system, counts)
        assert smtp_during_outage == 0  # it failed every send while down
        assert counts.per_provider["smtp"] > 0  # traffic came back after it recovered
        assert system.seen_states["smtp"] == {"healthy", "unhealthy"}
        assert counts.http_500 == 0


async def test_provider_hanging(
    sqs_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_system(sqs_endpoint, tmp_path) as system:
        system.sendgrid.set_mode("hang")
        stop = asyncio.Event()
        watcher = asyncio.create_task(system.watch_states(stop))
        await system.post(EMAILS)
        await system.wait_delivered()
        stop.set()
        await watcher
        counts = system.counts()
        report("provider hanging", counts, capsys)
        assert_nothing_lost(system, counts)
        assert counts.per_provider["sendgrid"] == 0
        assert "unhealthy" in system.seen_states["sendgrid"]
        assert counts.http_500 == 0


async def test_queue_server_unreachable_for_a_while(
    sqs_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_system(sqs_endpoint, tmp_path) as system:
        load = asyncio.create_task(system.post(EMAILS, concurrency=16))
        await until(lambda: len(system.smtp.messages) + len(system.sendgrid.messages) > 50)
        await system.proxy.cut()
        await asyncio.sleep(4)
        await system.proxy.restore()
        tally = await load
        after = await system.post(100)  # both recover by themselves
        await system.wait_delivered()
        counts = system.counts()
        report("queue server unreachable for 4 s", counts, capsys)
        # 503 for what could not be queued: never a 200 for an email that was not
        assert set(tally.statuses) <= {200, 503}
        assert tally.statuses.get(503, 0) > 0
        assert after.statuses == {200: 100}
        # a delete lost with the connection is the one duplicate SQS allows
        assert_nothing_lost(system, counts, duplicates_allowed=2 * 100)


async def test_node_killed_mid_batch(
    sqs_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_system(sqs_endpoint, tmp_path, nodes=3) as system:
        load = asyncio.create_task(system.post(EMAILS))
        await until(lambda: len(system.smtp.messages) + len(system.sendgrid.messages) > 200)
        victim = system.nodes[0]
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        await load
        await system.wait_delivered()
        counts = system.counts()
        report("pipeline node killed with SIGKILL (3 nodes)", counts, capsys)
        assert victim.returncode == -signal.SIGKILL
        # what the dead node had sent but not deleted comes back: at most its max_in_flight
        assert_nothing_lost(system, counts, duplicates_allowed=100)
        assert counts.http_500 == 0


async def test_poison_messages_go_to_the_dead_letter_queue(
    sqs_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_system(sqs_endpoint, tmp_path) as system:
        settings = Settings.model_validate(
            {**system.settings_data, "providers": {"smtp": {"enabled": False}}}
        )
        poison = ["not json", '{"v": 2}', '{"v": 1, "id": "x", "email": {}}', "[1, 2]"]
        async with create_queue_client(settings) as queues:
            url = await queues.resolve(settings.queues.urls[0])
            await queues.send_batch(url, [(str(i), body) for i, body in enumerate(poison)])
            await system.post(EMAILS // 4)
            await system.wait_delivered()
            dlq = await queues.dead_letter_url(url)
            dead: list[str] = []
            for _ in range(20):
                dead += [m.body for m in await queues.receive(dlq, wait_time_s=1)]
                if len(dead) >= len(poison):
                    break
        counts = system.counts()
        report("poison messages", counts, capsys)
        assert sorted(dead) == sorted(poison)
        assert_nothing_lost(system, counts)
        assert all(node.returncode is None for node in system.nodes)  # they kept going


async def test_all_providers_down_then_back_with_redrive(
    sqs_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_system(
        sqs_endpoint,
        tmp_path,
        queues={"max_receive_count": 3},
        pipeline={"retry_base_delay_s": 0.1, "retry_max_delay_s": 0.5},
    ) as system:
        system.smtp.set_mode("fail")
        system.sendgrid.set_mode("fail")
        settings = Settings.model_validate(
            {**system.settings_data, "providers": {"smtp": {"enabled": False}}}
        )
        await system.post(EMAILS // 4)
        # messages go round until SQS moves them to the dead-letter queues (3 deliveries)
        async with create_queue_client(settings) as queues:

            async def dead_total() -> int:
                total = 0
                for entry in settings.queues.urls:
                    url = await queues.resolve(entry)
                    total += (await queues.depth(await queues.dead_letter_url(url))).total
                return total

            for _ in range(120):
                if await dead_total() > 0:
                    break
                await asyncio.sleep(0.5)
            assert await dead_total() > 0
        assert len(system.smtp.messages) + len(system.sendgrid.messages) == 0

        system.smtp.set_mode("ok")
        system.sendgrid.set_mode("ok")
        listed = await asyncio.create_subprocess_exec(
            *GOMAIL, "dlq", "list", "--config", str(system.config),
            stdout=asyncio.subprocess.PIPE, env=system.env(),
        )
        listing = (await listed.communicate())[0].decode()
        assert "dead letter(s)" in listing and "retries-exhausted" in listing
        # Messages still going round may reach a dead-letter queue after a redrive: redrive
        # until every acknowledged email has arrived, as an operator would.
        for _ in range(10):
            redrive = await asyncio.create_subprocess_exec(
                *GOMAIL, "dlq", "redrive", "--config", str(system.config),
                stdout=asyncio.subprocess.PIPE, env=system.env(),
            )
            output = (await redrive.communicate())[0].decode()
            assert redrive.returncode == 0 and "moved" in output
            await system.wait_delivered(timeout_s=15)
            if system.counts().lost == 0:
                break
        counts = system.counts()
        report("all providers down, then back (+ gomail dlq redrive)", counts, capsys)
        assert_nothing_lost(system, counts)


async def test_three_nodes_share_the_queues(
    sqs_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No fault: three `pipeline` processes on the same queues, every email delivered once."""
    async with running_system(sqs_endpoint, tmp_path, nodes=3) as system:
        await system.post(EMAILS)
        await system.wait_delivered()
        counts = system.counts()
        report("three pipeline nodes, no fault", counts, capsys)
        assert_nothing_lost(system, counts, duplicates_allowed=0)
        assert counts.delivered == EMAILS
