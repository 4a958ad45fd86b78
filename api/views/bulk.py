"""The links in bulk mail, and the unsubscribe groups (gomailpy.bulk; docs/bulk-sending.md).

    GET  /u/{token}      the confirmation page: never unsubscribes (scanners fetch every link)
    POST /u/{token}      `List-Unsubscribe=One-Click` (RFC 8058): unsubscribed at once, 200
    GET  /t/o/{token}    the open pixel (a 1x1 GIF): an `opened` event
    GET  /t/c/{token}    a tracked link: 302 to the URL the email had, a `clicked` event
    GET|POST /asm/groups, DELETE /asm/groups/{id}: the unsubscribe groups (scope suppressions)

No API key on /u/ and /t/: the signed token is the authority (gomailpy.bulk.tokens), checked
with the secret alone; malformed 400, forged 403, expired 410, and nothing recorded. An
unsubscribe is written to the suppression list before the answer and its `unsubscribed` event
put on the events queue (so webhooks fire); opens and clicks write nothing on the request path,
their events go out in batches (gomailpy.bulk.batcher). With `bulk` off (no secret or public
URL) these routes answer 404.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

from aiohttp import web

from api.keys import SETTINGS
from api.responses import error_response
from api.views.body import read_json
from api.views.suppressions import SUPPRESSION_STORE
from api.views.templates import ITEM_TABLE
from gomailpy.bulk.batcher import EventBatcher
from gomailpy.bulk.groups import MAX_DESCRIPTION, MAX_NAME, Group, GroupStore
from gomailpy.bulk.hits import engaged, unsubscribed
from gomailpy.bulk.links import GIF
from gomailpy.bulk.machine import is_machine
from gomailpy.bulk.page import CSP, confirmation_page, done_page
from gomailpy.bulk.tokens import Kind, Link, verify
from gomailpy.bulk.unsubscribes import record_unsubscribes
from gomailpy.config.bulk import BulkSettings
from gomailpy.errors import InvalidEmailError, MalformedRequestError
from gomailpy.events import Event, EventType
from gomailpy.queues.aws import open_aws_client
from gomailpy.queues.sqs import create_queue_client

BATCHER = web.AppKey("bulk_events", EventBatcher)
# Past the other middlewares (api.middleware.fast_lane_middleware): hit by every mail client.
OPEN_ROUTE, CLICK_ROUTE = "/t/o/{token}", "/t/c/{token}"
FAST_ROUTES = (OPEN_ROUTE, CLICK_ROUTE)
MAX_FORM_BYTES = 4096
OFF = "Unsubscribe links and tracking are off on this server (bulk.secret, bulk.public_url)"
GROUPS_OFF = "Unsubscribe groups need a status table (status.backend memory or dynamodb)"
NOT_ONE_CLICK = "The body must be List-Unsubscribe=One-Click (RFC 8058)"
NOWHERE = "Neither the suppression list nor the events queue is configured here"
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    # Not no-referrer: under it a browser sends `Origin: null` with the page's own form POST,
    # which the cross-site check (api.middleware) refuses, so the button never unsubscribed.
    # same-origin keeps the token-bearing URL from other sites and lets the form say its origin.
    "Referrer-Policy": "same-origin",
    "X-Robots-Tag": "noindex",
}
PIXEL_HEADERS = {"Cache-Control": "no-store, max-age=0", "Content-Type": "image/gif"}


async def bulk_resources(app: web.Application) -> AsyncIterator[None]:
    """The events batcher, when bulk links and events are both on."""
    settings = app[SETTINGS]
    async with AsyncExitStack() as stack:
        if settings.bulk.enabled and settings.events.enabled:
            client = await open_aws_client(stack, "sqs", settings.aws, max_attempts=2)
            queues = await stack.enter_async_context(create_queue_client(settings, client=client))
            app[BATCHER] = await stack.enter_async_context(
                EventBatcher(
                    queues,
                    settings.events.queue,
                    interval_s=settings.bulk.flush_interval_s,
                    max_pending=settings.bulk.max_pending_events,
                )
            )
        yield


def _bulk(request: web.Request) -> BulkSettings:
    bulk = request.app[SETTINGS].bulk
    if not bulk.enabled:
        raise web.HTTPNotFound(reason=OFF)
    return bulk


def _link(request: web.Request, kind: Kind) -> Link:
    bulk = _bulk(request)
    ttl = bulk.unsubscribe_ttl_s if kind is Kind.UNSUBSCRIBE else bulk.tracking_ttl_s
    return verify(request.match_info["token"], bulk.key(), kind, ttl_s=ttl, now=time.time())


def _displayed(link: Link) -> list[int]:
    # An unsubscribe token's URL field carries the groups to display ("3,4"): gomailpy.bulk.headers
    return [int(g) for g in link.url.split(",") if g.isdigit() and 0 < int(g) < 2**32]


async def _groups(request: web.Request, ids: list[int]) -> dict[int, Group]:
    table = request.app.get(ITEM_TABLE)
    found = await GroupStore(table).get_many(ids) if table is not None and ids else {}
    return {i: found.get(i, Group(i, "")) for i in ids}


async def unsubscribe_page(request: web.Request) -> web.Response:
    link = _link(request, Kind.UNSUBSCRIBE)
    ids = ([link.group] if link.group else []) + _displayed(link)
    groups = await _groups(request, list(dict.fromkeys(ids)))
    own = groups.get(link.group) if link.group else None
    shown = [groups[i] for i in _displayed(link)]
    html = confirmation_page(request.path, link.recipient, own, shown)
    return web.Response(text=html, content_type="text/html", headers=PAGE_HEADERS)


async def unsubscribe(request: web.Request) -> web.Response:
    link = _link(request, Kind.UNSUBSCRIBE)
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise MalformedRequestError(f"The body must be at most {MAX_FORM_BYTES} bytes")
    try:
        form = await request.post()
    except ValueError:
        raise MalformedRequestError(NOT_ONE_CLICK) from None
    if form.get("List-Unsubscribe") != "One-Click":
        raise MalformedRequestError(NOT_ONE_CLICK)
    from_page = form.get("from") == "page"
    groups: list[int | None]
    if not from_page:
        groups = [link.group]
    elif form.get("all") == "1":
        groups = [None]
    else:
        allowed = {g for g in [link.group, *_displayed(link)] if g}
        chosen = [str(v) for v in form.getall("group", [])]
        groups = [int(v) for v in chosen if v.isdigit() and int(v) in allowed]
    now = time.time()
    via = "page" if from_page else "one-click"
    events = [unsubscribed(link, group, now, via) for group in dict.fromkeys(groups)]
    await _record_unsubscribes(request, events)
    if not from_page:
        return web.Response(text="Unsubscribed\n", headers={"Cache-Control": "no-store"})
    names = await _groups(request, [g for g in groups if g is not None])
    left = [names[g].label if g is not None else "everything" for g in groups]
    return web.Response(
        text=done_page(link.recipient, left), content_type="text/html", headers=PAGE_HEADERS
    )


async def _record_unsubscribes(request: web.Request, events: list[Event]) -> None:
    """Suppress now (the list) and put the events on the queue (webhooks, the timeline)."""
    store = request.app.get(SUPPRESSION_STORE)
    batcher = request.app.get(BATCHER)
    if events and store is None and batcher is None:
        raise web.HTTPNotImplemented(reason=NOWHERE)
    await record_unsubscribes(events, suppression=store, batcher=batcher)


@dataclass(frozen=True, slots=True)
class _Tracking:
    """What every open or click needs, read from the settings once (api.app's fast lane: these
    routes are hit by every recipient's mail client)."""

    key: bytes
    ttl_s: float
    machine_window_s: float
    batcher: EventBatcher | None


TRACKING = web.AppKey("bulk_tracking", _Tracking)


async def _tracking_context(app: web.Application) -> None:
    # on_startup, after bulk_resources (cleanup contexts start first) has made the batcher.
    bulk = app[SETTINGS].bulk
    if bulk.enabled:
        app[TRACKING] = _Tracking(
            bulk.key(), bulk.tracking_ttl_s, bulk.machine_window_s, app.get(BATCHER)
        )


def _engagement(request: web.Request, kind: Kind, event_type: EventType) -> Link:
    tracking = request.app.get(TRACKING)
    if tracking is None:
        raise web.HTTPNotFound(reason=OFF)
    now = time.time()
    link = verify(request.match_info["token"], tracking.key, kind, ttl_s=tracking.ttl_s, now=now)
    if tracking.batcher is not None:
        agent = request.headers.get("User-Agent", "")
        machine = is_machine(agent, link.issued_at, now, tracking.machine_window_s)
        tracking.batcher.add(engaged(link, event_type, agent, machine, now))
    return link


async def open_pixel(request: web.Request) -> web.Response:
    _engagement(request, Kind.OPEN, EventType.OPENED)
    return web.Response(body=GIF, headers=PIXEL_HEADERS)


async def click(request: web.Request) -> web.Response:
    link = _engagement(request, Kind.CLICK, EventType.CLICKED)
    if not link.url.lower().startswith(("https://", "http://")):
        return error_response(400, "This link does not lead anywhere")
    raise web.HTTPFound(link.url, headers={"Cache-Control": "no-store"})


# -- groups -------------------------------------------------------------------------------------


def _group_store(request: web.Request) -> GroupStore:
    table = request.app.get(ITEM_TABLE)
    if table is None:
        raise web.HTTPNotImplemented(reason=GROUPS_OFF)
    return GroupStore(table)


async def list_groups(request: web.Request) -> web.Response:
    groups = await _group_store(request).list()
    return web.json_response({"groups": [g.to_json() for g in groups]})


async def add_group(request: web.Request) -> web.Response:
    store = _group_store(request)
    data = await read_json(request, MAX_FORM_BYTES)
    if not isinstance(data, dict):
        raise MalformedRequestError('Body must be {"name": ..., "description": ..., "id": ...}')
    errors: dict[str, str] = {}
    name, description = data.get("name"), data.get("description", "")
    if not isinstance(name, str) or not 0 < len(name.strip()) <= MAX_NAME:
        errors["name"] = f"Name is required, at most {MAX_NAME} characters"
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        errors["description"] = f"Description must be at most {MAX_DESCRIPTION} characters"
    unknown = set(data) - {"id", "name", "description"}
    if unknown:
        errors["base"] = f"Unknown field(s): {', '.join(sorted(map(str, unknown)))}"
    group_id = data.get("id")
    if group_id is None:
        group_id = await store.next_id()
    if isinstance(group_id, bool) or not isinstance(group_id, int) or not 0 < group_id < 2**32:
        errors["id"] = "Id must be a positive integer"
    if errors:
        raise InvalidEmailError(errors)
    assert isinstance(name, str) and isinstance(description, str)
    group = Group(group_id, name.strip(), description)
    await store.add(group)
    return web.json_response(group.to_json(), status=201)


async def remove_group(request: web.Request) -> web.Response:
    raw = request.match_info["group"]
    if not raw.isdigit() or not 0 < int(raw) < 2**32:
        return error_response(404, "No such group")
    if not await _group_store(request).remove(int(raw)):
        return error_response(404, "No such group")
    return web.Response(status=204)


def add_bulk_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(bulk_resources)
    app.on_startup.append(_tracking_context)
    app.router.add_get("/u/{token}", unsubscribe_page, name="unsubscribe", allow_head=False)
    app.router.add_post("/u/{token}", unsubscribe)
    app.router.add_get(OPEN_ROUTE, open_pixel, name="open_pixel", allow_head=False)
    app.router.add_get(CLICK_ROUTE, click, name="click", allow_head=False)
    app.router.add_get("/asm/groups", list_groups, name="asm_groups", allow_head=False)
    app.router.add_post("/asm/groups", add_group)
    app.router.add_delete("/asm/groups/{group}", remove_group, name="asm_group")
