"""The delivery store on one DynamoDB table, shared by every API and pipeline node."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gomailpy.aws import AwsResource, open_aws_client
from gomailpy.deliveries.base import (
    MAX_REASON,
    Claim,
    ClaimResult,
    Clock,
    DeliveryRecord,
    DeliveryState,
    IdempotencyRecord,
    iso_time,
    timeline_entry,
)
from gomailpy.errors import DeliveryStoreError
from gomailpy.settings import Settings

STATUS_TIMEOUT_S = 5.0  # read timeout of every delivery store call

_DDB_ERRORS = (ClientError, BotoCoreError, OSError, TimeoutError)


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


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


MSG = "msg#"
KEY = "idem#"


class DynamoDeliveryStore(AwsResource):
    """The store on one DynamoDB table (partition key `pk`): `msg#<id>` status records and
    `idem#<key>` idempotency keys. Every state change is one UpdateItem; the claim and key
    reservation are conditional writes. A one-shot async context manager (see
    `gomailpy.aws.AwsResource`)."""

    def __init__(self, settings: Settings, *, client: Any = None, clock: Clock = time.time) -> None:
        super().__init__(client=client)
        self._aws = settings.aws
        self._settings = settings.status
        self._table = settings.status.table
        self._clock = clock

    async def _open_client(self, stack: AsyncExitStack) -> Any:
        status = self._settings
        # Short timeouts and few attempts: a status write must never hold a send for long
        # (the pipeline sends anyway when its claim fails).
        return await open_aws_client(
            stack,
            "dynamodb",
            self._aws,
            region=status.region,
            endpoint_url=status.endpoint_url,
            read_timeout_s=min(self._aws.client_timeout_s, STATUS_TIMEOUT_S),
            max_attempts=2,
        )

    async def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return await getattr(self._client, operation)(TableName=self._table, **kwargs)
        except _DDB_ERRORS as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise
            raise DeliveryStoreError(operation, _reason(exc)) from exc

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
            if _error_code(exc) != "ResourceInUseException":
                raise DeliveryStoreError("create_table", _reason(exc)) from exc
        except _DDB_ERRORS as exc:
            raise DeliveryStoreError("create_table", _reason(exc)) from exc
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
        except _DDB_ERRORS as exc:
            raise DeliveryStoreError("ensure_table", _reason(exc)) from exc

    def _values(self, now: float, **values: Any) -> dict[str, Any]:
        base = {
            ":now": iso_time(now),
            ":exp": int(now + self._settings.ttl_s),
            ":empty": [],
        }
        base.update({f":{k}": v for k, v in values.items()})
        return {k: _to_ddb(v) for k, v in base.items()}

    async def _update(
        self,
        message_id: str,
        expression: str,
        values: dict[str, Any],
        condition: str | None = None,
    ) -> bool:
        """One UpdateItem on a status record; False when its condition did not hold."""
        kwargs: dict[str, Any] = {
            "Key": {"pk": {"S": MSG + message_id}},
            "UpdateExpression": expression,
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": values,
        }
        if condition:
            kwargs["ConditionExpression"] = condition
        try:
            await self._call("update_item", **kwargs)
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise  # pragma: no cover - _call wraps every other error
        return True

    _COMMON = "updated_at = :now, expires_at = :exp, created_at = if_not_exists(created_at, :now)"

    async def record_queued(self, message_id: str, at: float | None = None) -> None:
        now = self._clock()
        when = now if at is None else at
        # The pipeline may have claimed the message already: `queued` then only joins the
        # timeline (first), the state stays what the pipeline made it.
        await self._update(
            message_id,
            "SET #s = if_not_exists(#s, :queued), updated_at = if_not_exists(updated_at, :now),"
            " expires_at = :exp, created_at = if_not_exists(created_at, :created),"
            " timeline = list_append(:ev, if_not_exists(timeline, :empty))",
            self._values(
                now,
                queued=DeliveryState.QUEUED.value,
                created=iso_time(when),
                ev=[timeline_entry(DeliveryState.QUEUED, when)],
            ),
        )

    async def claim(self, message_id: str, *, attempt: int, lease_s: float) -> ClaimResult:
        now = self._clock()
        claimed = await self._update(
            message_id,
            f"SET #s = :sending, attempt = :attempt, lease_until = :lease, {self._COMMON},"
            " timeline = list_append(if_not_exists(timeline, :empty), :ev)",
            self._values(
                now,
                sending=DeliveryState.SENDING.value,
                sent=DeliveryState.SENT.value,
                attempt=attempt,
                lease=now + lease_s,
                clock=now,
                ev=[timeline_entry(DeliveryState.SENDING, now, attempt=attempt)],
            ),
            condition=(
                "attribute_not_exists(pk) OR expires_at < :clock OR"
                " (#s <> :sent AND (#s <> :sending OR lease_until < :clock))"
            ),
        )
        if claimed:
            return ClaimResult(Claim.CLAIMED)
        record = await self.get(message_id)
        if record is not None and record.state is DeliveryState.SENT:
            return ClaimResult(Claim.ALREADY_SENT)
        lease_until = record.lease_until if record is not None else now
        return ClaimResult(Claim.BUSY, max(0.0, lease_until - now))

    async def mark_sent(self, message_id: str, provider: str, provider_message_id: str) -> None:
        now = self._clock()
        await self._update(
            message_id,
            f"SET #s = :sent, provider = :provider, provider_message_id = :pmid,"
            f" lease_until = :zero, {self._COMMON},"
            " timeline = list_append(if_not_exists(timeline, :empty), :ev) REMOVE reason",
            self._values(
                now,
                sent=DeliveryState.SENT.value,
                provider=provider,
                pmid=provider_message_id,
                zero=0,
                ev=[
                    timeline_entry(
                        DeliveryState.SENT,
                        now,
                        provider=provider,
                        providerMessageId=provider_message_id,
                    )
                ],
            ),
        )

    async def _mark(
        self, message_id: str, state: DeliveryState, reason: str, attempt: int | None
    ) -> None:
        now = self._clock()
        reason = reason[:MAX_REASON]
        values: dict[str, Any] = {
            "state": state.value,
            "sent": DeliveryState.SENT.value,
            "reason": reason,
            "zero": 0,
            "ev": [timeline_entry(state, now, attempt=attempt, reason=reason)],
        }
        attempt_set = ""
        if attempt is not None:
            values["attempt"] = attempt
            attempt_set = ", attempt = :attempt"
        # A late outcome never undoes a send.
        await self._update(
            message_id,
            f"SET #s = :state, reason = :reason, lease_until = :zero{attempt_set},"
            f" {self._COMMON}, timeline = list_append(if_not_exists(timeline, :empty), :ev)",
            self._values(now, **values),
            condition="attribute_not_exists(pk) OR #s <> :sent",
        )

    async def mark_retrying(self, message_id: str, attempt: int, reason: str) -> None:
        await self._mark(message_id, DeliveryState.RETRYING, reason, attempt)

    async def mark_failed(self, message_id: str, reason: str) -> None:
        await self._mark(message_id, DeliveryState.FAILED, reason, None)

    async def _get_item(self, pk: str) -> dict[str, Any] | None:
        answer = await self._call("get_item", Key={"pk": {"S": pk}}, ConsistentRead=True)
        item = answer.get("Item")
        if not item:
            return None
        data: dict[str, Any] = {k: _from_ddb(v) for k, v in item.items()}
        if float(data.get("expires_at", 0)) < self._clock():
            return None  # expired, not yet deleted by DynamoDB's TTL sweep
        return data

    async def get(self, message_id: str) -> DeliveryRecord | None:
        data = await self._get_item(MSG + message_id)
        if data is None or "state" not in data:
            return None
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
            lease_until=float(data.get("lease_until", 0)),
            expires_at=float(data.get("expires_at", 0)),
        )

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
            if _error_code(exc) != "ConditionalCheckFailedException":
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
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise  # pragma: no cover
