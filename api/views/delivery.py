"""Delivery status, idempotency keys and the claim check, as the API uses them.

- `delivery_resources`: the app's cleanup context that opens the delivery store and the claim
  check configured in settings (each absent when off); nothing is contacted at startup.
- `new_message_id`: the id of an email the API is about to queue (with the store on: one that
  carries its issue time and a MAC, gomailpy.store.deliveries.ids).
- `get_email_status`: GET /email/{messageId}, the record and its timeline; `queued` for an id
  the API issued that has no record yet (the API writes nothing per email).
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
from api.views.suppressions import with_outcomes
from gomailpy.events import iso
from gomailpy.queues.claim_check import ClaimCheck, open_claim_check
from gomailpy.store.deliveries import (
    DeliveryState,
    DeliveryStore,
    MessageIds,
    message_ids,
    open_delivery_store,
)
from gomailpy.store.deliveries.base import timeline_entry

# Set by `delivery_resources` only when configured: read them with `app.get(...)`.
DELIVERY_STORE = web.AppKey("delivery_store", DeliveryStore)
CLAIM_CHECK = web.AppKey("claim_check", ClaimCheck)
MESSAGE_IDS = web.AppKey("message_ids", MessageIds)

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
            app[MESSAGE_IDS] = message_ids(settings.status)
        claim_check = await open_claim_check(stack, settings)
        if claim_check is not None:
            app[CLAIM_CHECK] = claim_check
        yield


def new_message_id(app: web.Application, *, parts: int | None = None) -> str | None:
    """An id for the email about to be queued, or with `parts` for a request of that many
    emails (`<id>_<n>`, n < parts); None: the envelope's own (a UUID, status off)."""
    ids = app.get(MESSAGE_IDS)
    return ids.new(parts=parts) if ids is not None else None


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
    record = await store.get(message_id)  # a StoreError is answered 503 (api.responses)
    ids = request.app.get(MESSAGE_IDS)
    issued = ids.issued_at(message_id) if ids is not None else None
    if record is not None:
        answer = record.to_json()
        timeline = answer["timeline"]
        # The API writes nothing per email: the `queued` entry is derived from the id's issue
        # time, and comes first whatever a node recorded later.
        if issued is not None and not any(e.get("state") == "queued" for e in timeline):
            queued = timeline_entry(DeliveryState.QUEUED.value, iso(issued))
            answer["timeline"] = [queued, *timeline]
            answer["createdAt"] = iso(issued)
        return web.json_response(await with_outcomes(request.app, answer))
    if issued is None:
        return error_response(
            404, f"No email with messageId {message_id!r} (unknown, or its record expired)"
        )
    # Issued here, so answered 200 once queued (a failed request's id is never shown), and not
    # tried by a node yet: queued.
    return web.json_response(
        await with_outcomes(
            request.app,
            {
                "messageId": message_id,
                "state": DeliveryState.QUEUED.value,
                "createdAt": iso(issued),
                "updatedAt": iso(issued),
                "provider": None,
                "providerMessageId": None,
                "attempt": 0,
                "reason": None,
                "timeline": [timeline_entry(DeliveryState.QUEUED.value, iso(issued))],
            },
        )
    )
