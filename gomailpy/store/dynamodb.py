"""The one DynamoDB boundary: every call on the status table (`status.table`) goes through a
`DynamoTable`, which names its failures `StoreError` (a condition that did not hold:
`ConditionFailedError`), so that no botocore exception leaves this module.

    async with DynamoTable(settings) as table:          # one client, closed with the table
        await table.call("get_item", Key={"pk": {"S": "tpl#welcome"}}, ConsistentRead=True)
        await table.batch("batch_get_item", {"Keys": [...]}, "UnprocessedKeys")
        await table.ensure_table()                      # `gomail init`: creates it, TTL on

What each record kind keeps on it (partition key `pk`, TTL on `expires_at`):

    msg#<id>, idem#<key>              delivery records, idempotency keys  deliveries/
    evt#m:<id>, evt#p:<id>, evt#r:<a>  the events of an email              events_dynamodb.py
    sup#<address>                     the suppression list                suppressions_dynamodb.py
    tpl#, sched#, ctl#, node#, whk#    small items: templates, schedules,  items.py
                                      controls, heartbeats, webhooks
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gomailpy.config.settings import Settings
from gomailpy.errors import ConditionFailedError, StoreError
from gomailpy.queues.aws import AwsResource, open_aws_client

# Read timeout of every call on the table: a status call must never hold a send for long.
CALL_TIMEOUT_S = 5.0
DYNAMODB_ERRORS = (ClientError, BotoCoreError, OSError, TimeoutError)
BATCH_TRIES = 4  # calls of one batch, while DynamoDB leaves part of it unprocessed


async def open_table_client(stack: AsyncExitStack, settings: Settings, *, max_attempts: int) -> Any:
    """A DynamoDB client for the status table's region and endpoint, closed with `stack`."""
    return await open_aws_client(
        stack,
        "dynamodb",
        settings.aws,
        region=settings.status.region,
        endpoint_url=settings.status.endpoint_url,
        read_timeout_s=min(settings.aws.client_timeout_s, CALL_TIMEOUT_S),
        max_attempts=max_attempts,
    )


def error_code(exc: BaseException) -> str:
    """DynamoDB's error code (`ConditionalCheckFailedException`, ...), or "" for other failures."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def error_reason(exc: BaseException) -> str:
    """A failed call's reason for StoreError: `Code: Message`, or the exception."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def to_attribute(value: Any) -> dict[str, Any]:
    """A Python value (None, bool, number, str, dict, list) as a DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dict):
        return {"M": {k: to_attribute(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"L": [to_attribute(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def from_attribute(value: dict[str, Any]) -> Any:
    """`to_attribute`'s inverse (whole numbers come back as int)."""
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
        return {k: from_attribute(v) for k, v in raw.items()}
    if kind == "L":
        return [from_attribute(v) for v in raw]
    raise TypeError(f"unexpected DynamoDB type {kind}")


class DynamoTable(AwsResource):
    """The status table: a one-shot async context manager over one DynamoDB client (or the
    `client` given, which stays the caller's). `max_attempts`: botocore's, per call (few: a
    status call must never hold a send for long)."""

    def __init__(self, settings: Settings, *, client: Any = None, max_attempts: int = 3) -> None:
        super().__init__(client=client)
        self._client_settings = settings
        self._max_attempts = max_attempts
        self.name = settings.status.table

    async def _open_client(self, stack: AsyncExitStack) -> Any:
        settings = self._client_settings
        return await open_table_client(stack, settings, max_attempts=self._max_attempts)

    async def call(self, operation: str, **kwargs: Any) -> Any:
        """One call on the table (`TableName` added, except to batch calls, which name it in
        their requests); StoreError when it fails, ConditionFailedError when its condition did
        not hold."""
        if not operation.startswith("batch_"):
            kwargs["TableName"] = self.name
        try:
            return await getattr(self._client, operation)(**kwargs)
        except DYNAMODB_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise ConditionFailedError(operation) from exc
            raise StoreError(operation, error_reason(exc)) from exc

    async def batch(self, operation: str, requests: Any, unprocessed: str) -> list[Any]:
        """One batch call on this table, again for what DynamoDB left unprocessed (throttling
        spreads a batch over calls); StoreError when some of it is still left after
        BATCH_TRIES calls. Returns every call's answer."""
        answers, left = await self.batch_leaving(operation, requests, unprocessed)
        if left:
            raise StoreError(operation, "DynamoDB left part of the batch unprocessed")
        return answers

    async def batch_leaving(
        self, operation: str, requests: Any, unprocessed: str
    ) -> tuple[list[Any], Any]:
        """`batch`, returning what is still unprocessed after BATCH_TRIES calls (empty when
        nothing) instead of raising: a caller that shares a call fails only those items."""
        answers: list[Any] = []
        for attempt in range(BATCH_TRIES):
            answer = await self.call(operation, RequestItems={self.name: requests})
            answers.append(answer)
            left = answer.get(unprocessed, {}).get(self.name)
            if not left:
                return answers, []
            requests = left
            if attempt + 1 < BATCH_TRIES:
                await asyncio.sleep(0.05 * 2**attempt)
        return answers, requests

    async def ensure_table(self) -> None:
        """Create the table (on-demand capacity) with TTL on `expires_at`; safe to run again."""
        client = self._client
        try:
            await client.create_table(
                TableName=self.name,
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
            await waiter.wait(TableName=self.name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
            ttl = await client.describe_time_to_live(TableName=self.name)
            if ttl.get("TimeToLiveDescription", {}).get("TimeToLiveStatus") not in (
                "ENABLED",
                "ENABLING",
            ):
                await client.update_time_to_live(
                    TableName=self.name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
                )
        except DYNAMODB_ERRORS as exc:
            raise StoreError("ensure_table", error_reason(exc)) from exc
