"""The operator's controls over the providers (gomailpy.operating.controls), through the API:

    GET  /admin/providers                     {"providers": {...}, "pinned": name | null, ...}
    POST /admin/providers/{name}/{action}     {"reason": "...", "value": ...}: the controls after
    GET  /admin/providers/history             {"history": [...]}: ?provider=NAME&limit=N

`action`: disable, enable, weight (`value` a number > 0, or null: the configured one), force
(`value` "open", "closed" or "auto"), probe-after (`value` seconds, or null), release (end a
reputation hold), pin, unpin (any `name`). Every change needs a `reason` and is recorded with it
and the API key that made it (`key <first 12 hex digits of its hash>`, what api.auth calls the
key's id), in the controls and in their append-only history (newest first, `limit` 1 to 1000,
default 50).

Always behind an API key: with no `api.api_key_hashes` configured the admin API answers 403
(an open API may send mail; it must not steer it). Bad input gets 400 (body) or 404 (unknown
provider or action); a status table that cannot be written, 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from aiohttp import web

from api.auth import API_KEY_ID
from api.keys import SETTINGS
from api.responses import error_response
from api.views.body import read_json
from gomailpy.errors import MalformedRequestError
from gomailpy.operating.controls import (
    ACTIONS,
    MAX_HISTORY_LIMIT,
    ControlError,
    ControlStore,
    open_control_store,
)

CONTROL_STORE = web.AppKey("control_store", ControlStore)
ADMIN_PREFIX = "/admin/"
MAX_BODY_BYTES = 4096
KEYS_REQUIRED = (
    "The admin API needs API keys: configure api.api_key_hashes (gomail hash-key --new) and"
    " send one, or use `gomail provider` where the status table is reachable"
)


async def control_resources(app: web.Application) -> AsyncIterator[None]:
    """The control store on the status table, unless one was given (tests)."""
    async with AsyncExitStack() as stack:
        if CONTROL_STORE not in app:
            app[CONTROL_STORE] = await open_control_store(stack, app[SETTINGS])
        yield


def _who(request: web.Request) -> str | None:
    key_id = request.get(API_KEY_ID)
    return f"key {key_id}" if key_id else None


async def list_controls(request: web.Request) -> web.Response:
    if _who(request) is None:
        return error_response(403, KEYS_REQUIRED)
    controls = await request.app[CONTROL_STORE].load()
    return web.json_response(controls.to_json())


async def change_control(request: web.Request) -> web.Response:
    who = _who(request)
    if who is None:
        return error_response(403, KEYS_REQUIRED)
    name, action = request.match_info["name"], request.match_info["action"]
    names = request.app[CONTROL_STORE].names
    if name not in names:
        return error_response(404, f"No provider {name!r}: one of {', '.join(names)}")
    if action not in ACTIONS:
        return error_response(404, f"No action {action!r}: one of {', '.join(ACTIONS)}")
    data = await read_json(request, MAX_BODY_BYTES) if request.can_read_body else {}
    if not isinstance(data, dict) or not isinstance(data.get("reason"), str | None):
        raise MalformedRequestError('The body must be {"reason": "...", "value": ...}')
    try:
        controls = await request.app[CONTROL_STORE].change(
            name, action, data.get("value"), who=who, why=data.get("reason")
        )
    except ControlError as exc:
        return error_response(400, str(exc))
    return web.json_response(controls.to_json())


async def control_history(request: web.Request) -> web.Response:
    if _who(request) is None:
        return error_response(403, KEYS_REQUIRED)
    provider = request.query.get("provider") or None
    names = request.app[CONTROL_STORE].names
    if provider is not None and provider not in names:
        return error_response(400, f"No provider {provider!r}: one of {', '.join(names)}")
    limit_text = request.query.get("limit", "50")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_HISTORY_LIMIT:
        return error_response(400, f"limit must be a whole number from 1 to {MAX_HISTORY_LIMIT}")
    entries = await request.app[CONTROL_STORE].history(provider, int(limit_text))
    return web.json_response({"history": [entry.to_json() for entry in entries]})


def add_control_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(control_resources)
    app.router.add_get("/admin/providers", list_controls, name="controls", allow_head=False)
    app.router.add_get(
        "/admin/providers/history", control_history, name="control_history", allow_head=False
    )
    app.router.add_post("/admin/providers/{name}/{action}", change_control, name="control_change")
