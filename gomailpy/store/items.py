"""Small items beside the delivery records on the status table: stored templates (`tpl#`) and
schedule records (`sched#`), readable by every API and pipeline node.

    table = await open_item_table(stack, settings)      # None when status.backend is none
    await table.put("tpl#welcome", {"subject": "Hi"})
    await table.get("tpl#welcome")

The same table as gomailpy.store.deliveries (partition key `pk`, TTL on `expires_at`), so nothing
new needs creating or granting. A list of keys is kept as a string set on one item (`add_member`),
never found by scanning a table that holds every email's record. An append-only log is a counter
item (`increment`) numbering items written once each (`put_new`, a conditional put that never
overwrites) and read back by key (`get_many`). `MemoryItemTable` serves one process (tests).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any, Protocol

from gomailpy.config.settings import Settings
from gomailpy.errors import ConditionFailedError
from gomailpy.store.dynamodb import DynamoTable

Value = str | float
BATCH_GET = 100  # DynamoDB's BatchGetItem limit


class ItemTable(Protocol):
    async def get(self, pk: str) -> dict[str, Value] | None:
        """The item's attributes (strings and numbers), or None (also when expired)."""
        ...

    async def put(self, pk: str, attributes: dict[str, Value], *, expires_at: float = 0) -> None:
        """Write the whole item; `expires_at` (epoch seconds, 0: never) for the TTL sweep."""
        ...

    async def put_new(self, pk: str, attributes: dict[str, Value]) -> bool:
        """Write the item only if no item has this key: never overwrites; False if one has."""
        ...

    async def increment(self, pk: str) -> int:
        """Add 1 to the counter item `pk` (0 when new) and return the new count, atomically."""
        ...

    async def get_many(self, pks: Sequence[str]) -> dict[str, dict[str, Value]]:
        """The items of `pks` that exist, by key."""
        ...

    async def delete(self, pk: str) -> None: ...

    async def add_member(self, pk: str, member: str) -> None: ...

    async def remove_member(self, pk: str, member: str) -> None: ...

    async def members(self, pk: str) -> set[str]: ...


class MemoryItemTable:
    """An `ItemTable` in this process's memory."""

    def __init__(self, clock: Any = time.time) -> None:
        self._items: dict[str, tuple[dict[str, Value], float]] = {}
        self._sets: dict[str, set[str]] = {}
        self._clock = clock

    async def get(self, pk: str) -> dict[str, Value] | None:
        found = self._items.get(pk)
        if found is None or (found[1] and found[1] <= self._clock()):
            return None
        return dict(found[0])

    async def put(self, pk: str, attributes: dict[str, Value], *, expires_at: float = 0) -> None:
        self._items[pk] = (dict(attributes), expires_at)

    async def put_new(self, pk: str, attributes: dict[str, Value]) -> bool:
        if await self.get(pk) is not None:
            return False
        self._items[pk] = (dict(attributes), 0)
        return True

    async def increment(self, pk: str) -> int:
        item = await self.get(pk) or {}
        count = int(float(item.get("n", 0))) + 1
        self._items[pk] = ({**item, "n": float(count)}, 0)
        return count

    async def get_many(self, pks: Sequence[str]) -> dict[str, dict[str, Value]]:
        found = {pk: await self.get(pk) for pk in pks}
        return {pk: item for pk, item in found.items() if item is not None}

    async def delete(self, pk: str) -> None:
        self._items.pop(pk, None)

    async def add_member(self, pk: str, member: str) -> None:
        self._sets.setdefault(pk, set()).add(member)

    async def remove_member(self, pk: str, member: str) -> None:
        self._sets.get(pk, set()).discard(member)

    async def members(self, pk: str) -> set[str]:
        return set(self._sets.get(pk, set()))


class DynamoItemTable(DynamoTable):
    """An `ItemTable` on the status table in DynamoDB; a one-shot async context manager."""

    def __init__(self, settings: Settings, *, client: Any = None, clock: Any = time.time) -> None:
        super().__init__(settings, client=client, max_attempts=2)
        self._clock = clock

    def _values(self, item: dict[str, Any]) -> dict[str, Value] | None:
        values: dict[str, Value] = {}
        for name, value in item.items():
            if "S" in value:
                values[name] = str(value["S"])
            elif "N" in value:
                values[name] = float(value["N"])
        expires = float(values.get("expires_at", 0) or 0)
        if expires and expires <= self._clock():  # the TTL sweep is lazy
            return None
        values.pop("pk", None)
        return values

    async def get(self, pk: str) -> dict[str, Value] | None:
        answer = await self.call("get_item", Key={"pk": {"S": pk}}, ConsistentRead=True)
        item = answer.get("Item")
        return None if item is None else self._values(item)

    @staticmethod
    def _item(pk: str, attributes: dict[str, Value], expires_at: float = 0) -> dict[str, Any]:
        item: dict[str, Any] = {"pk": {"S": pk}}
        for name, value in attributes.items():
            item[name] = {"S": value} if isinstance(value, str) else {"N": repr(float(value))}
        if expires_at:
            item["expires_at"] = {"N": str(int(expires_at))}
        return item

    async def put(self, pk: str, attributes: dict[str, Value], *, expires_at: float = 0) -> None:
        await self.call("put_item", Item=self._item(pk, attributes, expires_at))

    async def put_new(self, pk: str, attributes: dict[str, Value]) -> bool:
        try:
            await self.call(
                "put_item",
                Item=self._item(pk, attributes),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ConditionFailedError:
            return False
        return True

    async def increment(self, pk: str) -> int:
        answer = await self.call(
            "update_item",
            Key={"pk": {"S": pk}},
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(float(answer["Attributes"]["n"]["N"]))

    async def get_many(self, pks: Sequence[str]) -> dict[str, dict[str, Value]]:
        """BatchGetItem, 100 keys a call, consistent reads; what DynamoDB leaves unprocessed
        (throttling) is asked for again a few times."""
        found: dict[str, dict[str, Value]] = {}
        unique = list(dict.fromkeys(pks))
        for start in range(0, len(unique), BATCH_GET):
            keys: Any = {
                "Keys": [{"pk": {"S": pk}} for pk in unique[start : start + BATCH_GET]],
                "ConsistentRead": True,
            }
            for answer in await self.batch("batch_get_item", keys, "UnprocessedKeys"):
                for item in answer.get("Responses", {}).get(self.name, []):
                    values = self._values(item)
                    if values is not None:
                        found[str(item["pk"]["S"])] = values
        return found

    async def delete(self, pk: str) -> None:
        await self.call("delete_item", Key={"pk": {"S": pk}})

    async def add_member(self, pk: str, member: str) -> None:
        await self.call(
            "update_item",
            Key={"pk": {"S": pk}},
            UpdateExpression="ADD members :m",
            ExpressionAttributeValues={":m": {"SS": [member]}},
        )

    async def remove_member(self, pk: str, member: str) -> None:
        await self.call(
            "update_item",
            Key={"pk": {"S": pk}},
            UpdateExpression="DELETE members :m",
            ExpressionAttributeValues={":m": {"SS": [member]}},
        )

    async def members(self, pk: str) -> set[str]:
        answer = await self.call("get_item", Key={"pk": {"S": pk}}, ConsistentRead=True)
        return set(answer.get("Item", {}).get("members", {}).get("SS", []))


async def open_item_table(stack: AsyncExitStack, settings: Settings) -> ItemTable | None:
    """The status table's small items as configured (None when `status.backend` is none);
    closed with `stack`. `memory` is this process's alone."""
    backend = settings.status.backend
    if backend == "memory":
        return MemoryItemTable()
    if backend == "dynamodb":
        return await stack.enter_async_context(DynamoItemTable(settings))
    return None
