"""Dead letters: `gomail dlq list` shows what failed and why; `gomail dlq redrive` puts it back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from click.testing import CliRunner

from gomailpy.config.settings import Settings
from gomailpy.queues.sqs import create_queue_client
from gomailpy_cli.main import cli
from pipeline.node import PipelineNode
from tests.boundary import ScriptedProvider
from tests.support import create_queues, enqueue, make_settings, queue_totals


def config_file(tmp_path: Path, settings: Settings) -> Path:
    path = tmp_path / "gomailpy.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "aws": {"endpoint_url": settings.aws.endpoint_url, "region": "us-east-1"},
                "queues": {"urls": settings.queues.urls, "wait_time_s": 1},
            }
        )
    )
    return path


async def test_list_and_redrive_dead_letters(sqs_endpoint: str, tmp_path: Path) -> None:
    settings = make_settings(
        sqs_endpoint, pipeline={"retry_base_delay_s": 0, "min_iteration_duration_s": 0}
    )
    [url, _] = await create_queues(settings)
    ids = await enqueue(settings, 6)
    refused = set(ids[:4])
    async with create_queue_client(settings) as queues:
        await queues.send(url, "garbage, not an envelope")
        provider = ScriptedProvider("p", permanent_ids=refused)
        async with PipelineNode(settings, queues, {"p": provider}) as node:
            for _ in range(10):
                await node.run_iteration()
                if len(provider.accepted) == 2 and sum(provider.attempts.values()) == 6:
                    break
    totals = await queue_totals(settings)
    assert sum(totals[q + "-dlq"] for q in settings.queues.urls) == 5
    config = config_file(tmp_path, settings)
    runner = CliRunner()

    listed = await asyncio.to_thread(runner.invoke, cli, ["dlq", "list", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    assert "5 dead letter(s)" in listed.output
    for message_id in refused:
        line = next(line for line in listed.output.splitlines() if message_id in line)
        assert "permanent at p: 550 no such user" in line
    assert "(unreadable)" in listed.output and "not JSON" in listed.output
    # listing changed nothing
    assert await queue_totals(settings) == totals

    moved = await asyncio.to_thread(runner.invoke, cli, ["dlq", "redrive", "--config", str(config)])
    assert moved.exit_code == 0, moved.output
    assert "moved 4 message(s)" in moved.output and "1 unreadable left" in moved.output

    # the provider now takes them: every email delivered, the unreadable one still dead
    provider.permanent_ids.clear()
    async with create_queue_client(settings) as queues:
        async with PipelineNode(settings, queues, {"p": provider}) as node:
            for _ in range(10):
                await node.run_iteration()
                if len(provider.accepted) == 6:
                    break
    assert sorted(provider.accepted) == sorted(ids)
    totals = await queue_totals(settings)
    assert sum(totals[q] for q in settings.queues.urls) == 0
    assert sum(totals[q + "-dlq"] for q in settings.queues.urls) == 1
