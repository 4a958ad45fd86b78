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

Concurrent `record` calls share their appends (gomailpy.batching): events of one email that
different callers record at about the same time (SES's Send and Delivery reports, received by
different polls; a relay's recipients and a report) go in one UpdateItem. BatchWriteItem cannot
carry them: it takes no conditions and no list appends.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from gomailpy.batching import Batcher, settled
from gomailpy.errors import ConditionFailedError
from gomailpy.events import Event
from gomailpy.store.dynamodb import DynamoTable
from gomailpy.store.events import MAX_EVENTS_PER_EMAIL, event_key, provider_key

EVENTS = "evt#"
MAX_RAW_BYTES = 2048  # of a provider's report kept per event: the item stays under 400 KB
APPEND_BATCH = 25  # callers' appends taken together (one UpdateItem per email among them)
APPEND_MAX_CALLS = 2  # such groups under way before a partial one waits for one to end
APPEND_LINGER_S = 0.005  # how long a quiet append waits for others of the same email

Append = tuple[str, list[Event]]  # an item's key and the events one caller appends to it


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
        self._appends: Batcher[Append, bool] = Batcher(
            self._append_shared,
            size=APPEND_BATCH,
            max_calls=APPEND_MAX_CALLS,
            linger_s=APPEND_LINGER_S,
        )

    async def record(self, events: Sequence[Event]) -> list[Event]:
        grouped: dict[str, dict[str, Event]] = defaultdict(dict)
        for event in events:
            grouped[event_key(event)].setdefault(event.id, event)
        appends = [(key, list(by_id.values())) for key, by_id in grouped.items()]
        outcomes = await settled(self._appends.submit_many(appends))
        new: list[Event] = []
        for (key, group), appended in zip(appends, outcomes, strict=True):
            if isinstance(appended, BaseException):
                raise appended
            if appended:
                new += group
            elif len(group) > 1:  # some were recorded before: find out which
                for event in group:
                    if await self._append(key, [event]):
                        new.append(event)
        return new

    async def _append_shared(self, appends: list[Append]) -> list[bool | BaseException]:
        """One UpdateItem per email for the appends of several callers; when its condition
        fails (some event was there), each caller's append is tried on its own, so that each
        learns what of its own was new. An error fails the appends of that email only."""
        by_key: dict[str, list[int]] = defaultdict(list)
        for index, (key, _) in enumerate(appends):
            by_key[key].append(index)
        outcomes: list[bool | BaseException] = [False] * len(appends)

        async def one_key(key: str, indexes: list[int]) -> None:
            # An event two callers bring (a report delivered twice at once) is new for one of
            # them only: a caller sharing an event with an earlier one appends on its own after.
            merge: list[int] = []
            alone: list[int] = []
            ids: set[str] = set()
            for i in indexes:
                mine = {e.id for e in appends[i][1]}
                (alone if mine & ids else merge).append(i)
                ids |= mine
            try:
                if len(merge) > 1:
                    merged = [e for i in merge for e in appends[i][1]]
                    if await self._append(key, merged):
                        for i in merge:
                            outcomes[i] = True
                    else:
                        alone = merge + alone
                else:
                    alone = merge + alone
                for i in alone:
                    outcomes[i] = await self._append(key, appends[i][1])
            except Exception as exc:
                for i in indexes:
                    if outcomes[i] is False:
                        outcomes[i] = exc

        await asyncio.gather(*(one_key(key, indexes) for key, indexes in by_key.items()))
        return outcomes

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
