"""Delivery status per email, and idempotency keys: one store shared by API and pipeline nodes.

    queued ──▶ sending ──▶ sent (provider, provider message id)
                  │  ▲
                  ▼  │
               retrying (attempt, last reason)      failed (reason)

Off the hot path: under 0.1 store calls per email, all batched, none in the API.
- The API writes nothing per email. It issues message ids that carry their issue time and a MAC
  (`ids.MessageIds`): `GET /email/{id}` answers `queued` for such an id while no record exists
  (and 404 for any id it did not issue, or whose record would have expired).
- A pipeline node reads the records of a received batch at once (`get_many`, BatchGetItem):
  an email already `sent` (a node died, or its delete failed, after the send) is deleted
  without sending again. The node's lease on the message (pipeline.sending.lease) is what keeps two
  nodes from sending it at once: SQS hands a message to one node at a time, and a node starts
  a send only while its lease outlasts the send.
- Just before sending, the node writes each record as `sending` (its intent: node, attempt,
  lease end; `intents`), batched like the outcomes: a node stalled or killed mid-send leaves an
  open intent, and the next node holds the email for a grace period instead of repeating it.
- After the attempt it writes each record whole (`put_many`, BatchWriteItem, calls shared by
  the chunks a node settles at once: `gomailpy.batching`; `records` builds it: the previous
  timeline, `sending`, the outcome) *before* deleting the message, so a crash between send and
  delete still sends once.
- `get` returns one record with its timeline, or None.

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

from gomailpy.config.settings import Settings
from gomailpy.store.deliveries.base import (
    DeliveryRecord,
    DeliveryState,
    DeliveryStore,
    IdempotencyRecord,
)
from gomailpy.store.deliveries.dynamodb import DynamoDeliveryStore
from gomailpy.store.deliveries.ids import MessageIds, message_ids
from gomailpy.store.deliveries.intents import Decision, Verdict, decide, intent_record
from gomailpy.store.deliveries.memory import MemoryDeliveryStore
from gomailpy.store.deliveries.records import after_attempt

__all__ = [
    "Decision",
    "DeliveryRecord",
    "DeliveryState",
    "DeliveryStore",
    "DynamoDeliveryStore",
    "IdempotencyRecord",
    "MemoryDeliveryStore",
    "MessageIds",
    "Verdict",
    "after_attempt",
    "decide",
    "intent_record",
    "message_ids",
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
