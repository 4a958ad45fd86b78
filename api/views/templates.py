"""The templates API: `PUT|GET|DELETE /templates/{id}`, `GET /templates`, behind the API keys
(scope `templates`).

    PUT /templates/welcome  {"subject": "Hi {{name}}", "html": "<p>{{name}}</p>", "text": "..."}

Templates live on the status table (gomailpy.email.templates), so they need `status.backend` memory
or dynamodb (501 otherwise). Every part must compile, or the PUT is answered 422 naming the part.
The same table carries the schedule records (api.views.schedules): `ITEM_TABLE` is opened here once
for the app, by the cleanup context `add_template_routes` installs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

from aiohttp import web

from api.auth import KeyRing
from api.keys import SETTINGS
from api.responses import error_response
from api.views.body import read_json
from gomailpy.config.settings import TEMPLATES
from gomailpy.email.models import Email
from gomailpy.email.templates import Template
from gomailpy.email.templates import check_template as template_problems
from gomailpy.errors import InvalidEmailError, MalformedRequestError
from gomailpy.store.items import ItemTable, open_item_table
from gomailpy.store.templates import TemplateStore

# Set only when status.backend is on: read it with `app.get(ITEM_TABLE)`.
ITEM_TABLE = web.AppKey("item_table", ItemTable)
KEYS = web.AppKey("template_keys", KeyRing)
MAX_TEMPLATE_BODY = 2 * 1024 * 1024
TEMPLATES_OFF = (
    "Templates need the status table, which is off on this server (status.backend is none)"
)
PARTS = ("subject", "html", "text")


async def _item_table(app: web.Application) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        table = await open_item_table(stack, app[SETTINGS])
        if table is not None:
            app[ITEM_TABLE] = table
        yield


def template_store(app: web.Application) -> TemplateStore | None:
    table = app.get(ITEM_TABLE)
    return TemplateStore(table) if table is not None else None


async def check_template(app: web.Application, email: Email) -> None:
    """Refuse (InvalidEmailError, 422) an email naming a template this server cannot find."""
    if email.template is None:
        return
    store = template_store(app)
    if store is None:
        raise InvalidEmailError({"templateId": TEMPLATES_OFF})
    if await store.get(email.template.id) is None:
        raise InvalidEmailError({"templateId": f"No template {email.template.id!r}"})


def check_key(request: web.Request) -> web.Response | None:
    """The 401 for a request without a valid key, the 403 for a key without the `templates`
    scope (when keys are configured), else None. The front door guards /email/ only; these
    routes check for themselves."""
    keys = request.app[KEYS]
    if not keys.required:
        return None
    return keys.check(request.headers, TEMPLATES).refusal()


StoreHandler = Callable[[web.Request, TemplateStore], Awaitable[web.Response]]


def _guarded(handler: StoreHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The route for `handler`: 401 without a valid key, 501 without a template store."""

    async def route(request: web.Request) -> web.Response:
        refused = check_key(request)
        if refused is not None:
            return refused
        store = template_store(request.app)
        if store is None:
            return error_response(501, TEMPLATES_OFF)
        return await handler(request, store)

    return route


@_guarded
async def put_template(request: web.Request, store: TemplateStore) -> web.Response:
    data = await read_json(request, MAX_TEMPLATE_BODY)
    if not isinstance(data, dict):
        raise MalformedRequestError('Body must be a JSON object: {"subject", "html", "text"}')
    errors = {name: f"Unknown field {name!r}; known: subject, html, text" for name in data}
    errors = {name: problem for name, problem in errors.items() if name not in PARTS}
    for name in PARTS:
        if not isinstance(data.get(name, ""), str):
            errors[name] = f"{name} must be a string"
    if errors:
        return error_response(422, errors=errors)
    template = Template(request.match_info["id"], **{k: data.get(k, "") for k in PARTS})
    problems = template_problems(template)
    if problems:
        # "html: does not compile: ..." -> {"html": "html: does not compile: ..."}
        named = {p.split(":", 1)[0] if ":" in p else "base": p for p in problems}
        return error_response(422, errors=named)
    stored = await store.put(template)
    return web.json_response(stored.to_json())


@_guarded
async def get_template(request: web.Request, store: TemplateStore) -> web.Response:
    template = await store.get(request.match_info["id"])
    if template is None:
        return error_response(404, f"No template {request.match_info['id']!r}")
    return web.json_response(template.to_json())


@_guarded
async def delete_template(request: web.Request, store: TemplateStore) -> web.Response:
    if not await store.delete(request.match_info["id"]):
        return error_response(404, f"No template {request.match_info['id']!r}")
    return web.Response(status=204)


@_guarded
async def list_templates(request: web.Request, store: TemplateStore) -> web.Response:
    return web.json_response({"templates": await store.list_ids()})


def add_template_routes(app: web.Application) -> None:
    """The template routes, and the status table's small items (`ITEM_TABLE`) for the app."""
    app[KEYS] = KeyRing.from_settings(app[SETTINGS].api)
    app.cleanup_ctx.append(_item_table)
    app.router.add_get("/templates", list_templates, name="templates", allow_head=False)
    app.router.add_put("/templates/{id}", put_template, name="template-put")
    app.router.add_get("/templates/{id}", get_template, name="template", allow_head=False)
    app.router.add_delete("/templates/{id}", delete_template, name="template-delete")
