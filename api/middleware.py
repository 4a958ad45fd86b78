"""Middleware, outermost first: CORS, metrics, JSON errors.

- CORS answers for the configured origins only, on every answer including errors, so a page
  served elsewhere can read a 422 or 503 body and show it.
- Metrics count every answer by route pattern (never the raw path: unbounded label values).
- Errors: every 4xx/5xx leaves as `{"errors": {"base": ...}}`; an unexpected exception becomes
  a JSON 500 without a traceback (logged here, with it). There should be none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, MutableMapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from api.responses import error_response
from gomailpy.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

logger = logging.getLogger(__name__)

CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Content-Type, Accept"
CORS_MAX_AGE_S = "600"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


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


def _allow(headers: MutableMapping[str, str], origin: str, allowed: bool) -> None:
    headers["Vary"] = "Origin"  # answers differ by origin: caches must not mix them
    if allowed:
        headers["Access-Control-Allow-Origin"] = origin


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


def _record(request: web.Request, status: int, started: float) -> None:
    route = route_label(request)
    method = request.method if request.method in KNOWN_METHODS else "other"
    HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    HTTP_REQUEST_SECONDS.labels(route=route).observe(time.perf_counter() - started)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
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
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("unexpected error answering %s %s", request.method, request.path)
        return error_response(500, "Internal server error")
