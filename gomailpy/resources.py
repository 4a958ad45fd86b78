"""Create what the status store and the claim check need (`gomail init`, `gomail up`, tests)."""

from __future__ import annotations

from contextlib import AsyncExitStack

from gomailpy.claim_check import ClaimCheck
from gomailpy.settings import Settings
from gomailpy.status_store import DynamoStatusStore


async def ensure_resources(settings: Settings) -> list[str]:
    """Create the DynamoDB status table and the S3 claim-check bucket when configured; safe to
    run again. Returns what is ready, e.g. ["table gomailpy-status", "bucket b"]."""
    ready: list[str] = []
    async with AsyncExitStack() as stack:
        if settings.status.backend == "dynamodb":
            store = await DynamoStatusStore.open(stack, settings)
            await store.ensure_table()
            ready.append(f"table {settings.status.table}")
        if settings.claim_check.enabled:
            claim_check = await ClaimCheck.open(stack, settings)
            await claim_check.ensure_bucket()
            ready.append(f"bucket {claim_check.bucket}")
    return ready
