"""Which endpoints are disabled, where every node sees it.

An endpoint that answers 410 Gone has said it wants no more webhooks: it is disabled until an
operator enables it again (`gomail webhooks enable NAME`, after which `gomail webhooks redrive`
sends what was held back). With `status.backend: dynamodb` the state is one `whk#<name>` item
per endpoint on the delivery store's table, so every node and the CLI see it; with `memory`
(or none) it lives in the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Protocol

from gomailpy.config.settings import Settings
from gomailpy.store.dynamodb import DynamoTable

PREFIX = "whk#"


@dataclass(frozen=True, slots=True)
class Disabled:
    endpoint: str
    reason: str
    at: float  # epoch s


class EndpointStates(Protocol):
    async def disabled(self, names: Sequence[str]) -> dict[str, Disabled]: ...

    async def disable(self, entry: Disabled) -> None: ...

    async def enable(self, name: str) -> bool:
        """Enable `name` again; False if it was not disabled."""
        ...


class MemoryEndpointStates:
    def __init__(self) -> None:
        self._disabled: dict[str, Disabled] = {}

    async def disabled(self, names: Sequence[str]) -> dict[str, Disabled]:
        return {n: self._disabled[n] for n in names if n in self._disabled}

    async def disable(self, entry: Disabled) -> None:
        self._disabled.setdefault(entry.endpoint, entry)

    async def enable(self, name: str) -> bool:
        return self._disabled.pop(name, None) is not None


class DynamoEndpointStates:
    """`whk#<name>` items on the delivery store's table (gomailpy.store.dynamodb)."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    async def disabled(self, names: Sequence[str]) -> dict[str, Disabled]:
        found: dict[str, Disabled] = {}
        for name in names:
            answer = await self._table.call(
                "get_item", Key={"pk": {"S": PREFIX + name}}, ConsistentRead=True
            )
            item = answer.get("Item")
            if item and item.get("disabled", {}).get("BOOL"):
                found[name] = Disabled(name, item["reason"]["S"], float(item["at"]["N"]))
        return found

    async def disable(self, entry: Disabled) -> None:
        await self._table.call(
            "put_item",
            Item={
                "pk": {"S": PREFIX + entry.endpoint},
                "disabled": {"BOOL": True},
                "reason": {"S": entry.reason[:1000]},
                "at": {"N": str(entry.at)},
            },
        )

    async def enable(self, name: str) -> bool:
        answer = await self._table.call(
            "delete_item", Key={"pk": {"S": PREFIX + name}}, ReturnValues="ALL_OLD"
        )
        return bool(answer.get("Attributes"))


async def open_endpoint_states(stack: AsyncExitStack, settings: Settings) -> EndpointStates:
    """The shared state with `status.backend: dynamodb`, else this process's."""
    if settings.status.backend == "dynamodb":
        table = await stack.enter_async_context(DynamoTable(settings))
        return DynamoEndpointStates(table)
    return MemoryEndpointStates()
