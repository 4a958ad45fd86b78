"""The SQS queue layer against the real SQS server of the test bed (LocalStack)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gomailpy.config.settings import Settings
from gomailpy.errors import QueueError
from gomailpy.queues.sqs import QueueClient, create_queue_client, queue_name
from tests.support import create_queues, make_settings


@pytest.fixture
def settings(sqs_endpoint: str) -> Settings:
    return make_settings(sqs_endpoint, queue_count=1)


async def receive_all(
    queues: QueueClient, url: str, *, expected: int, visibility_s: int = 30
) -> list:
    got: list = []
    for _ in range(20):
        got += await queues.receive(url, wait_time_s=1, visibility_timeout_s=visibility_s)
        if len(got) >= expected:
            break
    return got


async def test_batch_of_ten_sent_received_deleted(settings: Settings) -> None:
    [url] = await create_queues(settings)
    async with create_queue_client(settings) as queues:
        sent = await queues.send_batch(url, [(str(i), f"message {i}") for i in range(10)])
        assert sorted(sent.ok) == sorted(str(i) for i in range(10)) and not sent.failed

        received = await receive_all(queues, url, expected=10)
        assert sorted(m.body for m in received) == sorted(f"message {i}" for i in range(10))
        assert all(m.receive_count == 1 for m in received)

        deleted = await queues.delete_batch(url, [m.receipt_handle for m in received])
        assert len(deleted.ok) == 10 and not deleted.failed
        depth = await queues.depth(url)
        assert (depth.visible, depth.in_flight) == (0, 0)


async def test_send_batch_splits_into_calls_of_ten(settings: Settings) -> None:
    [url] = await create_queues(settings)
    async with create_queue_client(settings) as queues:
        sent = await queues.send_batch(url, [(str(i), "x") for i in range(25)])
        assert len(sent.ok) == 25
        assert (await queues.depth(url)).visible == 25


async def test_undeleted_message_comes_back_after_its_visibility_timeout(
    settings: Settings,
) -> None:
    [url] = await create_queues(settings)
    async with create_queue_client(settings) as queues:
        await queues.send(url, "come back")
        [first] = await receive_all(queues, url, expected=1, visibility_s=1)
        assert await queues.receive(url, wait_time_s=0) == []  # hidden while in flight
        # LocalStack expires a 1 s visibility after about 1.9 s (shared/TESTBED.md)
        [again] = await receive_all(queues, url, expected=1)
        assert again.body == "come back"
        assert again.sqs_message_id == first.sqs_message_id
        assert again.receive_count == 2


async def test_visibility_zero_releases_at_once(settings: Settings) -> None:
    [url] = await create_queues(settings)
    async with create_queue_client(settings) as queues:
        await queues.send(url, "release me")
        [message] = await receive_all(queues, url, expected=1, visibility_s=300)
        changed = await queues.change_visibility_batch(url, [(message.receipt_handle, 0)])
        assert changed.ok == {"0": ""}
        again = await queues.receive(url, wait_time_s=1)
        assert [m.body for m in again] == ["release me"]


async def test_depth_counts_visible_and_in_flight(settings: Settings) -> None:
    [url] = await create_queues(settings)
    async with create_queue_client(settings) as queues:
        await queues.send_batch(url, [(str(i), "x") for i in range(7)])
        await receive_all(queues, url, expected=3, visibility_s=300)
        depth = await queues.depth(url)
        assert depth.visible + depth.in_flight == 7
        assert depth.in_flight >= 3
        assert depth.total == 7


async def test_message_received_too_often_lands_in_the_dead_letter_queue(sqs_endpoint: str) -> None:
    settings = make_settings(sqs_endpoint, queue_count=1, queues={"max_receive_count": 2})
    [url] = await create_queues(settings)
    async with create_queue_client(settings) as queues:
        await queues.send(url, "poison")
        dlq = await queues.dead_letter_url(url)
        assert queue_name(dlq) == queue_name(url) + "-dlq"
        for _ in range(2):  # received twice, never deleted, released at once
            [message] = await receive_all(queues, url, expected=1)
            await queues.change_visibility_batch(url, [(message.receipt_handle, 0)])
        dead = []
        for _ in range(10):  # the third receive moves it to the DLQ instead of returning it
            assert await queues.receive(url, wait_time_s=0) == []
            dead = await queues.receive(dlq, wait_time_s=1)
            if dead:
                break
        assert [m.body for m in dead] == ["poison"]


async def test_ensure_queue_is_idempotent_and_sets_the_redrive_policy(sqs_endpoint: str) -> None:
    settings = make_settings(sqs_endpoint, queue_count=1, queues={"max_receive_count": 4})
    first = await create_queues(settings)
    second = await create_queues(settings)
    assert first == second
    async with create_queue_client(settings) as queues:
        answer = await queues.client.get_queue_attributes(QueueUrl=first[0], AttributeNames=["All"])
    attributes = answer["Attributes"]
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] in (4, "4")
    assert attributes["VisibilityTimeout"] == "30"


async def test_resolve_names_and_urls(settings: Settings) -> None:
    [url] = await create_queues(settings)
    async with create_queue_client(settings) as queues:
        assert await queues.resolve(settings.queues.urls[0]) == url
        assert await queues.resolve(url) == url
        assert await queues.resolve_all() == [url]
        with pytest.raises(QueueError) as caught:
            await queues.resolve("no-such-queue-here")
        assert caught.value.queue == "no-such-queue-here"
        assert caught.value.operation == "get_queue_url"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_gives_the_wrapped_error_not_a_hang() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    settings = make_settings(endpoint, queue_count=1, aws={"client_timeout_s": 1})
    url = f"{endpoint}/000000000000/{settings.queues.urls[0]}"
    async with create_queue_client(settings) as queues:
        for call in (
            queues.send(url, "x"),
            queues.receive(url, wait_time_s=0),
            queues.depth(url),
            queues.delete_batch(url, ["handle"]),
        ):
            with pytest.raises(QueueError) as caught:
                await asyncio.wait_for(call, timeout=30)  # a guard against a hang, not a timing
            assert caught.value.queue == settings.queues.urls[0]
            assert "Could not connect" in caught.value.reason or "Connect" in caught.value.reason


def test_gomail_init_creates_queues_and_is_safe_to_run_twice(
    sqs_endpoint: str, tmp_path: Path
) -> None:
    config = tmp_path / "gomailpy.yaml"
    config.write_text(
        f"aws:\n  endpoint_url: {sqs_endpoint}\nqueues:\n  urls: [init-a, init-b]\n",
        encoding="utf-8",
    )
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "gomailpy_cli.main", "init", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert len(lines) == 2
        assert lines[0].startswith("ready: ") and "/init-a (dead-letter queue: " in lines[0]
