"""One way to open an aiobotocore client (SQS, SES, S3, DynamoDB) from settings, and the base of
every class that owns one (`AwsResource`).

Clients are long-lived: open one per service per process, inside an `AsyncExitStack` owned by the
component (API app, pipeline node), never one per call (aio-libs/aiobotocore#806).
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from gomailpy.config.settings import AwsSettings
from gomailpy.lifecycle import AsyncResource

# SQS long polling holds a receive open for up to 20 s: the read timeout must outlast it.
LONG_POLL_MAX_S = 20
# What an emulator on this machine (LocalStack, moto) is given when no credentials are configured:
# it takes any (`gomail up` gives its children the same). Never used for any other endpoint.
EMULATOR_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


def is_loopback(url: str | None) -> bool:
    """True when `url` points at this machine (127.0.0.0/8, ::1 or localhost)."""
    if not url:
        return False
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def open_aws_client(
    stack: AsyncExitStack,
    service: str,
    aws: AwsSettings,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    read_timeout_s: float | None = None,
    max_attempts: int = 3,
    validate_parameters: bool = True,
    keep_alive: bool = False,
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
        # Off only for a hot path whose parameters are built by code, never taken from input.
        parameter_validation=validate_parameters,
    )
    session = get_session()
    endpoint = endpoint_url or aws.endpoint_url
    credentials = await _credentials(session, aws, endpoint)
    client = await stack.enter_async_context(
        session.create_client(
            service,
            region_name=region or aws.region,
            endpoint_url=endpoint,
            config=config,
            **credentials,
        )
    )
    if keep_alive:
        client.meta.events.register("before-send", _keep_alive)  # this client's own emitter
    return client


def _keep_alive(request: Any, **_: Any) -> None:
    """Ask for a persistent connection in so many words. HTTP/1.1 means it anyway, and AWS keeps
    connections open either way, but LocalStack's gateway closes every connection whose request
    does not say so (localstack#6557): a TCP connect per call, ~35 % of the calls' CPU on both
    sides (bench/README.md). Only for clients that never long-poll: with several processes
    long-polling over kept-alive connections, LocalStack's server stalls (bench/scale.py: two
    nodes at a third of one node's rate), which is why it closes them in the first place."""
    request.headers["Connection"] = "keep-alive"


async def _credentials(session: Any, aws: AwsSettings, endpoint: str | None) -> dict[str, str]:
    """The configured keys; else, for an emulator on loopback with none in botocore's chain, the
    emulator's dummy ones; else nothing (botocore's chain decides, as for real AWS)."""
    if aws.access_key_id is not None and aws.secret_access_key is not None:
        return {
            "aws_access_key_id": aws.access_key_id.get_secret_value(),
            "aws_secret_access_key": aws.secret_access_key.get_secret_value(),
        }
    if not is_loopback(endpoint):
        return {}
    # The chain without the instance and container metadata services: on loopback those could
    # only time out (and no real key belongs on an emulator anyway).
    resolver = session.get_component("credential_provider")
    for remote in ("iam-role", "container-role"):
        resolver.remove(remote)
    return {} if await session.get_credentials() is not None else dict(EMULATOR_CREDENTIALS)


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
