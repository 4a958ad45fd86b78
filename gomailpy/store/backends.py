"""The stores of the after-send side as `status.backend` picks them: the event store and the
suppression list, opened together on one table client.

    stores = await open_event_stores(stack, settings)   # closed with `stack`
    stores.outcomes, stores.suppression                   # either may be None

Kept apart from the Protocols and memory implementations (gomailpy.store.events,
gomailpy.store.suppressions) so that those never import an implementation on DynamoDB.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from dataclasses import dataclass

from gomailpy.config.settings import Settings
from gomailpy.store.dynamodb import DynamoTable
from gomailpy.store.events import EventStore, MemoryEventStore
from gomailpy.store.events_dynamodb import DynamoEventStore
from gomailpy.store.suppressions import MemorySuppressionStore, SuppressionStore
from gomailpy.store.suppressions_dynamodb import DynamoSuppressionStore


@dataclass(frozen=True, slots=True)
class EventStores:
    outcomes: EventStore | None
    suppression: SuppressionStore | None


async def open_event_stores(stack: AsyncExitStack, settings: Settings) -> EventStores:
    """The event store and the suppression list on the status table's backend (both None
    when `status.backend` is none; suppression None when `suppression.enabled` is false)."""
    backend = settings.status.backend
    keep_list = settings.suppression.enabled
    if backend == "memory":
        suppression = MemorySuppressionStore(settings.suppression, clock=time.time)
        return EventStores(MemoryEventStore(), suppression if keep_list else None)
    if backend == "dynamodb":
        table = await stack.enter_async_context(DynamoTable(settings))
        return EventStores(
            DynamoEventStore(table, settings.status.ttl_s),
            DynamoSuppressionStore(table, settings.suppression) if keep_list else None,
        )
    return EventStores(None, None)
