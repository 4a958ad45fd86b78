"""The suppression list and per-recipient outcomes, as the API serves them.

    GET    /suppressions?cursor=C&limit=N   {"suppressions": [...], "next": C2 | null}
    GET    /suppressions/{address}          the entry, or 404
    PUT    /suppressions/{address}          suppress it (`{"reason": "..."}`, optional): 200
    DELETE /suppressions/{address}          204, or 404 when it was not suppressed

Behind the API key like /email/ (api.auth). 501 when no list is kept (`status.backend` none or
`suppression.enabled` false). An entry: `{"address", "kind", "reason", "provider",
"firstSeen", "lastSeen"}`.

Also here: `with_outcomes`, which adds each recipient's outcome and the events to the answer
of `GET /email/{id}` (api.views.delivery), and `refuse_if_suppressed`, the optional check of
`POST /email/send` (`suppression.refuse_at_api`: 422 when every recipient is suppressed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from api.keys import SETTINGS
from api.responses import error_response
from api.views.body import read_json
from gomailpy.email.models import Email, normalize_address
from gomailpy.errors import InvalidEmailError, MalformedRequestError, StoreError
from gomailpy.events import EventType
from gomailpy.feedback.engagement import hit_details
from gomailpy.store.backends import open_event_stores
from gomailpy.store.events import EventStore, event_entry, fold, sorted_timeline
from gomailpy.store.suppressions import MAX_REASON, SuppressionKind, SuppressionStore, manual

log = logging.getLogger("gomailpy.api")

# Set by `event_resources` only when configured: read them with `app.get(...)`.
OUTCOME_STORE = web.AppKey("outcome_store", EventStore)
SUPPRESSION_STORE = web.AppKey("suppression_store", SuppressionStore)

LIST_OFF = (
    "The suppression list is off on this server (status.backend is none, or"
    " suppression.enabled is false)"
)
MAX_PAGE = 1000
MAX_BODY_BYTES = 4096
MAX_CURSOR_BYTES = 1024  # a `sup#<address>` key: addresses are at most 254 characters


async def event_resources(app: web.Application) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        stores = await open_event_stores(stack, app[SETTINGS])
        if stores.outcomes is not None:
            app[OUTCOME_STORE] = stores.outcomes
        if stores.suppression is not None:
            app[SUPPRESSION_STORE] = stores.suppression
        yield


def _list_of(request: web.Request) -> SuppressionStore | None:
    return request.app.get(SUPPRESSION_STORE)


def _address(request: web.Request) -> str:
    try:
        return normalize_address(request.match_info["address"]).lower()
    except ValueError as exc:
        raise InvalidEmailError({"address": str(exc)}) from None


async def list_suppressions(request: web.Request) -> web.Response:
    store = _list_of(request)
    if store is None:
        return error_response(501, LIST_OFF)
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        return error_response(400, f"limit must be a whole number from 1 to {MAX_PAGE}")
    cursor = request.query.get("cursor") or None
    if cursor is not None and len(cursor.encode()) > MAX_CURSOR_BYTES:
        return error_response(400, "cursor is not one this API gave out")
    entries, cursor = await store.page(cursor, limit)
    return web.json_response({"suppressions": [e.to_json() for e in entries], "next": cursor})


async def get_suppression(request: web.Request) -> web.Response:
    store = _list_of(request)
    if store is None:
        return error_response(501, LIST_OFF)
    address = _address(request)
    entry = await store.get(address)
    if entry is None:
        return error_response(404, f"{address} is not suppressed")
    return web.json_response(entry.to_json())


async def put_suppression(request: web.Request) -> web.Response:
    store = _list_of(request)
    if store is None:
        return error_response(501, LIST_OFF)
    address = _address(request)
    reason = "added by an operator"
    if request.can_read_body:
        data = await read_json(request, MAX_BODY_BYTES)
        if not isinstance(data, dict) or not isinstance(data.get("reason", ""), str):
            raise MalformedRequestError('The body must be {"reason": "..."} (or empty)')
        reason = data.get("reason") or reason
    if len(reason) > MAX_REASON:
        raise InvalidEmailError({"reason": f"at most {MAX_REASON} characters"})
    entry = manual(address, reason, time.time())
    await store.put(entry)
    return web.json_response(entry.to_json())


async def delete_suppression(request: web.Request) -> web.Response:
    store = _list_of(request)
    if store is None:
        return error_response(501, LIST_OFF)
    address = _address(request)
    if not await store.remove(address):
        return error_response(404, f"{address} is not suppressed")
    return web.Response(status=204)


async def with_outcomes(app: web.Application, answer: dict[str, Any]) -> dict[str, Any]:
    """`GET /email/{id}`'s answer with `recipients` ({address: {state, subtype, reason, at,
    provider}}) and the provider's events merged into `timeline` (opens and clicks with
    `userAgent`, `url` and `machine`). A store that cannot be read
    leaves the answer as it was (logged)."""
    store = app.get(OUTCOME_STORE)
    if store is None:
        return answer
    try:
        events = await store.events(
            answer["messageId"],
            provider=answer.get("provider"),
            provider_message_id=answer.get("providerMessageId"),
        )
    except StoreError as exc:
        log.warning("outcomes of %s not read: %s", answer["messageId"], exc)
        return answer
    answer["recipients"] = {a: o.to_json() for a, o in sorted(fold(events).items())}
    window_s = app[SETTINGS].bulk.machine_window_s
    # Opens and clicks say who or what hit them (agent, link, machine), whoever reported them.
    entries = [{**event_entry(e), **hit_details(e, window_s)} for e in events]
    answer["timeline"] = sorted_timeline([*answer["timeline"], *entries])
    return answer


async def refuse_if_suppressed(app: web.Application, email: Email) -> None:
    """With `suppression.refuse_at_api`: 422 (on `toEmail`) when every recipient is suppressed.
    The list unreadable: the email is accepted (the pipeline checks again before sending)."""
    store = app.get(SUPPRESSION_STORE)
    if store is None or not app[SETTINGS].suppression.refuse_at_api:
        return
    addresses = [a.email for a in email.recipients]
    try:
        found = await store.lookup(addresses)
    except StoreError as exc:
        log.warning("suppression list not read at the API: %s", exc)
        return
    if len(found) < len({a.lower() for a in addresses}):
        return
    why = "; ".join(entry.describe() for entry in found.values())
    raise InvalidEmailError({"toEmail": f"every recipient is suppressed: {why}"})


def add_suppression_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(event_resources)
    app.router.add_get("/suppressions", list_suppressions, name="suppressions", allow_head=False)
    path = "/suppressions/{address}"
    app.router.add_get(path, get_suppression, name="suppression", allow_head=False)
    app.router.add_put(path, put_suppression)
    app.router.add_delete(path, delete_suppression)


# -- OpenAPI (api.schema.openapi adds these) -------------------------------------------------------

EVENT_STATES = [t.value for t in EventType]
RECIPIENTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Each recipient's outcome from the providers' events (highest rank wins)",
    "additionalProperties": {
        "type": "object",
        "properties": {
            "state": {"type": "string", "enum": EVENT_STATES},
            "subtype": {"type": ["string", "null"], "description": "hard | soft | suppressed"},
            "reason": {"type": ["string", "null"]},
            "at": {"type": "string", "format": "date-time"},
            "provider": {"type": "string"},
        },
        "required": ["state", "at"],
    },
}
_ENTRY = {
    "type": "object",
    "properties": {
        "address": {"type": "string"},
        "kind": {"type": "string", "enum": [k.value for k in SuppressionKind]},
        "reason": {"type": "string"},
        "provider": {"type": "string"},
        "firstSeen": {"type": "string"},
        "lastSeen": {"type": "string"},
    },
    "required": ["address", "kind", "reason", "provider", "firstSeen", "lastSeen"],
}
_ERRORS = {"$ref": "#/components/schemas/Errors"}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or _ERRORS}},
    }


_ADDRESS = {"name": "address", "in": "path", "required": True, "schema": {"type": "string"}}
_OFF = _answer("No suppression list is kept (status.backend none or suppression.enabled false)")
_BAD_ADDRESS = _answer("Not an email address (errors.address)")
OPENAPI_PATHS: dict[str, Any] = {
    "/suppressions": {
        "get": {
            "operationId": "listSuppressions",
            "summary": "The suppression list, a page at a time",
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": _answer(
                    "A page; `next` is the cursor of the next one (null: the last)",
                    {
                        "type": "object",
                        "properties": {
                            "suppressions": {"type": "array", "items": _ENTRY},
                            "next": {"type": ["string", "null"]},
                        },
                        "required": ["suppressions", "next"],
                    },
                ),
                "400": _answer("A limit outside 1-1000, or a cursor this API never gave"),
                "501": _OFF,
            },
        }
    },
    "/suppressions/{address}": {
        "get": {
            "operationId": "getSuppression",
            "summary": "Why an address is suppressed",
            "parameters": [_ADDRESS],
            "responses": {
                "200": _answer("The entry", _ENTRY),
                "404": _answer("Not suppressed"),
                "422": _BAD_ADDRESS,
                "501": _OFF,
            },
        },
        "put": {
            "operationId": "putSuppression",
            "summary": "Suppress an address (kind manual)",
            "parameters": [_ADDRESS],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"reason": {"type": "string", "maxLength": MAX_REASON}},
                        }
                    }
                },
            },
            "responses": {
                "200": _answer("Suppressed", _ENTRY),
                "400": _answer('The body is not JSON of the form {"reason": "..."}'),
                "422": _BAD_ADDRESS,
                "501": _OFF,
            },
        },
        "delete": {
            "operationId": "deleteSuppression",
            "summary": "Take an address off the list (its soft bounces are forgotten too)",
            "parameters": [_ADDRESS],
            "responses": {
                "204": {"description": "Removed"},
                "404": _answer("Not suppressed"),
                "422": _BAD_ADDRESS,
                "501": _OFF,
            },
        },
    },
}
