"""Create what the delivery store and the claim check need (`gomail init`, `gomail up`, tests)."""

from __future__ import annotations

from contextlib import AsyncExitStack

from gomailpy.claim_check import ClaimCheck
from gomailpy.deliveries import DynamoDeliveryStore
from gomailpy.settings import Settings


async def ensure_resources(settings: Settings) -> list[str]:
    """Create the DynamoDB delivery table and the S3 claim-check bucket when configured; safe to
    run again. Returns what is ready, e.g. ["table gomailpy-status", "bucket b"]."""
    ready: list[str] = []
    async with AsyncExitStack() as stack:
        if settings.status.backend == "dynamodb":
            store = await stack.enter_async_context(DynamoDeliveryStore(settings))
            await store.ensure_table()
            ready.append(f"table {settings.status.table}")
        if settings.claim_check.enabled:
            claim_check = await stack.enter_async_context(ClaimCheck(settings))
            await claim_check.ensure_bucket()
            ready.append(f"bucket {claim_check.bucket}")
    return ready
