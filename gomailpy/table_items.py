"""Small items beside the delivery records on the status table: stored templates (`tpl#`) and
schedule records (`sched#`), readable by every API and pipeline node.

    table = await open_item_table(stack, settings)      # None when status.backend is none
    await table.put("tpl#welcome", {"subject": "Hi"})
    await table.get("tpl#welcome")

The same table as gomailpy.deliveries (partition key `pk`, TTL on `expires_at`), so nothing new
needs creating or granting. A list of keys is kept as a string set on one item (`add_member`),
never found by scanning a table that holds every email's record. `MemoryItemTable` serves one
process (tests).
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from typing import Any, Protocol

from gomailpy.aws import AwsResource
from gomailpy.errors import DeliveryStoreError
from gomailpy.settings import Settings
from gomailpy.status_table import DYNAMODB_ERRORS, error_reason, open_status_table_client

Value = str | float


class ItemTable(Protocol):
    async def get(self, pk: str) -> dict[str, Value] | None:
        """The item's attributes (strings and numbers), or None (also when expired)."""
        ...

    async def put(self, pk: str, attributes: dict[str, Value], *, expires_at: float = 0) -> None:
        """Write the whole item; `expires_at` (epoch seconds, 0: never) for the TTL sweep."""
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

    async def delete(self, pk: str) -> None:
        self._items.pop(pk, None)

    async def add_member(self, pk: str, member: str) -> None:
        self._sets.setdefault(pk, set()).add(member)

    async def remove_member(self, pk: str, member: str) -> None:
        self._sets.get(pk, set()).discard(member)

    async def members(self, pk: str) -> set[str]:
        return set(self._sets.get(pk, set()))


class DynamoItemTable(AwsResource):
    """An `ItemTable` on the status table in DynamoDB; a one-shot async context manager."""

    def __init__(self, settings: Settings, *, client: Any = None, clock: Any = time.time) -> None:
        super().__init__(client=client)
        self._settings = settings
        self._table = settings.status.table
        self._clock = clock

    async def _open_client(self, stack: AsyncExitStack) -> Any:
        return await open_status_table_client(stack, self._settings, max_attempts=2)

    async def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return await getattr(self._client, operation)(TableName=self._table, **kwargs)
        except DYNAMODB_ERRORS as exc:
            raise DeliveryStoreError(operation, error_reason(exc)) from exc

    async def get(self, pk: str) -> dict[str, Value] | None:
        answer = await self._call("get_item", Key={"pk": {"S": pk}}, ConsistentRead=True)
        item = answer.get("Item")
        if item is None:
            return None
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

    async def put(self, pk: str, attributes: dict[str, Value], *, expires_at: float = 0) -> None:
        item: dict[str, Any] = {"pk": {"S": pk}}
        for name, value in attributes.items():
            item[name] = {"S": value} if isinstance(value, str) else {"N": repr(float(value))}
        if expires_at:
            item["expires_at"] = {"N": str(int(expires_at))}
        await self._call("put_item", Item=item)

    async def delete(self, pk: str) -> None:
        await self._call("delete_item", Key={"pk": {"S": pk}})

    async def add_member(self, pk: str, member: str) -> None:
        await self._call(
            "update_item",
            Key={"pk": {"S": pk}},
            UpdateExpression="ADD members :m",
            ExpressionAttributeValues={":m": {"SS": [member]}},
        )

    async def remove_member(self, pk: str, member: str) -> None:
        await self._call(
            "update_item",
            Key={"pk": {"S": pk}},
            UpdateExpression="DELETE members :m",
            ExpressionAttributeValues={":m": {"SS": [member]}},
        )

    async def members(self, pk: str) -> set[str]:
        answer = await self._call("get_item", Key={"pk": {"S": pk}}, ConsistentRead=True)
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
