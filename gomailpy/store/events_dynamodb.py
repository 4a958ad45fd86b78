"""The outcome store on DynamoDB: the delivery store's table, one `evt#` item per email.

    evt#m:<message id>             the events of one email
    evt#p:<provider message id>    events that named no message id (joined when the email is read)
    evt#r:<recipient>              events that named neither

An item holds `ids` (a string set of event ids) and `timeline` (the events, in arrival order).
Recording is one UpdateItem per item touched, conditional on none of its event ids being in
`ids` yet; when that condition fails (a redelivered report), each event is tried on its own, so
a report seen twice is kept once. Items expire with the delivery records (`status.ttl_s`). Calls
go through the table's one boundary (gomailpy.store.dynamodb.DynamoTable), shared with the
suppression list.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from gomailpy.errors import ConditionFailedError
from gomailpy.events import Event
from gomailpy.store.dynamodb import DynamoTable
from gomailpy.store.events import MAX_EVENTS_PER_EMAIL, event_key, provider_key

EVENTS = "evt#"
MAX_RAW_BYTES = 2048  # of a provider's report kept per event: the item stays under 400 KB


def _event_item(event: Event) -> dict[str, Any]:
    data = event.to_json()
    if len(json.dumps(data["raw"])) > MAX_RAW_BYTES:
        data["raw"] = {"truncated": True}
    return {"S": json.dumps(data, separators=(",", ":"))}


class DynamoEventStore:
    """`EventStore` on DynamoDB (see the module's docstring)."""

    def __init__(self, table: DynamoTable, ttl_s: int, *, clock: Any = time.time) -> None:
        self._table = table
        self._ttl_s = ttl_s
        self._clock = clock

    async def record(self, events: Sequence[Event]) -> list[Event]:
        grouped: dict[str, dict[str, Event]] = defaultdict(dict)
        for event in events:
            grouped[event_key(event)].setdefault(event.id, event)
        new: list[Event] = []
        for key, by_id in grouped.items():
            group = list(by_id.values())
            if await self._append(key, group):
                new += group
            elif len(group) > 1:  # some were recorded before: find out which
                for event in group:
                    if await self._append(key, [event]):
                        new.append(event)
        return new

    async def _append(self, key: str, events: list[Event]) -> bool:
        ids = {f":id{i}": {"S": e.id} for i, e in enumerate(events)}
        unseen = " AND ".join(f"NOT contains(ids, {name})" for name in ids)
        try:
            await self._table.call(
                "update_item",
                Key={"pk": {"S": EVENTS + key}},
                UpdateExpression=(
                    "SET timeline = list_append(if_not_exists(timeline, :empty), :events),"
                    " expires_at = :exp ADD ids :ids"
                ),
                ConditionExpression=f"attribute_not_exists(ids) OR ({unseen} AND size(ids) < :cap)",
                ExpressionAttributeValues={
                    ":empty": {"L": []},
                    ":events": {"L": [_event_item(e) for e in events]},
                    ":exp": {"N": str(int(self._clock() + self._ttl_s))},
                    ":ids": {"SS": [e.id for e in events]},
                    ":cap": {"N": str(MAX_EVENTS_PER_EMAIL)},
                    **ids,
                },
            )
        except ConditionFailedError:
            return False
        return True

    async def _read(self, key: str) -> list[Event]:
        answer = await self._table.call(
            "get_item", Key={"pk": {"S": EVENTS + key}}, ConsistentRead=True
        )
        item = answer.get("Item") or {}
        if float(item.get("expires_at", {}).get("N", "inf")) < self._clock():
            return []
        return [Event.from_json(json.loads(v["S"])) for v in item.get("timeline", {}).get("L", [])]

    async def events(
        self,
        message_id: str,
        *,
        provider: str | None = None,
        provider_message_id: str | None = None,
    ) -> list[Event]:
        found = {e.id: e for e in await self._read(f"m:{message_id}")}
        if provider and provider_message_id:
            for event in await self._read(provider_key(provider, provider_message_id)):
                found.setdefault(event.id, event)
        return list(found.values())
