"""The API's error bodies, in gomail's shape: `{"errors": {"base": "..."}}` for the request as a
whole, `{"errors": {field: "..."}}` for invalid fields."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

SERVICE_UNAVAILABLE = "Service unavailable"  # gomail's 503 text, kept word for word


def error_response(
    status: int, base: str | None = None, *, errors: Mapping[str, str] | None = None
) -> web.Response:
    body = dict(errors or {})
    if base is not None:
        body["base"] = base
    return web.json_response({"errors": body}, status=status)
