"""What the bulk tests share: settings with bulk links on, the events queue's bodies."""

from __future__ import annotations

import json
from typing import Any

from gomailpy.config.settings import Settings
from gomailpy.events import Event
from gomailpy.feedback.parse import parse_report
from gomailpy.queues.sqs import create_queue_client
from tests.support import create_queues, make_settings, merge, unique

SECRET = "s" * 40
PUBLIC = "https://mail.example.com"


async def bulk_settings(sqs: str, **sections: Any) -> Settings:
    base: dict[str, Any] = {
        "api": {"serve_webclient": False},
        "status": {"backend": "memory"},
        "events": {"enabled": True, "queue": unique("events")},
        "bulk": {"secret": SECRET, "public_url": PUBLIC, "flush_interval_s": 0.1},
    }
    settings = make_settings(sqs, queue_count=1, **merge(base, sections))
    await create_queues(settings)
    async with create_queue_client(settings) as queues:
        await queues.ensure_queue(settings.events.queue)
    return settings


async def queued_events(settings: Settings, wait_s: int = 1) -> list[Event]:
    events: list[Event] = []
    async with create_queue_client(settings) as queues:
        url = await queues.resolve(settings.events.queue)
        for _ in range(3):
            messages = await queues.receive(url, wait_time_s=wait_s, visibility_timeout_s=60)
            for message in messages:
                assert json.loads(message.body)["source"] == "gomailpy"
                events += parse_report(message.body)
            if not messages:
                break
    return events


def path_of(url: str) -> str:
    assert url.startswith(PUBLIC)
    return url[len(PUBLIC) :]
