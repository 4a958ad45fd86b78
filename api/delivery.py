"""Delivery status, idempotency keys and the claim check, as the API uses them.

- `delivery_resources`: the app's cleanup context that opens the delivery store and the claim
  check configured in settings (each absent when off); nothing is contacted at startup.
- `get_email_status`: GET /email/{messageId}, the record and its timeline.
- `check_idempotency_key` / `request_hash`: the Idempotency-Key rules of POST /email/send
  (which itself lives in api.routes).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from api.keys import SETTINGS
from api.responses import error_response
from gomailpy.claim_check import ClaimCheck, open_claim_check
from gomailpy.deliveries import DeliveryStore, open_delivery_store

# Set by `delivery_resources` only when configured: read them with `app.get(...)`.
DELIVERY_STORE = web.AppKey("delivery_store", DeliveryStore)
CLAIM_CHECK = web.AppKey("claim_check", ClaimCheck)

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces

STATUS_OFF = "Delivery status is off on this server (status.backend is none): no record is kept"
IDEMPOTENCY_OFF = (
    "Idempotency-Key needs the delivery status store, which is off on this server"
    " (status.backend is none); send the request without the header, or enable the store"
)
KEY_REUSED = (
    "This Idempotency-Key was already used with a different request body; a new email needs"
    " a new key"
)
KEY_IN_PROGRESS = "A request with this Idempotency-Key is still being processed; retry in a moment"


async def delivery_resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with AsyncExitStack() as stack:
        store = await open_delivery_store(stack, settings)
        if store is not None:
            app[DELIVERY_STORE] = store
        claim_check = await open_claim_check(stack, settings)
        if claim_check is not None:
            app[CLAIM_CHECK] = claim_check
        yield


def check_idempotency_key(key: str) -> str | None:
    """Why `key` is not a usable Idempotency-Key, or None."""
    if not _KEY.match(key):
        return (
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
            " without spaces (a UUID is a good key)"
        )
    return None


def request_hash(data: Any) -> str:
    """A fingerprint of a decoded request body: the same JSON, however it is spaced or its keys
    ordered, gives the same hash."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", errors="surrogatepass")).hexdigest()


async def get_email_status(request: web.Request) -> web.Response:
    store = request.app.get(DELIVERY_STORE)
    if store is None:
        return error_response(501, STATUS_OFF)
    message_id = request.match_info["messageId"]
    record = await store.get(message_id)  # a DeliveryStoreError is answered 503 (api.responses)
    if record is None:
        return error_response(
            404, f"No email with messageId {message_id!r} (unknown, or its record expired)"
        )
    return web.json_response(record.to_json())
