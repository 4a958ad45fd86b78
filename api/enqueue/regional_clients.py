"""SQS clients for the queues of other AWS regions than `aws.region` (regional queues).

SQS serves a queue only at its own region's endpoint: a client made for eu-west-1 asked to send
to https://sqs.us-east-1.amazonaws.com/... answers NonExistentQueue. An API that spills mail to
another region's queues (gomailpy.config.regions) therefore gets one client per AWS region its
queue URLs name; queues given by name, other hosts, and everything under `aws.endpoint_url` (an
emulator serves every region at one address) use the API's main client.
"""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

from gomailpy.config.settings import Settings
from gomailpy.queues.aws import open_aws_client
from gomailpy.queues.sqs import QueueClient, create_queue_client

# sqs.<region>.amazonaws.com (and .com.cn), and the legacy <region>.queue.amazonaws.com.
_SQS_HOST = re.compile(
    r"^(?:sqs\.(?P<a>[a-z0-9-]+)|(?P<b>[a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?$"
)


def url_region(entry: str) -> str | None:
    """The AWS region an SQS queue URL names; None for a name or another host."""
    if "://" not in entry:
        return None
    match = _SQS_HOST.match(urlsplit(entry).hostname or "")
    return (match.group("a") or match.group("b")) if match else None


async def open_regional_clients(
    stack: AsyncExitStack, settings: Settings, **client_options: Any
) -> dict[str, QueueClient]:
    """Configured queue entry -> a client for its region, for each entry in another region than
    `aws.region` (none under `aws.endpoint_url`). `client_options` go to `open_aws_client`."""
    if settings.aws.endpoint_url is not None:
        return {}
    by_region: dict[str, QueueClient] = {}
    clients: dict[str, QueueClient] = {}
    for entry in settings.queues.urls:
        region = url_region(entry)
        if region is None or region == settings.aws.region:
            continue
        if region not in by_region:
            client = await open_aws_client(
                stack, "sqs", settings.aws, region=region, **client_options
            )
            by_region[region] = await stack.enter_async_context(
                create_queue_client(settings, client=client)
            )
        clients[entry] = by_region[region]
    return clients
