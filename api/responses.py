"""The API's error bodies, in gomail's shape: `{"errors": {"base": "..."}}` for the request as a
whole, `{"errors": {field: "..."}}` for invalid fields, and the one map from gomailpy's errors to
HTTP answers (`error_answer`, applied by api.middleware to whatever a handler raises)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from gomailpy.errors import (
    BackendError,
    GomailError,
    InvalidEmailError,
    MalformedRequestError,
    NoQueueAvailableError,
    TemplateError,
    TokenError,
    UnqueueableEmailError,
)

SERVICE_UNAVAILABLE = "Service unavailable"  # gomail's 503 text, kept word for word
INTERNAL_ERROR = "Internal server error"
UNQUEUEABLE = "The queue refused the email for what it contains; change the request"


def error_response(
    status: int, base: str | None = None, *, errors: Mapping[str, str] | None = None
) -> web.Response:
    body = dict(errors or {})
    if base is not None:
        body["base"] = base
    return web.json_response({"errors": body}, status=status)


def error_answer(exc: GomailError) -> web.Response:
    """The answer to a request a handler could not serve because of `exc`.

    MalformedRequestError 400, InvalidEmailError 422 and TemplateError 422 (the client must change
    the request or the template); UnqueueableEmailError 400 (a queue refused what the email
    carries: retrying cannot help, so never a 503); any BackendError 503 in gomail's words,
    never saying which service failed (the log does), with Retry-After when no queue took the
    email.
    """
    if isinstance(exc, InvalidEmailError):
        return error_response(422, errors=exc.errors)
    if isinstance(exc, MalformedRequestError):
        return error_response(400, str(exc))
    if isinstance(exc, TemplateError):
        return error_response(422, str(exc))
    if isinstance(exc, UnqueueableEmailError):
        return error_response(400, UNQUEUEABLE)
    if isinstance(exc, TokenError):  # a link's token: malformed 400, forged 403, expired 410
        return error_response(exc.status, str(exc))
    if isinstance(exc, NoQueueAvailableError):
        response = error_response(503, SERVICE_UNAVAILABLE)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    if isinstance(exc, BackendError):
        return error_response(503, SERVICE_UNAVAILABLE)
    return error_response(500, INTERNAL_ERROR)  # ConfigError, EnvelopeError: not a request's
