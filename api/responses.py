"""The API's error bodies, in gomail's shape: `{"errors": {"base": "..."}}` for the request as a
whole, `{"errors": {field: "..."}}` for invalid fields, and the one map from gomailpy's errors to
HTTP answers (`error_answer`, applied by api.middleware to whatever a handler raises)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from gomailpy.errors import BackendError, GomailError, InvalidEmailError, MalformedRequestError

SERVICE_UNAVAILABLE = "Service unavailable"  # gomail's 503 text, kept word for word
INTERNAL_ERROR = "Internal server error"


def error_response(
    status: int, base: str | None = None, *, errors: Mapping[str, str] | None = None
) -> web.Response:
    body = dict(errors or {})
    if base is not None:
        body["base"] = base
    return web.json_response({"errors": body}, status=status)


def error_answer(exc: GomailError) -> web.Response:
    """The answer to a request a handler could not serve because of `exc`.

    MalformedRequestError 400 and InvalidEmailError 422 (the client must change the request);
    any BackendError 503 in gomail's words, never saying which service failed (the log does).
    """
    if isinstance(exc, InvalidEmailError):
        return error_response(422, errors=exc.errors)
    if isinstance(exc, MalformedRequestError):
        return error_response(400, str(exc))
    if isinstance(exc, BackendError):
        return error_response(503, SERVICE_UNAVAILABLE)
    return error_response(500, INTERNAL_ERROR)  # ConfigError, EnvelopeError: not a request's
