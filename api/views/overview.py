"""What the operator page (webclient/operator/) shows, in one JSON answer: GET /admin/overview.

    {"at": epoch s, "queues": [...], "regions": {region: depth}, "accepted": {queue: n},
     "providers": {name: {..., "engagement": {opened, opened_machine, clicked, clicked_machine,
       unsubscribed, complained}, "rates": {the same per accepted send, or null}}},
     "engagement_unattributed": {the same counts, joined to no configured provider},
     "nodes": [...] (each with its per-domain exclusions,
     `domains_excluded`), "controls": {...} | null,
     "history": [the last HISTORY_SHOWN changes to the controls, newest first] | null}

The API's own part: each queue's depth, region and circuit as its gateway last read them, and
the emails it accepted per queue (its metrics). The pipeline nodes' part, from the admin servers
listed in `operator.node_admin_urls`: each provider's health per node (/status), its rate limit,
its sends and the engagement with its mail (/metrics: opens and clicks by people and by machines
apart, unsubscribes, complaints; gomailpy.feedback.engagement), summed over the nodes that
answered; the rates divide engagement by accepted sends. Counts are totals since each
process started; the page draws rates from the differences between two polls. A node that does
not answer within NODE_TIMEOUT_S is listed with its problem and left out of the sums.

Read-only, and guarded like every /admin/ route: behind the API key when keys are configured,
open otherwise, like /metrics. `operator.local_controls` (for `gomail up`, which has no keys)
lets loopback callers change the controls too (api.views.controls), as `key local-operator`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from api.auth import API_KEY_ID
from api.keys import GATEWAY, SETTINGS
from api.views.controls import CONTROL_STORE
from gomailpy.config.providers import ProvidersSettings
from gomailpy.errors import GomailError

# Engagement per provider (gomailpy.feedback.engagement), machine opens and clicks apart.
ENGAGEMENT = (
    "opened",
    "opened_machine",
    "clicked",
    "clicked_machine",
    "unsubscribed",
    "complained",
)
NODE_TIMEOUT_S = 1.5  # a node slower than this is shown as not answering, not waited for
HISTORY_SHOWN = 20  # the operator page's recent changes (all: GET /admin/providers/history)
LOCAL_OPERATOR = "local-operator"
NODE_SESSION = web.AppKey("operator_node_session", aiohttp.ClientSession)


async def _node_session(app: web.Application) -> AsyncIterator[None]:
    timeout = aiohttp.ClientTimeout(total=NODE_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        app[NODE_SESSION] = session
        yield


def _accepted_by_queue() -> dict[str, float]:
    return {
        sample.labels["queue"]: sample.value
        for family in REGISTRY.collect()
        if family.name == "gomailpy_emails_enqueued"
        for sample in family.samples
        if sample.name == "gomailpy_emails_enqueued_total"
    }


def _provider_figures(metrics_text: str) -> dict[str, dict[str, float]]:
    """Per provider, from a node's /metrics: sends accepted and failed, and its rate limit."""
    figures: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            provider = sample.labels.get("provider")
            if provider is None:
                continue
            mine = figures.setdefault(provider, {})
            if sample.name == "gomailpy_provider_sends_total":
                key = "sent" if sample.labels.get("outcome") == "accepted" else "failed"
                mine[key] = mine.get(key, 0.0) + sample.value
            elif sample.name == "gomailpy_provider_rate_limit":
                mine["rate_limit"] = sample.value
            elif sample.name == "gomailpy_engagement_events_total":
                kind = sample.labels.get("type", "")
                key = f"{kind}_machine" if sample.labels.get("machine") == "true" else kind
                if key in ENGAGEMENT:
                    mine[key] = mine.get(key, 0.0) + sample.value
    return figures


def _rates(entry: dict[str, Any]) -> dict[str, float | None]:
    """Each engagement count per accepted send (None before anything was sent)."""
    sent = entry["sent"]
    return {key: (entry["engagement"][key] / sent if sent else None) for key in ENGAGEMENT}


def _unattributed(known: set[str], nodes: list[dict[str, Any]]) -> dict[str, float]:
    """Engagement counted against no configured instance (`unknown`: joined to no email)."""
    total: dict[str, float] = {}
    for node in (node for node in nodes if node["ok"]):
        for name, figures in node["figures"].items():
            if name in known:
                continue
            for key in ENGAGEMENT:
                if figures.get(key):
                    total[key] = total.get(key, 0.0) + figures[key]
    return total


async def _read_node(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    base = url.rstrip("/")
    try:
        async with session.get(base + "/status") as answer:
            answer.raise_for_status()
            status = await answer.json()
        async with session.get(base + "/metrics") as answer:
            answer.raise_for_status()
            figures = _provider_figures(await answer.text())
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return {"url": url, "ok": False, "problem": str(exc) or type(exc).__name__}
    return {"url": url, "ok": True, "status": status, "figures": figures}


def _providers(
    settings_providers: ProvidersSettings, nodes: list[dict[str, Any]]
) -> dict[str, Any]:
    """Every provider instance by name, with its kind, configuration, health on each node and
    figures summed over the nodes."""
    providers: dict[str, Any] = {}
    for name in settings_providers.known():
        configured = settings_providers.get(name)
        entry: dict[str, Any] = {
            "kind": configured.kind if configured is not None else name,
            "enabled": configured is not None and configured.enabled,
            "weight": configured.weight if configured is not None else 1.0,
            "health": {},
            "held": {},  # node URL -> why it holds this provider for its reputation
            "sent": 0.0,
            "failed": 0.0,
            "rate_limit": None,
            "engagement": dict.fromkeys(ENGAGEMENT, 0.0),
        }
        for node in (node for node in nodes if node["ok"]):
            health = node["status"].get("providers", {}).get(name)
            if health is not None:
                entry["health"][node["url"]] = health.get("state")
                if health.get("held"):
                    entry["held"][node["url"]] = health["held"]
            figures = node["figures"].get(name, {})
            entry["sent"] += figures.get("sent", 0.0)
            entry["failed"] += figures.get("failed", 0.0)
            if "rate_limit" in figures:  # the cluster's rate: the nodes' shares together
                entry["rate_limit"] = (entry["rate_limit"] or 0.0) + figures["rate_limit"]
            for key in ENGAGEMENT:
                entry["engagement"][key] += figures.get(key, 0.0)
        entry["rates"] = _rates(entry)
        providers[name] = entry
    return providers


async def overview(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    gateway = request.app[GATEWAY]
    session = request.app[NODE_SESSION]
    nodes = list(
        await asyncio.gather(*(_read_node(session, u) for u in settings.operator.node_admin_urls))
    )
    controls: dict[str, Any] | None
    history: list[dict[str, Any]] | None
    store = request.app[CONTROL_STORE]
    try:
        controls = (await store.load()).to_json()
        history = [entry.to_json() for entry in await store.history(limit=HISTORY_SHOWN)]
        controls_problem = None
    except GomailError as exc:  # the status table is down: show the rest
        controls, history, controls_problem = None, None, str(exc)
    states = gateway.states()
    regions = sorted({state.region for state in states if state.region is not None})
    return web.json_response(
        {
            "at": time.time(),
            "queues": [
                {
                    "name": state.name,
                    "region": state.region,
                    "depth": state.depth,
                    "reachable": state.reachable,
                    "circuit_open": state.circuit_open,
                    "problem": state.problem,
                }
                for state in states
            ],
            "regions": {region: gateway.region_depth(region) for region in regions},
            "accepted": _accepted_by_queue(),
            "providers": _providers(settings.providers, nodes),
            "engagement_unattributed": _unattributed(set(settings.providers.known()), nodes),
            "nodes": [
                {
                    "url": node["url"],
                    "ok": node["ok"],
                    "problem": node.get("problem"),
                    "paused": node["status"].get("paused") if node["ok"] else None,
                    "domains_excluded": (
                        node["status"].get("domains_excluded", []) if node["ok"] else []
                    ),
                }
                for node in nodes
            ],
            "controls": controls,
            "history": history,
            "controls_problem": controls_problem,
            "local_controls": _local_controls_on(request.app),
        }
    )


def _local_controls_on(app: web.Application) -> bool:
    settings = app[SETTINGS]
    return settings.operator.local_controls and not settings.api.keys


def _from_loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


@web.middleware
async def local_operator_middleware(
    request: web.Request, handler: aiohttp.typedefs.Handler
) -> web.StreamResponse:
    """With `operator.local_controls` and no API keys, an /admin/ request from loopback counts
    as made with a key named LOCAL_OPERATOR, so api.views.controls records who changed what."""
    if (
        request.path.startswith("/admin/")
        and _local_controls_on(request.app)
        and _from_loopback(request)
    ):
        request[API_KEY_ID] = LOCAL_OPERATOR
    return await handler(request)


def add_overview_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_node_session)
    # Innermost (appended after create_app's), so after the front door: with keys configured
    # this never applies, and with none the front door lets every request through anyway.
    app.middlewares.append(local_operator_middleware)
    app.router.add_get("/admin/overview", overview, name="overview", allow_head=False)


_ERRORS_REF = {"$ref": "#/components/schemas/Errors"}
OPENAPI_PATHS: dict[str, Any] = {
    "/admin/overview": {
        "get": {
            "operationId": "operatorOverview",
            "summary": "Queue depths, provider health, rates and sends, and the controls (the"
            " operator page's data)",
            "responses": {
                "200": {
                    "description": "The overview; counts are totals since each process started",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
}
