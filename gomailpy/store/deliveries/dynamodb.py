"""The delivery store on one DynamoDB table, shared by every API and pipeline node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

from botocore.exceptions import ClientError

from gomailpy.config.settings import Settings
from gomailpy.errors import StoreError
from gomailpy.queues.aws import AwsResource
from gomailpy.store.deliveries.base import Clock, DeliveryRecord, DeliveryState, IdempotencyRecord
from gomailpy.store.deliveries.coalesce import WriteCoalescer
from gomailpy.store.deliveries.records import failed_record, queued_record
from gomailpy.store.dynamodb import (
    DYNAMODB_ERRORS,
    error_code,
    error_reason,
    open_table_client,
)


def _to_ddb(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dict):
        return {"M": {k: _to_ddb(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"L": [_to_ddb(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def _from_ddb(value: dict[str, Any]) -> Any:
    [(kind, raw)] = value.items()
    if kind == "S":
        return raw
    if kind == "N":
        number = float(raw)
        return int(number) if number.is_integer() else number
    if kind == "BOOL":
        return bool(raw)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: _from_ddb(v) for k, v in raw.items()}
    if kind == "L":
        return [_from_ddb(v) for v in raw]
    raise TypeError(f"unexpected DynamoDB type {kind}")


MSG = "msg#"
KEY = "idem#"
BATCH_GET = 100  # keys per BatchGetItem, DynamoDB's limit
BATCH_WRITE = 25  # requests per BatchWriteItem, DynamoDB's limit
WRITE_LINGER_S = 0.003  # how long a write waits for others to share its call


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
    return {k: _to_ddb(v) for k, v in values.items() if v is not None}


class DynamoDeliveryStore(AwsResource):
    """The store on one DynamoDB table (partition key `pk`): `msg#<id>` status records and
    `idem#<key>` idempotency keys. Records are read with BatchGetItem and written whole with
    BatchWriteItem; an idempotency key's reservation is a conditional put. A one-shot async
    context manager (see `gomailpy.queues.aws.AwsResource`)."""

    def __init__(self, settings: Settings, *, client: Any = None, clock: Clock = time.time) -> None:
        super().__init__(client=client)
        self._client_settings = settings
        self._settings = settings.status
        self._table = settings.status.table
        self._clock = clock
        self._writes = WriteCoalescer(self._write_batch, size=BATCH_WRITE, linger_s=WRITE_LINGER_S)

    async def _open_client(self, stack: AsyncExitStack) -> Any:
        # Few attempts: a status call must never hold a send for long (the pipeline sends
        # anyway when its read fails).
        return await open_table_client(stack, self._client_settings, max_attempts=2)

    async def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return await getattr(self._client, operation)(TableName=self._table, **kwargs)
        except DYNAMODB_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise
            raise StoreError(operation, error_reason(exc)) from exc

    async def ensure_table(self) -> None:
        """Create the table (on-demand capacity) with TTL on `expires_at`; safe to run again."""
        client = self._client
        try:
            await client.create_table(
                TableName=self._table,
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":
                raise StoreError("create_table", error_reason(exc)) from exc
        except DYNAMODB_ERRORS as exc:
            raise StoreError("create_table", error_reason(exc)) from exc
        try:
            waiter = client.get_waiter("table_exists")
            await waiter.wait(TableName=self._table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
            ttl = await client.describe_time_to_live(TableName=self._table)
            if ttl.get("TimeToLiveDescription", {}).get("TimeToLiveStatus") not in (
                "ENABLED",
                "ENABLING",
            ):
                await client.update_time_to_live(
                    TableName=self._table,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
                )
        except DYNAMODB_ERRORS as exc:
            raise StoreError("ensure_table", error_reason(exc)) from exc

    async def _batch(self, operation: str, requests: Any, unprocessed: str) -> list[Any]:
        """One batch call on this table, again for what DynamoDB left unprocessed (throttling
        spreads a batch over calls); raises when some of it is still left after a few tries."""
        answers: list[Any] = []
        for attempt in range(4):
            try:
                answer = await getattr(self._client, operation)(
                    RequestItems={self._table: requests}
                )
            except DYNAMODB_ERRORS as exc:
                raise StoreError(operation, error_reason(exc)) from exc
            answers.append(answer)
            left = answer.get(unprocessed, {}).get(self._table)
            if not left:
                return answers
            requests = left
            await asyncio.sleep(0.05 * 2**attempt)
        raise StoreError(operation, "DynamoDB left part of the batch unprocessed")

    async def get_many(self, message_ids: Sequence[str]) -> dict[str, DeliveryRecord]:
        """BatchGetItem, 100 keys a call, consistent reads."""
        unique = list(dict.fromkeys(message_ids))
        chunks = [unique[i : i + BATCH_GET] for i in range(0, len(unique), BATCH_GET)]
        answers = await asyncio.gather(
            *(
                self._batch(
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
                for item in answer.get("Responses", {}).get(self._table, []):
                    data = {k: _from_ddb(v) for k, v in item.items()}
                    record = _record(str(data["pk"]).removeprefix(MSG), data, now)
                    if record is not None:
                        records[record.message_id] = record
        return records

    async def put_many(self, records: Sequence[DeliveryRecord]) -> None:
        """BatchWriteItem, 25 records a call, shared with concurrent callers (the last record
        of an id wins)."""
        expires_at = int(self._clock() + self._settings.ttl_s)
        items = {r.message_id: _item(r, expires_at) for r in records}
        await self._writes.put([{"PutRequest": {"Item": item}} for item in items.values()])

    async def _write_batch(self, puts: list[Any]) -> None:
        await self._batch("batch_write_item", puts, "UnprocessedItems")

    async def _get_item(self, pk: str) -> dict[str, Any] | None:
        answer = await self._call("get_item", Key={"pk": {"S": pk}}, ConsistentRead=True)
        item = answer.get("Item")
        if not item:
            return None
        data: dict[str, Any] = {k: _from_ddb(v) for k, v in item.items()}
        if float(data.get("expires_at", 0)) < self._clock():
            return None  # expired, not yet deleted by DynamoDB's TTL sweep
        return data

    async def _put_if(self, record: DeliveryRecord, condition: str) -> bool:
        """One conditional PutItem of a whole record; False when the condition did not hold."""
        item = _item(record, int(self._clock() + self._settings.ttl_s))
        try:
            await self._call(
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
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise  # pragma: no cover - _call wraps every other error
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
        answer = await self._call("get_item", Key=key, ConsistentRead=True)
        item = answer.get("Item")
        if not item:
            return None
        return _record(message_id, {k: _from_ddb(v) for k, v in item.items()}, self._clock())

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
            await self._call(
                "put_item",
                Item={k: _to_ddb(v) for k, v in item.items()},
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues={":now": _to_ddb(int(now))},
            )
            return None
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise  # pragma: no cover
        held = await self._get_item(KEY + key)
        if held is None:  # expired between the two calls: a rare race, try once more
            return await self.reserve_key(key, body_hash, message_id)
        return IdempotencyRecord(
            key, str(held["body_hash"]), str(held["message_id"]), held.get("response")
        )

    async def complete_key(self, key: str, response: str) -> None:
        await self._call(
            "update_item",
            Key={"pk": {"S": KEY + key}},
            UpdateExpression="SET #r = :r",
            ExpressionAttributeNames={"#r": "response"},
            ExpressionAttributeValues={":r": {"S": response}},
        )

    async def release_key(self, key: str) -> None:
        try:
            await self._call(
                "delete_item",
                Key={"pk": {"S": KEY + key}},
                ConditionExpression="attribute_not_exists(#r)",
                ExpressionAttributeNames={"#r": "response"},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise  # pragma: no cover
