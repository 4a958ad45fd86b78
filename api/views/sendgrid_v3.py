"""`POST /v3/mail/send`: SendGrid's v3 mail send, so that SendGrid's own clients work unchanged
but for their host (`SendGridAPIClient(key, host="http://127.0.0.1:8000")`).

The request is translated by gomailpy.email.v3: one envelope per personalization, ids
`<X-Message-Id>_<n>`, queued like any email of `POST /email/send` (least-depth queue, claim check
for a large one, `queued` in the status store). Answers are SendGrid's: 202 with an empty body
and `X-Message-Id`; errors as `{"errors": [{"message", "field", "help"}]}` with 400, 401, 403
(a key without the scope `mail.send`), 413, 429 (with `X-RateLimit-*`) and 503. Sandbox mode
validates and answers 200, queueing nothing.

This path is outside the front door's /email/ routes, so it checks the API keys and the rate
limits itself, with the same settings, in SendGrid's shape.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from aiohttp import web

from api.auth import KeyRing
from api.keys import GATEWAY, SETTINGS
from api.ratelimit import TokenBuckets, client_address
from api.views.body import decode_json, read_body
from api.views.delivery import CLAIM_CHECK, new_message_id
from api.views.schedules import record_schedule
from api.views.suppressions import refuse_if_suppressed
from api.views.templates import template_store
from gomailpy.config.settings import MAIL_SEND, ApiSettings
from gomailpy.email.envelope import Envelope
from gomailpy.email.envelope import new_message_id as uuid_message_id
from gomailpy.email.v3 import MAX_BODY_BYTES, MAX_PERSONALIZATIONS, translate
from gomailpy.email.v3_fields import Problem, V3RequestError
from gomailpy.errors import (
    BackendError,
    InvalidEmailError,
    MalformedRequestError,
    UnqueueableEmailError,
)

logger = logging.getLogger(__name__)

FORBIDDEN = "access forbidden"  # SendGrid's 403 for a key without the scope (mail.send)
# SQS refuses a message body over 256 KiB (as api.routes): above, the claim check or a refusal.
SQS_MAX_MESSAGE_BYTES = 262_144


class V3FrontDoor:
    """API keys and the per-address and per-key token buckets, as api.middleware applies them to
    /email/, for the v3 route."""

    def __init__(self, api: ApiSettings) -> None:
        self.keys = KeyRing.from_settings(api)
        self.header = api.client_address_header
        self.per_address = (
            TokenBuckets(api.rate_limit_per_address, api.rate_limit_per_address_burst)
            if api.rate_limit_per_address > 0
            else None
        )
        self.per_key = (
            TokenBuckets(api.rate_limit_per_key, api.rate_limit_per_key_burst)
            if api.rate_limit_per_key > 0 and self.keys.required
            else None
        )

    def check(self, request: web.Request) -> web.Response | None:
        """The refusal for this request, or None to go on."""
        if self.per_address is not None:
            wait = self.per_address.take(client_address(request, self.header))
            if wait:
                return _rate_limited(self.per_address, wait)
        if not self.keys.required:
            return None
        check = self.keys.check(request.headers, MAIL_SEND)
        key_id = check.key_id
        if key_id is None:
            return errors_response(
                401,
                [Problem("The provided authorization grant is invalid, expired, or revoked")],
            )
        if check.problem is not None:  # a valid key without the scope: SendGrid's words
            return errors_response(403, [Problem(FORBIDDEN)])
        if self.per_key is not None:
            wait = self.per_key.take(key_id)
            if wait:
                return _rate_limited(self.per_key, wait)
        return None


FRONT_DOOR = web.AppKey("v3_front_door", V3FrontDoor)


def errors_response(status: int, problems: list[Problem]) -> web.Response:
    return web.json_response({"errors": [p.to_json() for p in problems]}, status=status)


def _rate_limited(buckets: TokenBuckets, wait_s: float) -> web.Response:
    response = errors_response(429, [Problem("too many requests")])
    retry = max(1, math.ceil(wait_s))
    response.headers["X-RateLimit-Limit"] = str(buckets.burst)
    response.headers["X-RateLimit-Remaining"] = "0"
    response.headers["X-RateLimit-Reset"] = str(math.ceil(time.time()) + retry)
    response.headers["Retry-After"] = str(retry)
    return response


async def _read(request: web.Request, limit: int) -> Any:
    try:
        body = await read_body(request, limit)
    except MalformedRequestError as exc:  # read_body raises only "too large"
        raise V3RequestError([Problem(str(exc))], status=413) from None
    try:
        return decode_json(body)
    except MalformedRequestError as exc:
        raise V3RequestError([Problem(str(exc))]) from None


async def _check_templates(request: web.Request, envelopes: list[Envelope]) -> None:
    ids = {e.email.template.id for e in envelopes if e.email.template is not None}
    if not ids:
        return
    store = template_store(request.app)
    if store is None:
        raise V3RequestError(
            [Problem("template_id needs templates, which are off on this server", "template_id")]
        )
    for template_id in sorted(ids):
        if await store.get(template_id) is None:
            raise V3RequestError(
                [Problem(f"No template {template_id!r} (gomail templates list)", "template_id")]
            )


async def _check_suppressions(request: web.Request, envelopes: list[Envelope]) -> None:
    """With `suppression.refuse_at_api`, as /email/send: refused when a personalization's
    recipients are all suppressed."""
    for n, envelope in enumerate(envelopes):
        try:
            await refuse_if_suppressed(request.app, envelope.email)
        except InvalidEmailError as exc:
            message = next(iter(exc.errors.values()))
            raise V3RequestError([Problem(message, f"personalizations.{n}.to")]) from None


async def _encode(request: web.Request, envelope: Envelope) -> str:
    """The queue body of `envelope`: itself, or a claim-check reference when too large."""
    body = envelope.encode()
    size = len(body.encode("utf-8"))
    claim_check = request.app.get(CLAIM_CHECK)
    limit = claim_check.threshold_bytes if claim_check is not None else SQS_MAX_MESSAGE_BYTES
    if size <= limit:
        return body
    if claim_check is None:
        raise V3RequestError(
            [Problem(f"One email is {size} bytes once wrapped; the limit is {limit} bytes")],
            status=413,
        )
    return (await claim_check.store(envelope, body)).encode()


async def mail_send(request: web.Request) -> web.Response:
    refused = request.app[FRONT_DOOR].check(request)
    if refused is not None:
        return refused
    limit = min(request.app[SETTINGS].api.max_body_size_bytes, MAX_BODY_BYTES)
    try:
        data = await _read(request, limit)
        # Issued as /email/send's ids are (api.views.delivery); the emails are its parts,
        # `<id>_<n>`, and the id carries their number, so that no `_<n>` past them reads as queued.
        message_id = new_message_id(request.app, parts=_personalizations(data)) or uuid_message_id()
        mail = translate(data, message_id=message_id, now=time.time())
        await _check_templates(request, mail.envelopes)
        await _check_suppressions(request, mail.envelopes)
        if mail.sandbox:
            return web.Response(status=200)
        bodies = [await _encode(request, envelope) for envelope in mail.envelopes]
    except V3RequestError as exc:
        return errors_response(exc.status, exc.problems)
    gateway = request.app[GATEWAY]
    results = await asyncio.gather(
        *(gateway.enqueue(body) for body in bodies), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    queued = [e for e, r in zip(mail.envelopes, results, strict=True) if isinstance(r, str)]
    await _after_queued(request.app, queued)
    if failed:
        for problem in failed:
            if isinstance(problem, UnqueueableEmailError):
                return errors_response(
                    400, [Problem(f"A queue refused an email: {problem.reason}")]
                )
            if not isinstance(problem, BackendError):
                raise problem
        logger.error("v3 send %s: %d of %d parts not queued", message_id, len(failed), len(bodies))
        return errors_response(
            503,
            [Problem(f"Service unavailable: {len(queued)} of {len(bodies)} emails were queued")],
        )
    logger.info("v3 send queued", extra={"message_id": message_id, "emails": len(queued)})
    return web.Response(status=202, headers={"X-Message-Id": message_id})


def _personalizations(data: Any) -> int:
    """The number of emails `data` makes, if `translate` accepts it (then one per
    personalization); 1 for a body it refuses (the id is never shown)."""
    personalizations = data.get("personalizations") if isinstance(data, dict) else None
    if isinstance(personalizations, list) and 1 <= len(personalizations) <= MAX_PERSONALIZATIONS:
        return len(personalizations)
    return 1


async def _after_queued(app: web.Application, envelopes: list[Envelope]) -> None:
    """Record the schedule of each queued scheduled email (the API writes no delivery record:
    an email reads as queued until a node tried it)."""
    await asyncio.gather(*(record_schedule(app, envelope) for envelope in envelopes))


def add_v3_routes(app: web.Application) -> None:
    app[FRONT_DOOR] = V3FrontDoor(app[SETTINGS].api)
    app.router.add_post("/v3/mail/send", mail_send, name="v3-mail-send")
