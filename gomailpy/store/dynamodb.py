"""The DynamoDB client of the status table (`status.table`) and how its failures are named,
shared by every store that keeps items on it: delivery records (gomailpy.store.deliveries), outcomes
and the suppression list (gomailpy.store.events_dynamodb), templates, schedules and controls
(gomailpy.store.items).

    client = await open_table_client(stack, settings, max_attempts=2)
    except DYNAMODB_ERRORS as exc: raise StoreError(operation, error_reason(exc))
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gomailpy.config.settings import Settings
from gomailpy.queues.aws import open_aws_client

# Read timeout of every call on the table: a status call must never hold a send for long.
CALL_TIMEOUT_S = 5.0
DYNAMODB_ERRORS = (ClientError, BotoCoreError, OSError, TimeoutError)


async def open_table_client(
    stack: AsyncExitStack, settings: Settings, *, max_attempts: int
) -> Any:
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
