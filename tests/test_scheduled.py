"""Scheduled sends: held on the queue itself until due (SQS delays, re-sent hop by hop), through
a restart of the node, and cancelled before they are due (SQS on LocalStack, the status table
on moto's DynamoDB, the real API and node; the provider scripted at the boundary)."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import pytest

from gomailpy.config.settings import Settings
from gomailpy.email.schedule import MAX_HOP_S, SendAtError, next_hop_s, parse_send_at, take_send_at
from gomailpy.errors import InvalidEmailError
from gomailpy.operating.resources import ensure_resources
from gomailpy.providers.base import SendResult
from gomailpy.queues.sqs import create_queue_client
from tests.boundary import ScriptedProvider
from tests.support import Client, api_client, create_queues, queue_totals
from tests.test_templates import AUTH, start_node, table_settings

AHEAD_S = 4  # a few seconds: long enough to see the email held, short enough for a test


class ClockedProvider(ScriptedProvider):
    """Notes when (wall clock) it accepted each email."""

    def __init__(self) -> None:
        super().__init__("clocked")
        self.sent_at: dict[str, float] = {}

    async def send(self, envelope: Any) -> SendResult:
        result = await super().send(envelope)
        if result.ok:
            self.sent_at[envelope.id] = time.time()
        return result


@pytest.fixture
async def settings(sqs_endpoint: str, moto_endpoint: str) -> Settings:
    settings = table_settings(sqs_endpoint, moto_endpoint)
    await create_queues(settings)
    await ensure_resources(settings)
    return settings


async def schedule(client: Client, send_at: Any) -> str:
    body = {
        "email": {
            "fromEmail": "sender@example.com",
            "toEmail": "later@example.org",
            "subject": "Later",
            "body": "Scheduled",
            "sendAt": send_at,
        }
    }
    response = await client.post("/email/send", json=body, headers=AUTH)
    assert response.status == 200, await response.text()
    message_id: str = (await response.json())["messageId"]
    return message_id


# -- the rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (1000 + 60, 1060.0),
        (500, None),  # in the past: now
        (datetime.fromtimestamp(1060, UTC).isoformat().replace("+00:00", "Z"), 1060.0),
    ],
)
def test_send_at_is_epoch_seconds_or_iso_8601(value: Any, expected: float | None) -> None:
    assert parse_send_at(value, 1000.0) == expected


@pytest.mark.parametrize("value", [1000 + 72 * 3600 + 1, "2026-11-28T09:00:00", "soon", True])
def test_unusable_send_times_are_refused(value: Any) -> None:
    with pytest.raises(SendAtError):
        parse_send_at(value, 1000.0)


def test_hops_are_at_most_15_minutes_and_end_when_due() -> None:
    assert next_hop_s(1000 + 3 * 3600, 1000) == MAX_HOP_S
    assert next_hop_s(1000.2, 1000) == 1  # rounded up: never early
    assert next_hop_s(1000, 1000) == 0


def test_send_at_leaves_the_email_fields_with_a_field_error() -> None:
    data: dict[str, Any] = {"email": {"sendAt": "nope", "toEmail": "a@example.org"}}
    with pytest.raises(InvalidEmailError) as refused:
        take_send_at(data, 1000.0)
    assert "sendAt" in refused.value.errors
    data = {"email": {"sendAt": 1010, "toEmail": "a@example.org"}}
    assert take_send_at(data, 1000.0) == 1010.0 and data == {"email": {"toEmail": "a@example.org"}}


# -- through the queue ---------------------------------------------------------------------------


async def test_a_scheduled_send_arrives_after_its_time_through_a_restart(
    settings: Settings, stack: AsyncExitStack
) -> None:
    client = await api_client(stack, settings)
    # Longer ahead than the other tests: the first life (a node started, one iteration) must end
    # before the email is due, also on a slow machine.
    send_at = time.time() + 2 * AHEAD_S
    message_id = await schedule(client, send_at)
    provider = ClockedProvider()
    async with AsyncExitStack() as first_life:
        node = await start_node(first_life, settings, provider)
        await node.run_iteration()  # takes it and puts it back with a delay
    assert provider.attempts == {}
    assert sum((await queue_totals(settings)).values()) == 1  # held on the queue, nowhere else
    # A new node, with nothing from the first one but the queue.
    node = await start_node(stack, settings, provider)
    for _ in range(30):
        await node.run_iteration()
        if provider.sent_at:
            break
    assert list(provider.sent_at) == [message_id]
    assert provider.sent_at[message_id] >= send_at
    assert provider.attempts[message_id] == 1
    assert sum((await queue_totals(settings)).values()) == 0


async def test_a_cancelled_send_is_never_sent(settings: Settings, stack: AsyncExitStack) -> None:
    client = await api_client(stack, settings)
    send_at = time.time() + AHEAD_S
    message_id = await schedule(client, send_at)
    kept = await schedule(client, send_at)
    provider = ClockedProvider()
    node = await start_node(stack, settings, provider)
    await node.run_iteration()
    cancel = await client.delete(f"/email/{message_id}/schedule", headers=AUTH)
    assert cancel.status == 200, await cancel.text()
    assert (await cancel.json())["cancelled"] == [message_id]
    unknown = await client.delete("/email/no-such-id/schedule", headers=AUTH)
    assert unknown.status == 404
    for _ in range(30):
        await node.run_iteration()
        if provider.sent_at and sum((await queue_totals(settings)).values()) == 0:
            break
    assert list(provider.sent_at) == [kept]
    assert sum((await queue_totals(settings)).values()) == 0
    status = await (await client.get(f"/email/{message_id}", headers=AUTH)).json()
    assert status["state"] == "failed" and "cancelled" in status["reason"]
    late = await client.delete(f"/email/{kept}/schedule", headers=AUTH)
    assert late.status == 409


async def test_a_v3_send_at_holds_every_personalization(
    settings: Settings, stack: AsyncExitStack
) -> None:
    client = await api_client(stack, settings)
    send_at = int(time.time()) + AHEAD_S + 1
    body = {
        "personalizations": [
            {"to": [{"email": "one@example.org"}]},
            {"to": [{"email": "two@example.org"}]},
        ],
        "from": {"email": "sender@example.com"},
        "subject": "Later",
        "content": [{"type": "text/plain", "value": "Scheduled"}],
        "send_at": send_at,
    }
    response = await client.post("/v3/mail/send", json=body, headers=AUTH)
    assert response.status == 202, await response.text()
    x_message_id = response.headers["X-Message-Id"]
    provider = ClockedProvider()
    node = await start_node(stack, settings, provider)
    for _ in range(30):
        await node.run_iteration()
        if len(provider.sent_at) == 2:
            break
    assert sorted(provider.sent_at) == [f"{x_message_id}_0", f"{x_message_id}_1"]
    assert min(provider.sent_at.values()) >= send_at


async def test_cancelling_by_x_message_id_cancels_every_part(
    settings: Settings, stack: AsyncExitStack
) -> None:
    client = await api_client(stack, settings)
    body = {
        "personalizations": [{"to": [{"email": f"p{n}@example.org"}]} for n in range(3)],
        "from": {"email": "sender@example.com"},
        "subject": "Later",
        "content": [{"type": "text/plain", "value": "Scheduled"}],
        "send_at": int(time.time()) + 3600,
    }
    response = await client.post("/v3/mail/send", json=body, headers=AUTH)
    x_message_id = response.headers["X-Message-Id"]
    cancel = await client.delete(f"/email/{x_message_id}/schedule", headers=AUTH)
    assert cancel.status == 200, await cancel.text()
    assert (await cancel.json())["cancelled"] == [f"{x_message_id}_{n}" for n in range(3)]
    provider = ClockedProvider()
    node = await start_node(stack, settings, provider)
    for _ in range(10):
        await node.run_iteration()
        if sum((await queue_totals(settings)).values()) == 0:
            break
    assert sum((await queue_totals(settings)).values()) == 0  # dropped, not held
    assert provider.attempts == {}
    async with create_queue_client(settings) as queues:
        assert (await queues.depth((await queues.resolve_all())[0])).total == 0
