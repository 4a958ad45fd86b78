"""Delivery status per email, and idempotency keys: one store shared by API and pipeline nodes.

    queued ──▶ sending ──▶ sent (provider, provider message id)
                  │  ▲
                  ▼  │
               retrying (attempt, last reason)      failed (reason)

- The API records `queued` once a queue accepted the email (`record_queued`).
- A pipeline node *claims* a message before sending it (`claim`, a conditional write): the claim
  is refused when the email was already sent (a redelivery after a crash between send and
  delete: the node deletes the message without sending again) or while another node holds a
  live lease on it (a redelivery while the first send is still running).
- It then records the outcome: `mark_sent`, `mark_retrying`, `mark_failed`.
- `get` returns the record with its timeline (each state with its time), or None.

Idempotency keys live in the same store: `reserve_key` is a conditional put that either reserves
the key for this request or returns the record already there (same body: replay its answer;
different body: refuse). Every item expires (`expires_at`, DynamoDB's TTL attribute): status
records `status.ttl_s` after their last write, keys `status.idempotency_window_s` after their
first use. DynamoDB deletes expired items lazily, so reads ignore expired items themselves.

Two implementations of the `DeliveryStore` Protocol (`base.py`): `DynamoDeliveryStore`
(`dynamodb.py`: aiobotocore, one client per process) and `MemoryDeliveryStore` (`memory.py`:
one process only). `open_delivery_store` builds the configured one.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from gomailpy.deliveries.base import (
    Claim,
    ClaimResult,
    DeliveryRecord,
    DeliveryState,
    DeliveryStore,
    IdempotencyRecord,
)
from gomailpy.deliveries.dynamodb import DynamoDeliveryStore
from gomailpy.deliveries.memory import MemoryDeliveryStore
from gomailpy.settings import Settings

__all__ = [
    "Claim",
    "ClaimResult",
    "DeliveryRecord",
    "DeliveryState",
    "DeliveryStore",
    "DynamoDeliveryStore",
    "IdempotencyRecord",
    "MemoryDeliveryStore",
    "open_delivery_store",
]


async def open_delivery_store(stack: AsyncExitStack, settings: Settings) -> DeliveryStore | None:
    """The configured store (None when `status.backend` is none); closed with `stack`."""
    backend = settings.status.backend
    if backend == "memory":
        return MemoryDeliveryStore(settings.status)
    if backend == "dynamodb":
        return await stack.enter_async_context(DynamoDeliveryStore(settings))
    return None
