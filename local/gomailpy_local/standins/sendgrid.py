"""An HTTP server standing in for SendGrid's v3 `POST /v3/mail/send`, with a control API.

    async with SendGridStandIn(api_key="k", controls={"smtp": smtp_standin}) as sendgrid:
        sendgrid.base_url                         # http://127.0.0.1:PORT
        sendgrid.mode = "throttle"                # next sends answer 429
        sendgrid.messages[0].payload              # what was accepted

What it checks, like SendGrid: `Authorization: Bearer <api_key>` (401 otherwise), and the
payload's shape (400 with SendGrid's `{"errors": [{"message", "field"}]}` otherwise):
personalizations with `to`, `from.email`, a subject (or template), content or attachments, each
address once per personalization. Accepted payloads are recorded and answered 202 with an
`X-Message-Id` header. Modes: "ok"; "fail" (503); "throttle" (429 with Retry-After); "hang"
(never answer, until `stop()`).

Events, like SendGrid's signed Event Webhook: when `events_url` is set, every accepted send is
followed by one signed POST there (ECDSA P-256 over timestamp + body, the stand-in's own key;
`public_key` is what goes in `events.sendgrid_public_key`). Each recipient gets `processed`, then
by its address (see `gomailpy_local.standins.events`): a local part starting with `bounce` a
`bounce`, `defer` a `deferred`, `complain` a `delivered` and a `spamreport`, any other a
`delivered` (bounce@example.org, bounce+1@example.org, complain-2@example.org).

Control API (see `gomailpy_local.standins.control`): `/_standin/messages`, `/_standin/mode`, and the
same under `/_standin/<name>` for every stand-in passed in `controls`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gomailpy_local.standins.control import Controllable, StandIn, add_control_routes
from gomailpy_local.standins.events import WebhookPoster

MODES = ("ok", "fail", "throttle", "hang")
SEND_PATH = "/v3/mail/send"
RETRY_AFTER_S = 1
MAX_REQUEST_BYTES = 30 * 1024 * 1024  # SendGrid's limit on a whole message (aiohttp's: 1 MiB)


@dataclass(frozen=True, slots=True)
class ReceivedPayload:
    """One `/v3/mail/send` request the stand-in accepted."""

    message_id: str
    payload: dict[str, Any]
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "received_at": self.received_at.isoformat(),
            "payload": self.payload,
        }


def _error(message: str, field: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field, "help": None}


def _check_addresses(value: Any, where: str, seen: set[str]) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        return [_error(f"The {where.rsplit('.', 1)[-1]} array is required and not empty.", where)]
    errors = []
    for index, entry in enumerate(value):
        address = entry.get("email") if isinstance(entry, dict) else None
        if not isinstance(address, str) or "@" not in address:
            errors.append(_error("Does not contain a valid address.", f"{where}.{index}.email"))
        elif address.lower() in seen:
            errors.append(
                _error(
                    "Each email address in the personalization block should be unique between"
                    " to, cc, and bcc.",
                    f"{where}.{index}.email",
                )
            )
        else:
            seen.add(address.lower())
    return errors


def _check_personalizations(personalizations: Any) -> list[dict[str, Any]]:
    if not isinstance(personalizations, list) or not personalizations:
        return [_error("The personalizations field is required and must have at least one.", "")]
    errors: list[dict[str, Any]] = []
    for index, block in enumerate(personalizations):
        where = f"personalizations.{index}"
        if not isinstance(block, dict):
            errors.append(_error("Must be an object.", where))
            continue
        seen: set[str] = set()
        errors += _check_addresses(block.get("to"), f"{where}.to", seen)
        for kind in ("cc", "bcc"):
            if kind in block:
                errors += _check_addresses(block[kind], f"{where}.{kind}", seen)
    return errors


def _has_subject(payload: dict[str, Any]) -> bool:
    if isinstance(payload.get("subject"), str) and payload["subject"]:
        return True
    blocks = payload.get("personalizations")
    return (
        isinstance(blocks, list)
        and bool(blocks)
        and all(isinstance(b, dict) and isinstance(b.get("subject"), str) for b in blocks)
        and all(b["subject"] for b in blocks)
    )


def _check_list(
    value: Any, name: str, required: tuple[str, ...], message: str
) -> list[dict[str, Any]]:
    """Errors for `content` or `attachments`: a non-empty list of objects with string fields."""
    if not isinstance(value, list) or not value:
        return [_error(f"The {name} value must be an array with at least one.", name)]
    return [
        _error(message, f"{name}.{index}")
        for index, item in enumerate(value)
        if not (isinstance(item, dict) and all(isinstance(item.get(k), str) for k in required))
        or (name == "content" and not item["value"])
    ]


def validate_payload(payload: Any) -> list[dict[str, Any]]:
    """SendGrid-style errors for a v3 mail/send body; empty when it would be accepted."""
    if not isinstance(payload, dict):
        return [_error("Bad Request", None)]
    templated = isinstance(payload.get("template_id"), str)
    errors = _check_personalizations(payload.get("personalizations"))
    sender = payload.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("email"), str):
        errors.append(_error("The from object must be provided for every email send.", "from"))
    if not templated and not _has_subject(payload):
        errors.append(_error("The subject is required.", "subject"))
    content, attachments = payload.get("content"), payload.get("attachments")
    if content is not None:
        errors += _check_list(
            content, "content", ("type", "value"), "Content must have a type and a value."
        )
    elif not templated and not attachments:
        errors.append(_error("Unless a valid template_id is provided, content is required.", ""))
    if attachments is not None:
        errors += _check_list(
            attachments,
            "attachments",
            ("content", "filename"),
            "Each attachment needs content and a filename.",
        )
    return errors


class SendGridStandIn(StandIn):
    """An aiohttp server on `host`; see the module docstring."""

    modes: tuple[str, ...] = MODES

    def __init__(
        self,
        api_key: str = "standin-key",
        host: str = "127.0.0.1",
        port: int = 0,
        mode: str = "ok",
        controls: Mapping[str, Controllable] | None = None,
        events_url: str | None = None,
    ) -> None:
        self.api_key = api_key
        # Signed events for every accepted send go to `events_url` (None: no events).
        self.webhook = WebhookPoster(events_url)
        self.host = host
        self.port = port  # 0 until started: then the real port
        self.messages: list[ReceivedPayload] = []
        self.requests = 0  # every /v3/mail/send request, whatever its answer
        self._mode = "ok"
        self.set_mode(mode)
        self._controls = dict(controls or {})
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def public_key(self) -> str:
        """The key its event posts verify with (base64 DER, as SendGrid shows it)."""
        return self.webhook.public_key

    @property
    def events_url(self) -> str | None:
        return self.webhook.url

    @events_url.setter
    def events_url(self, url: str | None) -> None:
        self.webhook.url = url

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post(SEND_PATH, self._send)
        add_control_routes(app, "/_standin", self)
        for name, standin in self._controls.items():
            add_control_routes(app, f"/_standin/{name}", standin)
        return app

    async def _send(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response(
                {
                    "errors": [
                        _error("The provided authorization grant is invalid, expired, or revoked")
                    ]
                },
                status=401,
            )
        mode = self._mode
        if mode == "hang":
            await self._stopping.wait()  # never answers; stop() ends the wait
            return web.json_response({"errors": [_error("Shutting down")]}, status=503)
        if mode == "fail":
            return web.json_response({"errors": [_error("Service Unavailable")]}, status=503)
        if mode == "throttle":
            return web.json_response(
                {"errors": [_error("Too many requests")]},
                status=429,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        try:
            payload: Any = await request.json()
        except ValueError:
            return web.json_response({"errors": [_error("Bad Request: not JSON")]}, status=400)
        errors = validate_payload(payload)
        if errors:
            return web.json_response({"errors": errors}, status=400)
        message_id = uuid.uuid4().hex[:22]
        self.messages.append(ReceivedPayload(message_id=message_id, payload=payload))
        self.webhook.after_send(message_id, payload)
        return web.Response(status=202, headers={"X-Message-Id": message_id})

    async def start(self) -> None:
        if self._runner is not None:
            return
        self._stopping = asyncio.Event()
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is None:
            return
        self._stopping.set()
        await self.webhook.aclose()
        await self._runner.cleanup()
        self._runner = None
