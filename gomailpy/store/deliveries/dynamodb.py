"""The delivery store on one DynamoDB table, shared by every API and pipeline node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from gomailpy.batching import Batcher, all_or_first_error
from gomailpy.config.settings import Settings
from gomailpy.errors import ConditionFailedError, StoreError
from gomailpy.store.deliveries.base import Clock, DeliveryRecord, DeliveryState, IdempotencyRecord
from gomailpy.store.deliveries.records import failed_record, queued_record
from gomailpy.store.dynamodb import DynamoTable, from_attribute, to_attribute

MSG = "msg#"
KEY = "idem#"
BATCH_GET = 100  # keys per BatchGetItem, DynamoDB's limit
BATCH_WRITE = 25  # requests per BatchWriteItem, DynamoDB's limit
WRITE_LINGER_S = 0.003  # how long a write waits for others to share its call
WRITE_MAX_CALLS = 2  # partial write calls under way before the next waits for one to end


def _record(message_id: str, data: dict[str, Any], now: float) -> DeliveryRecord | None:
    if "state" not in data or float(data.get("expires_at", 0)) < now:
        return None  # not a status record, or expired and not yet swept by DynamoDB's TTL
    return DeliveryRecord(
        message_id=message_id,
        state=DeliveryState(data["state"]),
        created_at=str(data.get("created_at", "")),
        updated_at=str(data.get("updated_at", "")),
        provider=data.get("provider"),
        provider_message_id=data.get("provider_message_id"),
        attempt=int(data.get("attempt", 0)),
        reason=data.get("reason"),
        timeline=list(data.get("timeline", [])),
        expires_at=float(data.get("expires_at", 0)),
        node=data.get("node"),
        lease_until=float(data["lease_until"]) if "lease_until" in data else None,
    )


def _item(record: DeliveryRecord, expires_at: int) -> dict[str, Any]:
    values: dict[str, Any] = {
        "pk": MSG + record.message_id,
        "state": record.state.value,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "provider": record.provider,
        "provider_message_id": record.provider_message_id,
        "attempt": record.attempt,
        "reason": record.reason,
        "timeline": record.timeline,
        "expires_at": expires_at,
        "node": record.node,
        "lease_until": record.lease_until,
    }
    return {k: to_attribute(v) for k, v in values.items() if v is not None}


class DynamoDeliveryStore(DynamoTable):
    """The store on the status table (partition key `pk`): `msg#<id>` status records and
    `idem#<key>` idempotency keys. Records are read with BatchGetItem and written whole with
    BatchWriteItem; an idempotency key's reservation is a conditional put. A one-shot async
    context manager (see `gomailpy.store.dynamodb.DynamoTable`)."""

    def __init__(self, settings: Settings, *, client: Any = None, clock: Clock = time.time) -> None:
        # Few attempts: a status call must never hold a send for long (the pipeline sends
        # anyway when its read fails).
        super().__init__(settings, client=client, max_attempts=2)
        self._settings = settings.status
        self._clock = clock
        # The chunks a node settles at once share BatchWriteItem calls (gomailpy.batching);
        # one call may not hold a record twice.
        self._writes: Batcher[dict[str, Any], None] = Batcher(
            self._write_batch,
            size=BATCH_WRITE,
            max_calls=WRITE_MAX_CALLS,
            linger_s=WRITE_LINGER_S,
            key=lambda put: str(put["PutRequest"]["Item"]["pk"]),
        )

    async def get_many(self, message_ids: Sequence[str]) -> dict[str, DeliveryRecord]:
        """BatchGetItem, 100 keys a call, consistent reads."""
        unique = list(dict.fromkeys(message_ids))
        chunks = [unique[i : i + BATCH_GET] for i in range(0, len(unique), BATCH_GET)]
        answers = await asyncio.gather(
            *(
                self.batch(
                    "batch_get_item",
                    {"Keys": [{"pk": {"S": MSG + m}} for m in chunk], "ConsistentRead": True},
                    "UnprocessedKeys",
                )
                for chunk in chunks
            )
        )
        records: dict[str, DeliveryRecord] = {}
        now = self._clock()
        for calls in answers:
            for answer in calls:
                for item in answer.get("Responses", {}).get(self.name, []):
                    data = {k: from_attribute(v) for k, v in item.items()}
                    record = _record(str(data["pk"]).removeprefix(MSG), data, now)
                    if record is not None:
                        records[record.message_id] = record
        return records

    async def put_many(self, records: Sequence[DeliveryRecord]) -> None:
        """BatchWriteItem, 25 records a call, shared with concurrent callers (the last record
        of an id wins)."""
        expires_at = int(self._clock() + self._settings.ttl_s)
        items = {r.message_id: _item(r, expires_at) for r in records}
        puts = [{"PutRequest": {"Item": item}} for item in items.values()]
        await all_or_first_error(self._writes.submit_many(puts))

    async def _write_batch(self, puts: list[dict[str, Any]]) -> list[None | BaseException]:
        """One BatchWriteItem (again for what DynamoDB left unprocessed); a record still left
        fails its own writer only."""
        _answers, left = await self.batch_leaving("batch_write_item", puts, "UnprocessedItems")
        unwritten = {str(put["PutRequest"]["Item"]["pk"]) for put in left}
        failed = StoreError("batch_write_item", "DynamoDB left the record unprocessed")
        return [
            failed if str(put["PutRequest"]["Item"]["pk"]) in unwritten else None for put in puts
        ]

    async def _get_item(self, pk: str) -> dict[str, Any] | None:
        answer = await self.call("get_item", Key={"pk": {"S": pk}}, ConsistentRead=True)
        item = answer.get("Item")
        if not item:
            return None
        data: dict[str, Any] = {k: from_attribute(v) for k, v in item.items()}
        if float(data.get("expires_at", 0)) < self._clock():
            return None  # expired, not yet deleted by DynamoDB's TTL sweep
        return data

    async def _put_if(self, record: DeliveryRecord, condition: str) -> bool:
        """One conditional PutItem of a whole record; False when the condition did not hold."""
        item = _item(record, int(self._clock() + self._settings.ttl_s))
        try:
            await self.call(
                "put_item",
                Item=item,
                ConditionExpression=condition,
                **({"ExpressionAttributeNames": {"#s": "state"}} if "#s" in condition else {}),
                **(
                    {"ExpressionAttributeValues": {":sent": {"S": DeliveryState.SENT.value}}}
                    if ":sent" in condition
                    else {}
                ),
            )
        except ConditionFailedError:
            return False
        return True

    async def record_queued(self, message_id: str, at: float | None = None) -> None:
        """A `queued` record where there is none yet (not on the send path: API ids read as
        queued without one; for emails whose ids the API did not issue)."""
        await self._put_if(queued_record(message_id, self._clock(), at), "attribute_not_exists(pk)")

    async def mark_failed(self, message_id: str, reason: str) -> None:
        """`failed` outside a delivery attempt (suppressed, cancelled); never over `sent`."""
        record = failed_record(await self.get(message_id), message_id, reason, self._clock())
        if record is not None:
            await self._put_if(record, "attribute_not_exists(pk) OR #s <> :sent")

    async def get(self, message_id: str) -> DeliveryRecord | None:
        key = {"pk": {"S": MSG + message_id}}
        answer = await self.call("get_item", Key=key, ConsistentRead=True)
        item = answer.get("Item")
        if not item:
            return None
        return _record(message_id, {k: from_attribute(v) for k, v in item.items()}, self._clock())

    async def reserve_key(
        self, key: str, body_hash: str, message_id: str
    ) -> IdempotencyRecord | None:
        now = self._clock()
        item = {
            "pk": KEY + key,
            "body_hash": body_hash,
            "message_id": message_id,
            "expires_at": int(now + self._settings.idempotency_window_s),
        }
        try:
            await self.call(
                "put_item",
                Item={k: to_attribute(v) for k, v in item.items()},
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues={":now": to_attribute(int(now))},
            )
            return None
        except ConditionFailedError:
            pass
        held = await self._get_item(KEY + key)
        if held is None:  # expired between the two calls: a rare race, try once more
            return await self.reserve_key(key, body_hash, message_id)
        return IdempotencyRecord(
            key, str(held["body_hash"]), str(held["message_id"]), held.get("response")
        )

    async def complete_key(self, key: str, response: str) -> None:
        await self.call(
            "update_item",
            Key={"pk": {"S": KEY + key}},
            UpdateExpression="SET #r = :r",
            ExpressionAttributeNames={"#r": "response"},
            ExpressionAttributeValues={":r": {"S": response}},
        )

    async def release_key(self, key: str) -> None:
        try:
            await self.call(
                "delete_item",
                Key={"pk": {"S": KEY + key}},
                ConditionExpression="attribute_not_exists(#r)",
                ExpressionAttributeNames={"#r": "response"},
            )
        except ConditionFailedError:
            pass  # answered already: the key stays
