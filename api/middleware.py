"""Middleware, outermost first: the fast lane, CORS, metrics, cross-site refusals, JSON errors,
the front door.

- The fast lane: the tracking routes (api.views.bulk) go past all the others to their handler,
  counted and with JSON errors (`fast_lane_middleware`).
- CORS answers for the configured origins only, on every answer including errors, so a page
  served elsewhere can read a 422 or 503 body and show it.
- Cross-site: a browser's state-changing request from a page of an origin not allowed is refused
  (403), and with an Origin a body must be declared JSON (415): CORS alone stops no send.
- Metrics count every answer by route pattern (never the raw path: unbounded label values).
- Errors: every 4xx/5xx leaves as `{"errors": {"base": ...}}`. A gomailpy error a handler
  raises is answered by `api.responses.error_answer` (the one map from errors to statuses; 5xx
  logged here); any other exception becomes a JSON 500 without a traceback (logged here, with
  it). There should be none.
- The front door, on the email routes only (api.auth.is_guarded): the per-address rate limit,
  then the API key and its scope (401, 403), then the per-key limit, all before the body is
  read. Innermost, so its 401s, 403s and 429s are counted and carry CORS headers like any
  answer. Failed key attempts use up the address's tokens, which slows guessing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, MutableMapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from api.auth import API_KEY_ID, KeyRing, is_guarded, request_scope
from api.ratelimit import Clock, TokenBuckets, client_address, too_many_requests
from api.responses import INTERNAL_ERROR, error_answer, error_response
from gomailpy.config.settings import ApiSettings
from gomailpy.errors import GomailError
from gomailpy.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

logger = logging.getLogger(__name__)

CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Content-Type, Accept, Authorization, X-Api-Key, Idempotency-Key"
CORS_EXPOSE_HEADERS = "Retry-After, WWW-Authenticate"  # a page may read them on a 429 or 401
CORS_MAX_AGE_S = "600"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_POST_PREFIX = "/u/"  # one-click unsubscribe (api.views.bulk): form posts taken


def cors_middleware(origins: Iterable[str]) -> Middleware:
    """Allow exactly `origins` (scheme://host[:port]; "*" allows any, "null" file:// pages)."""
    allowed = frozenset(origin.rstrip("/") for origin in origins)

    def is_allowed(origin: str) -> bool:
        return "*" in allowed or origin in allowed

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:
            return await handler(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if not is_allowed(origin):
                # No Access-Control-* headers: the browser refuses the real request.
                response: web.StreamResponse = error_response(
                    403, f"Origin {origin} is not allowed (api.cors_origins)"
                )
            else:
                response = web.Response(status=204)
                response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
                response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
                response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE_S
                response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            return response
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # only non-errors get here (the error middleware)
            _allow(exc.headers, origin, is_allowed(origin))
            raise
        _allow(response.headers, origin, is_allowed(origin))
        return response

    return cors


def cross_site_middleware(origins: Iterable[str]) -> Middleware:
    """Refuse state-changing requests a browser sends for a page of another origin.

    CORS only decides what a page may *read*: a "simple" cross-site POST (a form, or fetch with
    `no-cors` and `Content-Type: text/plain`) is sent without a preflight and acted on. So a
    POST/PUT/PATCH/DELETE whose Origin header is neither in `origins` nor the API's own origin
    (the form it serves: Origin's host equals the Host header) is answered 403; and with an
    Origin present, a body not declared as JSON is answered 415, so no simple request can send
    one. Requests without Origin (curl, servers, webhooks) are not browsers': unaffected.
    The one exception to the 415: a form POST to an unsubscribe link (`/u/<token>`, RFC 8058
    wants `application/x-www-form-urlencoded`), still only from an allowed or the same origin.
    """
    allowed = frozenset(origin.rstrip("/") for origin in origins)

    @web.middleware
    async def cross_site(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or request.method not in STATE_CHANGING:
            return await handler(request)
        if not ("*" in allowed or origin in allowed or _same_origin(origin, request.host)):
            return error_response(403, f"Origin {origin} is not allowed (api.cors_origins)")
        if (
            request.body_exists
            and not _declared_json(request.content_type)
            and not (request.path.startswith(FORM_POST_PREFIX) and _declared_form(request))
        ):
            return error_response(
                415, "Content-Type must be application/json for a request sent by a browser"
            )
        return await handler(request)

    return cross_site


def _same_origin(origin: str, host: str) -> bool:
    # Scheme not compared: behind a TLS-terminating proxy the API sees http, the page https.
    _, sep, rest = origin.partition("://")
    return bool(sep) and rest.lower() == host.lower()


def _declared_form(request: web.Request) -> bool:
    return request.content_type == "application/x-www-form-urlencoded"


def _declared_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _allow(headers: MutableMapping[str, str], origin: str, allowed: bool) -> None:
    headers["Vary"] = "Origin"  # answers differ by origin: caches must not mix them
    if allowed:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS


def route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return "unmatched" if resource is None else resource.canonical


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _record(request, exc.status, started)
        raise
    except asyncio.CancelledError:
        raise  # nothing was answered: not a status to count
    except BaseException:
        _record(request, 500, started)
        raise
    _record(request, response.status, started)
    return response


# The labelled children, by (route, method, status): `labels()` checks and locks on every call,
# a tenth of a tracking hit's CPU. Bounded: routes are patterns, methods KNOWN_METHODS, statuses
# three digits.
_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _record(request: web.Request, status: int, started: float) -> None:
    route = route_label(request)
    method = request.method if request.method in KNOWN_METHODS else "other"
    key = (route, method, status)
    children = _children.get(key)
    if children is None:
        children = _children[key] = (
            HTTP_REQUESTS.labels(route=route, method=method, status=str(status)),
            HTTP_REQUEST_SECONDS.labels(route=route),
        )
    children[0].inc()
    children[1].observe(time.perf_counter() - started)


def fast_lane_middleware(routes: Iterable[str]) -> Middleware:
    """Outermost: requests for `routes` (route patterns, e.g. "/t/o/{token}") go straight to
    their handler, counted (metrics) and with errors answered as JSON, past every other
    middleware. For routes that need none of them: no body, no CORS (images and links, not
    script), not state-changing, not behind the front door. The access log is written by the
    server, not a middleware: it still has them. Open pixels and tracked links are hit by
    every recipient's mail client; the other middlewares cost a tenth of such a hit."""
    fast = frozenset(routes)

    @web.middleware
    async def fast_lane(request: web.Request, handler: Handler) -> web.StreamResponse:
        match_info = request.match_info
        resource = match_info.route.resource
        if resource is None or resource.canonical not in fast:
            return await handler(request)
        started = time.perf_counter()
        try:
            response = await _answered(request, match_info.handler)
        except web.HTTPException as exc:  # a redirect: errors were answered
            _record(request, exc.status, started)
            raise
        except asyncio.CancelledError:
            raise
        _record(request, response.status, started)
        return response

    return fast_lane


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await _answered(request, handler)


async def _answered(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`handler`'s answer, its errors as JSON answers (redirects raised on)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, exc.reason)
        for name in ("Allow", "Retry-After"):  # keep what tells a client how to retry
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except GomailError as exc:
        answer = error_answer(exc)
        if answer.status >= 500:
            logger.error("%s %s answered %d: %s", request.method, request.path, answer.status, exc)
        return answer
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("unexpected error answering %s %s", request.method, request.path)
        return error_response(500, INTERNAL_ERROR)


def front_door_middleware(api: ApiSettings, clock: Clock = time.monotonic) -> Middleware:
    """API keys and rate limits as configured in `api` (each off when not configured)."""
    keys = KeyRing.from_settings(api)
    per_address = (
        TokenBuckets(
            api.rate_limit_per_address,
            api.rate_limit_per_address_burst,
            max_buckets=api.rate_limit_max_buckets,
            clock=clock,
        )
        if api.rate_limit_per_address > 0
        else None
    )
    per_key = (
        TokenBuckets(
            api.rate_limit_per_key,
            api.rate_limit_per_key_burst,
            max_buckets=api.rate_limit_max_buckets,
            clock=clock,
        )
        if api.rate_limit_per_key > 0 and keys.required
        else None
    )
    if api.rate_limit_per_key > 0 and not keys.required:
        logger.warning("api.rate_limit_per_key is set but no API key is: it limits nothing")

    @web.middleware
    async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_guarded(request):
            return await handler(request)
        if per_address is not None:
            wait = per_address.take(client_address(request, api.client_address_header))
            if wait:
                return too_many_requests("from this address", per_address, wait)
        if keys.required:
            check = keys.check(request.headers, request_scope(request))
            refusal = check.refusal()
            if refusal is not None:
                return refusal
            assert check.key_id is not None
            request[API_KEY_ID] = check.key_id
            if per_key is not None:
                wait = per_key.take(check.key_id)
                if wait:
                    return too_many_requests("for this API key", per_key, wait)
        return await handler(request)

    return front_door
