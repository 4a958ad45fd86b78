"""One way to open an aiobotocore client (SQS, SES, S3, DynamoDB) from settings, and the base of
every class that owns one (`AwsResource`).

Clients are long-lived: open one per service per process, inside an `AsyncExitStack` owned by the
component (API app, pipeline node), never one per call (aio-libs/aiobotocore#806).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from gomailpy.lifecycle import AsyncResource
from gomailpy.settings import AwsSettings

# SQS long polling holds a receive open for up to 20 s: the read timeout must outlast it.
LONG_POLL_MAX_S = 20


async def open_aws_client(
    stack: AsyncExitStack,
    service: str,
    aws: AwsSettings,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    read_timeout_s: float | None = None,
    max_attempts: int = 3,
) -> Any:
    """Enter a client for `service` on `stack` and return it; closed when the stack closes.

    Timeouts are bounded (`aws.client_timeout_s` for connecting and reading, plus the long-poll
    time for SQS) so an unreachable server gives an error, never a hang. `max_attempts` counts
    the first try: botocore's "standard" retry mode backs off between attempts.
    """
    config = AioConfig(
        connect_timeout=aws.client_timeout_s,
        read_timeout=read_timeout_s if read_timeout_s is not None else aws.client_timeout_s,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=aws.max_pool_connections,
    )
    credentials: dict[str, str] = {}
    if aws.access_key_id is not None and aws.secret_access_key is not None:
        credentials = {
            "aws_access_key_id": aws.access_key_id.get_secret_value(),
            "aws_secret_access_key": aws.secret_access_key.get_secret_value(),
        }
    session = get_session()
    return await stack.enter_async_context(
        session.create_client(
            service,
            region_name=region or aws.region,
            endpoint_url=endpoint_url or aws.endpoint_url,
            config=config,
            **credentials,
        )
    )


class AwsResource(AsyncResource):
    """A one-shot async context manager over one aiobotocore client (see `gomailpy.lifecycle`).

    Entering it opens the subclass's client (`_open_client`) unless a ready `client` was given,
    which then stays the caller's to close.
    """

    def __init__(self, *, client: Any = None) -> None:
        self._client = client
        self._stack = AsyncExitStack()

    async def _open_client(self, stack: AsyncExitStack) -> Any:
        raise NotImplementedError

    async def _start(self) -> None:
        if self._client is None:
            self._client = await self._open_client(self._stack)

    async def _stop(self) -> None:
        await self._stack.aclose()
