"""GET /events?messageId=M&since=T&cursor=C&limit=N: an email's events, for applications that
pull rather than take webhooks.

    200 {"events": [<event>, ...], "next": "<cursor>" | null}

Events in time order (then by id), each in the shape webhooks carry as `data`; `since` (ISO
8601 or epoch seconds) keeps those at or after it; `next` continues after the last one returned
(null: the last page; to poll for new ones, pass `since` = the last event's `at`). Read
from the outcome store, so the feed holds what providers reported and what the pipeline dropped
(gomailpy's own `sent` and `failed` are in `GET /email/{id}`'s record and in the webhooks).
Behind the API key like /email/. 501 when no outcome store is kept (`status.backend` none).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aiohttp import web

from api.responses import error_response
from api.views.delivery import DELIVERY_STORE
from api.views.suppressions import OUTCOME_STORE
from gomailpy.errors import StoreError
from gomailpy.events import Event, epoch

PATH = "/events"
MAX_PAGE = 500
MAX_ID = 200
OFF = "No events are kept on this server (status.backend is none)"


def _cursor(event: Event) -> str:
    key = json.dumps([epoch(event.at), event.id]).encode()
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def _after(cursor: str) -> tuple[float, str]:
    """ValueError for a cursor this API never gave."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, event_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return float(at), str(event_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ValueError("cursor: not one this API gave (use `next` from an answer)") from None


def _since(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    value = epoch(text)
    if value == 0.0:
        raise ValueError("since: an ISO 8601 time (2026-11-28T07:00:00Z) or epoch seconds")
    return value


def _query(request: web.Request) -> tuple[str, float | None, tuple[float, str] | None, int]:
    """(messageId, since, after, limit); ValueError naming the parameter that is wrong."""
    query = request.query
    message_id = query.get("messageId", "").strip()
    if not message_id or len(message_id) > MAX_ID:
        raise ValueError(f"messageId: required, the id POST /email/send answered (≤ {MAX_ID})")
    since = _since(query["since"]) if query.get("since") else None
    after = _after(query["cursor"]) if query.get("cursor") else None
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit: a whole number from 1 to {MAX_PAGE}")
    return message_id, since, after, limit


async def list_events(request: web.Request) -> web.Response:
    store = request.app.get(OUTCOME_STORE)
    if store is None:
        return error_response(501, OFF)
    try:
        message_id, since, after, limit = _query(request)
    except ValueError as exc:
        return error_response(400, str(exc))
    provider: dict[str, Any] = {}
    status = request.app.get(DELIVERY_STORE)
    if status is not None:  # events filed under the provider's id join by the send's record
        try:
            record = await status.get(message_id)
        except StoreError:
            record = None
        if record is not None and record.provider_message_id:
            provider = {
                "provider": record.provider,
                "provider_message_id": record.provider_message_id,
            }
    events = sorted(await store.events(message_id, **provider), key=lambda e: (epoch(e.at), e.id))
    if since is not None:
        events = [e for e in events if epoch(e.at) >= since]
    if after is not None:
        events = [e for e in events if (epoch(e.at), e.id) > after]
    page = events[:limit]
    following = _cursor(page[-1]) if page else request.query.get("cursor")
    return web.json_response(
        {"events": [e.to_json() for e in page], "next": following if len(events) > limit else None}
    )


def add_feed_routes(app: web.Application) -> None:
    app.router.add_get(PATH, list_events, name="events_feed", allow_head=False)


_PAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "events": {"type": "array", "items": {"type": "object"}},
        "next": {"type": ["string", "null"]},
    },
    "required": ["events", "next"],
}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    errors = {"$ref": "#/components/schemas/Errors"}
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or errors}},
    }


OPENAPI_PATHS: dict[str, Any] = {
    PATH: {
        "get": {
            "operationId": "listEvents",
            "summary": "An email's events in time order, a page at a time",
            "parameters": [
                {
                    "name": "messageId",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string"},
                },
                {"name": "since", "in": "query", "schema": {"type": "string"}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            ],
            "responses": {
                "200": _answer(
                    "A page; `next` continues after it (null: nothing more now)", _PAGE_SCHEMA
                ),
                "400": _answer("A parameter that is missing or wrong, named in errors.base"),
                "501": _answer(OFF),
            },
        }
    }
}
