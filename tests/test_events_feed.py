"""GET /events?messageId=&since=&cursor=: an email's events, a page at a time, behind the key."""

from __future__ import annotations

from typing import Any

from api.app import create_app
from api.auth import hash_key
from api.views.suppressions import OUTCOME_STORE
from gomailpy.events import Event, EventType, iso
from tests.support import StartClient, make_settings

T0 = 1_800_000_000.0
KEY = "feed-test-key"


def event(n: int, kind: EventType = EventType.DELIVERED, message_id: str = "m-1") -> Event:
    return Event(
        id=f"ev-{n:02d}",
        message_id=message_id,
        recipient=f"r{n}@example.org",
        provider="ses",
        type=kind,
        at=iso(T0 + n),
    )


async def feed_client(start_client: StartClient, sqs_endpoint: str, **api: Any) -> Any:
    settings = make_settings(sqs_endpoint, status={"backend": "memory"}, api={"port": 0, **api})
    client = await start_client(create_app(settings))
    await client.app[OUTCOME_STORE].record(
        [event(n) for n in range(7)] + [event(99, message_id="m-other")]
    )
    return client


async def test_pages_follow_the_cursor_in_time_order(
    start_client: StartClient, sqs_endpoint: str
) -> None:
    client = await feed_client(start_client, sqs_endpoint)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        query = {"messageId": "m-1", "limit": "3", **({"cursor": cursor} if cursor else {})}
        answer = await (await client.get("/events", params=query)).json()
        seen += [e["id"] for e in answer["events"]]
        cursor = answer["next"]
        if cursor is None:
            break
    assert seen == [f"ev-{n:02d}" for n in range(7)]
    since = await (
        await client.get("/events", params={"messageId": "m-1", "since": iso(T0 + 5)})
    ).json()
    assert [e["id"] for e in since["events"]] == ["ev-05", "ev-06"]
    assert since["next"] is None
    epoch_since = await client.get("/events", params={"messageId": "m-1", "since": str(T0 + 6)})
    assert [e["id"] for e in (await epoch_since.json())["events"]] == ["ev-06"]
    first = (await (await client.get("/events", params={"messageId": "m-1"})).json())["events"][0]
    assert set(first) >= {"id", "messageId", "recipient", "provider", "type", "at"}


async def test_bad_parameters_get_a_400_naming_them(
    start_client: StartClient, sqs_endpoint: str
) -> None:
    client = await feed_client(start_client, sqs_endpoint)
    for query, name in [
        ({}, "messageId"),
        ({"messageId": "m-1", "cursor": "%%%"}, "cursor"),
        ({"messageId": "m-1", "cursor": "bm90IGpzb24"}, "cursor"),
        ({"messageId": "m-1", "limit": "0"}, "limit"),
        ({"messageId": "m-1", "limit": "many"}, "limit"),
        ({"messageId": "m-1", "since": "yesterday"}, "since"),
    ]:
        response = await client.get("/events", params=query)
        assert response.status == 400, query
        assert (await response.json())["errors"]["base"].startswith(name)


async def test_the_feed_is_behind_the_api_key_and_501_without_a_store(
    start_client: StartClient, sqs_endpoint: str
) -> None:
    client = await feed_client(start_client, sqs_endpoint, api_key_hashes=[hash_key(KEY)])
    assert (await client.get("/events", params={"messageId": "m-1"})).status == 401
    keyed = await client.get("/events", params={"messageId": "m-1"}, headers={"X-Api-Key": KEY})
    assert keyed.status == 200
    off = await start_client(create_app(make_settings(sqs_endpoint, api={"port": 0})))
    assert (await off.get("/events", params={"messageId": "m-1"})).status == 501
