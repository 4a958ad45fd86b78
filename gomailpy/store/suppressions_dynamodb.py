"""The suppression list on DynamoDB, shared by every node: `sup#<address>` items on the delivery
store's table (`status.table`).

An item: `s_on` (suppressed), `s_kind`, `s_reason`, `s_provider`, `s_first`, `s_last`, and
`s_soft`, a string set of `<epoch>|<event id>` for the soft bounces inside the window (a set, so
the same soft bounce twice counts once). A hard bounce, complaint or unsubscribe is one
UpdateItem; a soft bounce adds itself to `s_soft`, and once the set holds
`soft_bounce_limit` recent ones a second, conditional UpdateItem suppresses the address (unless
a stronger reason already did). Attribute names carry a prefix so none is a DynamoDB reserved
word. `lookup` is one BatchGetItem per 100 addresses.

An unsubscribe group's entries are `supg#<group>#<address>` items (same attributes, no soft
bounces): another prefix, so the global listing (`page`, a scan of `sup#`) never shows them
and no address containing `#` can be mistaken for a group's entry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from gomailpy.config.feedback import SuppressionSettings
from gomailpy.errors import ConditionFailedError
from gomailpy.events import Event, epoch
from gomailpy.store.dynamodb import DynamoTable
from gomailpy.store.suppressions import (
    LOOKUP_BATCH,
    SOFT,
    Clock,
    Suppression,
    SuppressionKind,
    address_key,
    from_event,
    group_of,
    rule_for,
)

PREFIX = "sup#"
GROUP_PREFIX = "supg#"
_FIELDS = "pk, s_on, s_kind, s_reason, s_provider, s_first, s_last"
_UNPROCESSED_TRIES = 4


def _entry(item: dict[str, Any]) -> Suppression | None:
    if not item.get("s_on", {}).get("BOOL"):
        return None
    text = {k: v.get("S", "") for k, v in item.items() if "S" in v}
    group: int | None = None
    address = text["pk"].removeprefix(PREFIX)
    if text["pk"].startswith(GROUP_PREFIX):
        number, _, address = text["pk"].removeprefix(GROUP_PREFIX).partition("#")
        group = int(number)
    return Suppression(
        address=address,
        group=group,
        kind=text.get("s_kind", ""),
        reason=text.get("s_reason", ""),
        provider=text.get("s_provider", ""),
        first_seen=text.get("s_first", ""),
        last_seen=text.get("s_last", ""),
    )


def _key(address: str, group: int | None = None) -> dict[str, Any]:
    if group is not None:
        return {"pk": {"S": f"{GROUP_PREFIX}{group}#{address_key(address)}"}}
    return {"pk": {"S": PREFIX + address_key(address)}}


class DynamoSuppressionStore:
    """`SuppressionStore` on DynamoDB (see the module's docstring)."""

    def __init__(
        self, table: DynamoTable, settings: SuppressionSettings, *, clock: Clock = time.time
    ) -> None:
        self._table = table
        self._settings = settings
        self._clock = clock
        self.calls = 0

    async def lookup(self, addresses: Sequence[str]) -> dict[str, Suppression]:
        keys = sorted({address_key(a) for a in addresses})
        chunks = [keys[i : i + LOOKUP_BATCH] for i in range(0, len(keys), LOOKUP_BATCH)]
        found: dict[str, Suppression] = {}
        for items in await asyncio.gather(*(self._batch_get(chunk) for chunk in chunks)):
            for item in items:
                entry = _entry(item)
                if entry is not None:
                    found[entry.address] = entry
        return found

    async def lookup_grouped(
        self, pairs: Sequence[tuple[int, str]]
    ) -> dict[tuple[int, str], Suppression]:
        keys = sorted({(g, address_key(a)) for g, a in pairs})
        chunks = [keys[i : i + LOOKUP_BATCH] for i in range(0, len(keys), LOOKUP_BATCH)]
        found: dict[tuple[int, str], Suppression] = {}
        for items in await asyncio.gather(*(self._batch_get(chunk) for chunk in chunks)):
            for item in items:
                entry = _entry(item)
                if entry is not None and entry.group is not None:
                    found[(entry.group, entry.address)] = entry
        return found

    async def _batch_get(self, addresses: Sequence[str | tuple[int, str]]) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            self._table.name: {
                "Keys": [_key(a) if isinstance(a, str) else _key(a[1], a[0]) for a in addresses],
                "ProjectionExpression": _FIELDS,
            }
        }
        items: list[dict[str, Any]] = []
        for attempt in range(_UNPROCESSED_TRIES):
            self.calls += 1
            answer = await self._table.call("batch_get_item", RequestItems=request)
            items += answer.get("Responses", {}).get(self._table.name, [])
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
            await asyncio.sleep(0.05 * 2**attempt)  # DynamoDB asks for less: back off
        return items

    async def apply(self, events: Sequence[Event]) -> list[Suppression]:
        changed: list[Suppression] = []
        for event in events:
            rule = rule_for(event)
            if rule is None:
                continue
            if rule == SOFT and group_of(event) is None:
                rule = await self._count_soft(event)
                if rule is None:
                    continue
            entry = await self._suppress(event, str(rule))
            if entry is not None:
                changed.append(entry)
        return changed

    async def _count_soft(self, event: Event) -> SuppressionKind | None:
        """Add a soft bounce; SOFT_BOUNCES once there are enough inside the window."""
        assert event.recipient is not None
        answer = await self._table.call(
            "update_item",
            Key=_key(event.recipient),
            UpdateExpression="ADD s_soft :s",
            ExpressionAttributeValues={":s": {"SS": [f"{epoch(event.at):.0f}|{event.id}"]}},
            ReturnValues="ALL_NEW",
        )
        item = answer.get("Attributes", {})
        horizon = self._clock() - self._settings.soft_bounce_window_s
        marks = item.get("s_soft", {}).get("SS", [])
        old = [m for m in marks if float(m.split("|", 1)[0]) < horizon]
        if old:
            await self._table.call(
                "update_item",
                Key=_key(event.recipient),
                UpdateExpression="DELETE s_soft :old",
                ExpressionAttributeValues={":old": {"SS": old}},
            )
        if len(marks) - len(old) < self._settings.soft_bounce_limit:
            return None
        return SuppressionKind.SOFT_BOUNCES

    async def _suppress(self, event: Event, kind: str) -> Suppression | None:
        assert event.recipient is not None
        entry = from_event(event, kind, None)
        key = _key(event.recipient, entry.group)
        condition: dict[str, Any] = {}
        if kind == SuppressionKind.SOFT_BOUNCES.value:
            # Soft bounces never overwrite a stronger reason.
            condition = {
                "ConditionExpression": "attribute_not_exists(s_on) OR s_on = :f OR s_kind = :k",
            }
        try:
            answer = await self._table.call(
                "update_item",
                Key=key,
                UpdateExpression=(
                    "SET s_on = :t, s_kind = :k, s_reason = :r, s_provider = :p,"
                    " s_first = if_not_exists(s_first, :at), s_last = :at"
                ),
                ExpressionAttributeValues={
                    ":t": {"BOOL": True},
                    **({":f": {"BOOL": False}} if condition else {}),
                    ":k": {"S": entry.kind},
                    ":r": {"S": entry.reason},
                    ":p": {"S": entry.provider},
                    ":at": {"S": entry.last_seen},
                },
                ReturnValues="ALL_NEW",
                **condition,
            )
        except ConditionFailedError:
            return None
        return _entry(answer.get("Attributes", {}))

    async def get(self, address: str, group: int | None = None) -> Suppression | None:
        answer = await self._table.call("get_item", Key=_key(address, group), ConsistentRead=True)
        return _entry(answer.get("Item") or {})

    async def put(self, entry: Suppression) -> None:
        await self._table.call(
            "put_item",
            Item={
                **_key(entry.address, entry.group),
                "s_on": {"BOOL": True},
                "s_kind": {"S": entry.kind},
                "s_reason": {"S": entry.reason},
                "s_provider": {"S": entry.provider},
                "s_first": {"S": entry.first_seen},
                "s_last": {"S": entry.last_seen},
            },
        )

    async def remove(self, address: str, group: int | None = None) -> bool:
        answer = await self._table.call(
            "delete_item", Key=_key(address, group), ReturnValues="ALL_OLD"
        )
        return _entry(answer.get("Attributes") or {}) is not None

    async def page(
        self, cursor: str | None = None, limit: int = 100
    ) -> tuple[list[Suppression], str | None]:
        """A Scan of the `sup#` items (the table also holds delivery records: an operator's
        listing, not a request path). The cursor is the last key DynamoDB looked at."""
        found: list[Suppression] = []
        start = cursor
        while len(found) < limit:
            kwargs: dict[str, Any] = {
                "FilterExpression": "begins_with(pk, :p) AND s_on = :t",
                "ExpressionAttributeValues": {":p": {"S": PREFIX}, ":t": {"BOOL": True}},
                "ProjectionExpression": _FIELDS,
                "Limit": max(limit - len(found), 25),
            }
            if start is not None:
                kwargs["ExclusiveStartKey"] = {"pk": {"S": start}}
            answer = await self._table.call("scan", **kwargs)
            for item in answer.get("Items", []):
                entry = _entry(item)
                if entry is not None and len(found) < limit:
                    found.append(entry)
                    start = item["pk"]["S"]
            last = answer.get("LastEvaluatedKey")
            if not last:
                return found, None if len(found) < limit else start
            if len(found) < limit:
                start = last["pk"]["S"]
        return found, start
