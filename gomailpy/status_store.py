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

Two implementations: `DynamoStatusStore` (aiobotocore, one client per process) and
`MemoryStatusStore` (one process only). `open_status_store` builds the configured one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from gomailpy.aws import open_aws_client
from gomailpy.errors import GomailError
from gomailpy.settings import Settings, StatusSettings

STATUS_TIMEOUT_S = 5.0  # read timeout of every status store call
MAX_REASON = 500  # characters of a failure reason kept in a record
Clock = Callable[[], float]


class StatusStoreError(GomailError):
    """The status store could not be read or written."""

    def __init__(self, operation: str, reason: str) -> None:
        self.operation = operation
        self.reason = reason
        super().__init__(f"status store: {operation} failed: {reason}")


class State(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"


class Claim(StrEnum):
    CLAIMED = "claimed"  # send it
    ALREADY_SENT = "already-sent"  # delete it without sending
    BUSY = "busy"  # another node is sending it right now: try again later


@dataclass(frozen=True, slots=True)
class ClaimResult:
    claim: Claim
    retry_in_s: float = 0.0  # BUSY: when the other node's lease runs out


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class StatusRecord:
    message_id: str
    state: State
    created_at: str
    updated_at: str
    provider: str | None = None
    provider_message_id: str | None = None
    attempt: int = 0
    reason: str | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    lease_until: float = 0.0
    expires_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The API's answer to GET /email/{messageId}."""
        return {
            "messageId": self.message_id,
            "state": self.state.value,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "provider": self.provider,
            "providerMessageId": self.provider_message_id,
            "attempt": self.attempt,
            "reason": self.reason,
            "timeline": self.timeline,
        }


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    key: str
    body_hash: str
    message_id: str
    response: str | None  # the first answer's JSON body; None while that request is running


class StatusStore(Protocol):
    async def record_queued(self, message_id: str, at: float | None = None) -> None: ...

    async def claim(self, message_id: str, *, attempt: int, lease_s: float) -> ClaimResult: ...

    async def mark_sent(self, message_id: str, provider: str, provider_message_id: str) -> None: ...

    async def mark_retrying(self, message_id: str, attempt: int, reason: str) -> None: ...

    async def mark_failed(self, message_id: str, reason: str) -> None: ...

    async def get(self, message_id: str) -> StatusRecord | None: ...

    async def reserve_key(
        self, key: str, body_hash: str, message_id: str
    ) -> IdempotencyRecord | None:
        """Reserve `key` for this request (None), or return the record already holding it."""
        ...

    async def complete_key(self, key: str, response: str) -> None: ...

    async def release_key(self, key: str) -> None:
        """Forget a reservation whose request failed, so that a retry can go through."""
        ...


def _event(state: State, now: float, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"state": state.value, "at": _iso(now)}
    event.update({k: v for k, v in extra.items() if v is not None})
    return event


# -- in memory ----------------------------------------------------------------------------------


class MemoryStatusStore:
    """The store for one process (API and pipeline in the same process, tests). No awaits inside
    an update, so every update is atomic on the event loop, like a conditional write."""

    def __init__(self, settings: StatusSettings, *, clock: Clock = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._records: dict[str, StatusRecord] = {}
        self._keys: dict[str, tuple[IdempotencyRecord, float]] = {}

    def _live(self, message_id: str) -> StatusRecord | None:
        record = self._records.get(message_id)
        if record is not None and record.expires_at < self._clock():
            del self._records[message_id]
            return None
        return record

    def _upsert(self, message_id: str, now: float) -> StatusRecord:
        record = self._live(message_id)
        if record is None:
            record = self._records[message_id] = StatusRecord(
                message_id, State.QUEUED, _iso(now), _iso(now)
            )
        record.updated_at = _iso(now)
        record.expires_at = now + self._settings.ttl_s
        return record

    async def record_queued(self, message_id: str, at: float | None = None) -> None:
        now = self._clock()
        fresh = self._live(message_id) is None
        record = self._upsert(message_id, now)
        when = now if at is None else at
        if fresh:
            record.created_at = _iso(when)
        record.timeline.insert(0, _event(State.QUEUED, when))

    async def claim(self, message_id: str, *, attempt: int, lease_s: float) -> ClaimResult:
        now = self._clock()
        record = self._live(message_id)
        if record is not None:
            if record.state is State.SENT:
                return ClaimResult(Claim.ALREADY_SENT)
            if record.state is State.SENDING and record.lease_until >= now:
                return ClaimResult(Claim.BUSY, record.lease_until - now)
        record = self._upsert(message_id, now)
        record.state = State.SENDING
        record.attempt = attempt
        record.lease_until = now + lease_s
        record.timeline.append(_event(State.SENDING, now, attempt=attempt))
        return ClaimResult(Claim.CLAIMED)

    async def mark_sent(self, message_id: str, provider: str, provider_message_id: str) -> None:
        now = self._clock()
        record = self._upsert(message_id, now)
        record.state = State.SENT
        record.provider, record.provider_message_id = provider, provider_message_id
        record.reason = None
        record.lease_until = 0.0
        record.timeline.append(
            _event(State.SENT, now, provider=provider, providerMessageId=provider_message_id)
        )

    async def _mark(self, message_id: str, state: State, reason: str, attempt: int | None) -> None:
        now = self._clock()
        existing = self._live(message_id)
        if existing is not None and existing.state is State.SENT:
            return  # a late outcome never undoes a send
        record = self._upsert(message_id, now)
        record.state = state
        record.reason = reason[:MAX_REASON]
        record.lease_until = 0.0
        if attempt is not None:
            record.attempt = attempt
        record.timeline.append(_event(state, now, attempt=attempt, reason=record.reason))

    async def mark_retrying(self, message_id: str, attempt: int, reason: str) -> None:
        await self._mark(message_id, State.RETRYING, reason, attempt)

    async def mark_failed(self, message_id: str, reason: str) -> None:
        await self._mark(message_id, State.FAILED, reason, None)

    async def get(self, message_id: str) -> StatusRecord | None:
        record = self._live(message_id)
        if record is None:
            return None
        return dataclasses.replace(record, timeline=[dict(e) for e in record.timeline])

    async def reserve_key(
        self, key: str, body_hash: str, message_id: str
    ) -> IdempotencyRecord | None:
        now = self._clock()
        held = self._keys.get(key)
        if held is not None and held[1] >= now:
            return held[0]
        record = IdempotencyRecord(key, body_hash, message_id, None)
        self._keys[key] = (record, now + self._settings.idempotency_window_s)
        return None

    async def complete_key(self, key: str, response: str) -> None:
        held = self._keys.get(key)
        if held is not None:
            record, expires = held
            self._keys[key] = (
                IdempotencyRecord(key, record.body_hash, record.message_id, response),
                expires,
            )

    async def release_key(self, key: str) -> None:
        held = self._keys.get(key)
        if held is not None and held[0].response is None:
            del self._keys[key]


# -- DynamoDB -----------------------------------------------------------------------------------

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


class DynamoStatusStore:
    """The store on one DynamoDB table (partition key `pk`): `msg#<id>` status records and
    `idem#<key>` idempotency keys. Every state change is one UpdateItem; the claim and key
    reservation are conditional writes."""

    def __init__(self, client: Any, settings: StatusSettings, *, clock: Clock = time.time) -> None:
        self._client = client
        self._settings = settings
        self._table = settings.table
        self._clock = clock

    @classmethod
    async def open(cls, stack: AsyncExitStack, settings: Settings) -> DynamoStatusStore:
        status = settings.status
        # Short timeouts and few attempts: a status write must never hold a send for long
        # (the pipeline sends anyway when its claim fails).
        client = await open_aws_client(
            stack,
            "dynamodb",
            settings.aws,
            region=status.region,
            endpoint_url=status.endpoint_url,
            read_timeout_s=min(settings.aws.client_timeout_s, STATUS_TIMEOUT_S),
            max_attempts=2,
        )
        return cls(client, status)

    async def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return await getattr(self._client, operation)(TableName=self._table, **kwargs)
        except _DDB_ERRORS as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise
            raise StatusStoreError(operation, _reason(exc)) from exc

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
                raise StatusStoreError("create_table", _reason(exc)) from exc
        except _DDB_ERRORS as exc:
            raise StatusStoreError("create_table", _reason(exc)) from exc
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
            raise StatusStoreError("ensure_table", _reason(exc)) from exc

    def _values(self, now: float, **values: Any) -> dict[str, Any]:
        base = {
            ":now": _iso(now),
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
                queued=State.QUEUED.value,
                created=_iso(when),
                ev=[_event(State.QUEUED, when)],
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
                sending=State.SENDING.value,
                sent=State.SENT.value,
                attempt=attempt,
                lease=now + lease_s,
                clock=now,
                ev=[_event(State.SENDING, now, attempt=attempt)],
            ),
            condition=(
                "attribute_not_exists(pk) OR expires_at < :clock OR"
                " (#s <> :sent AND (#s <> :sending OR lease_until < :clock))"
            ),
        )
        if claimed:
            return ClaimResult(Claim.CLAIMED)
        record = await self.get(message_id)
        if record is not None and record.state is State.SENT:
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
                sent=State.SENT.value,
                provider=provider,
                pmid=provider_message_id,
                zero=0,
                ev=[
                    _event(
                        State.SENT, now, provider=provider, providerMessageId=provider_message_id
                    )
                ],
            ),
        )

    async def _mark(self, message_id: str, state: State, reason: str, attempt: int | None) -> None:
        now = self._clock()
        reason = reason[:MAX_REASON]
        values: dict[str, Any] = {
            "state": state.value,
            "sent": State.SENT.value,
            "reason": reason,
            "zero": 0,
            "ev": [_event(state, now, attempt=attempt, reason=reason)],
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
        await self._mark(message_id, State.RETRYING, reason, attempt)

    async def mark_failed(self, message_id: str, reason: str) -> None:
        await self._mark(message_id, State.FAILED, reason, None)

    async def _get_item(self, pk: str) -> dict[str, Any] | None:
        answer = await self._call("get_item", Key={"pk": {"S": pk}}, ConsistentRead=True)
        item = answer.get("Item")
        if not item:
            return None
        data: dict[str, Any] = {k: _from_ddb(v) for k, v in item.items()}
        if float(data.get("expires_at", 0)) < self._clock():
            return None  # expired, not yet deleted by DynamoDB's TTL sweep
        return data

    async def get(self, message_id: str) -> StatusRecord | None:
        data = await self._get_item(MSG + message_id)
        if data is None or "state" not in data:
            return None
        return StatusRecord(
            message_id=message_id,
            state=State(data["state"]),
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


async def open_status_store(stack: AsyncExitStack, settings: Settings) -> StatusStore | None:
    """The configured store (None when `status.backend` is none); closed with `stack`."""
    backend = settings.status.backend
    if backend == "memory":
        return MemoryStatusStore(settings.status)
    if backend == "dynamodb":
        return await DynamoStatusStore.open(stack, settings)
    return None
