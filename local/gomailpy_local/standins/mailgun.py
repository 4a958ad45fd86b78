"""An HTTP server standing in for Mailgun's `POST /v3/<domain>/messages.mime`, and its webhook.

    async with MailgunStandIn(api_key="k", domain="mg.example.com") as mailgun:
        mailgun.base_url                          # http://127.0.0.1:PORT
        mailgun.mode = "throttle"                 # next sends answer 429
        mailgun.messages[0].message               # the MIME bytes accepted

What it checks, as Mailgun's API reference for `messages.mime` gives it (answering Mailgun's
error shape, `{"message": "..."}`, and a bare 401 "Forbidden"):
- HTTP Basic auth, user `api`, password the API key (401 otherwise);
- the path `/v3/<domain>/messages.mime` of its own domain (404 "Domain not found" otherwise);
- a `multipart/form-data` body (400 "Invalid request content type" otherwise) with `to` (one or
  more fields, each a comma-separated list of addresses; 400 when missing or not addresses, or
  more than 1,000) and `message` sent as a file upload (400 when missing or a plain field);
- `o:`, `h:` and `v:` options of at most 16 kB together.
Accepted sends are recorded (`messages`: recipients, MIME bytes, `v:` variables, `o:` options)
and answered 200 `{"id": "<...@domain>", "message": "Queued. Thank you."}`.

Modes: "ok"; "fail" (503); "throttle" (429 with Retry-After); "hang" (never answer, until
`stop()`); "reject" (400, as for an invalid address); "sandbox" (400 "Domain ... is not allowed to
send", an account refusal).

Events, like Mailgun's webhooks: when `events_url` is set, every accepted send is followed, for
each recipient, by one POST per event of `{"signature": {"timestamp", "token", "signature"},
"event-data": {...}}`, signed with `signing_key` (HMAC-SHA256 of timestamp + token, hex). Each
recipient gets `accepted`, then by its address (gomailpy_local.standins.events.outcome_for):
`bounce...` a failed/permanent 550 5.1.1, `defer...` a failed/temporary 451 4.2.0, `complain...`
delivered then complained, any other delivered. Its `user-variables` are the send's `v:` ones,
as Mailgun's are. A post that finds no server or gets a 5xx is tried again a few times.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from typing import Any

import aiohttp
from aiohttp import BodyPartReader, web

from gomailpy.feedback.mailgun import sign
from gomailpy.lifecycle import cancel_and_wait
from gomailpy_local.standins.control import Controllable, StandIn, add_control_routes
from gomailpy_local.standins.events import BOUNCE, COMPLAIN, DEFER, RETRY_DELAYS_S, outcome_for

logger = logging.getLogger(__name__)

MODES = ("ok", "fail", "throttle", "hang", "reject", "sandbox")
API_USER = "api"
RETRY_AFTER_S = 1
MAX_REQUEST_BYTES = 25 * 1024 * 1024  # Mailgun's limit on a message
MAX_RECIPIENTS = 1000
MAX_OPTIONS_BYTES = 16 * 1024  # o:, h: and v: parameters together


@dataclass(frozen=True, slots=True)
class ReceivedMime:
    """One `messages.mime` request the stand-in accepted."""

    message_id: str  # as answered, without angle brackets
    domain: str
    to: list[str]  # the envelope recipients, as given in `to`
    message: bytes  # the MIME file, byte for byte
    variables: dict[str, str]  # v: fields, without the prefix
    options: dict[str, list[str]]  # o: and h: fields, with their prefix
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "domain": self.domain,
            "to": self.to,
            "variables": self.variables,
            "options": self.options,
            "received_at": self.received_at.isoformat(),
            "message": self.message.decode("utf-8", "replace"),
        }


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of an HTTP Basic Authorization header; None for any other."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeError):
        return None
    return (user, password) if colon else None


def split_addresses(value: str) -> list[str]:
    """The addresses of one `to` field: comma-separated, each bare or `Name <address>`."""
    found = []
    for part in value.split(","):
        part = part.strip()
        if "<" in part and part.endswith(">"):
            part = part[part.rindex("<") + 1 : -1].strip()
        if part:
            found.append(part)
    return found


def _is_address(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(at and local and "." in domain and not any(c.isspace() for c in address))


@dataclass
class _Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


async def _read_form(request: web.Request) -> _Form:
    """The multipart/form-data fields of `request` (text) and its file uploads (bytes)."""
    form = _Form()
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue  # a nested multipart, or a part without a name: Mailgun ignores both
        data = bytes(await part.read(decode=True))
        if part.filename is not None:
            form.files[part.name] = data
        else:
            form.fields.setdefault(part.name, []).append(data.decode("utf-8", "replace"))
    return form


def events_for(sent: ReceivedMime, recipient: str, sender: str, now: float) -> list[dict[str, Any]]:
    """The `event-data` Mailgun would post for one recipient of an accepted send, in order
    (the fields of Mailgun's documented samples, api-events.rst)."""
    headers = BytesHeaderParser().parsebytes(sent.message)
    common: dict[str, Any] = {
        "log-level": "info",
        "recipient": recipient,
        "recipient-domain": recipient.rpartition("@")[2],
        "envelope": {"sender": sender, "transport": "smtp", "targets": recipient},
        "flags": {"is-authenticated": True, "is-test-mode": False},
        "message": {
            "headers": {
                "to": str(headers.get("To", "")),
                "message-id": sent.message_id,
                "from": str(headers.get("From", "")),
                "subject": str(headers.get("Subject", "")),
            },
            "attachments": [],
            "size": len(sent.message),
        },
        "tags": sent.options.get("o:tag", []),
        "campaigns": [],
        "user-variables": dict(sent.variables),
    }

    def event(name: str, at: float, **fields: Any) -> dict[str, Any]:
        # Mailgun's event ids are 22 characters of URL-safe base64.
        return {
            **common,
            "event": name,
            "id": secrets.token_urlsafe(16)[:22],
            "timestamp": at,
            **fields,
        }

    events = [event("accepted", now)]
    outcome = outcome_for(recipient)
    if outcome == BOUNCE:
        events.append(
            event(
                "failed",
                now + 0.5,
                severity="permanent",
                reason="bounce",
                **{"log-level": "error"},
                **{
                    "delivery-status": {
                        "attempt-no": 1,
                        "code": 550,
                        "enhanced-code": "5.1.1",
                        "message": "5.1.1 The email account that you tried to reach does not"
                        " exist (stand-in)",
                        "description": "",
                        "session-seconds": 0.1,
                    }
                },
            )
        )
    elif outcome == DEFER:
        events.append(
            event(
                "failed",
                now + 0.5,
                severity="temporary",
                reason="generic",
                **{"log-level": "warn"},
                **{
                    "delivery-status": {
                        "attempt-no": 1,
                        "code": 451,
                        "enhanced-code": "4.2.0",
                        "message": "4.2.0 Mailbox temporarily unavailable (stand-in)",
                        "description": "",
                        "retry-seconds": 600,
                    }
                },
            )
        )
    else:
        status = {"attempt-no": 1, "code": 250, "message": "OK", "description": "", "tls": True}
        events.append(event("delivered", now + 0.5, **{"delivery-status": status}))
        if outcome == COMPLAIN:
            events.append(event("complained", now + 1.0, **{"log-level": "warn"}))
    return events


@dataclass(frozen=True, slots=True)
class MailgunPost:
    """One webhook post the stand-in made: its event and what the webhook answered (0: none)."""

    status: int
    event: dict[str, Any]


class MailgunStandIn(StandIn):
    """An aiohttp server on `host`; see the module docstring."""

    modes: tuple[str, ...] = MODES

    def __init__(
        self,
        api_key: str = "standin-key",
        domain: str = "mg.standin.example",
        signing_key: str = "standin-signing-key",
        host: str = "127.0.0.1",
        port: int = 0,
        mode: str = "ok",
        controls: Mapping[str, Controllable] | None = None,
        events_url: str | None = None,
    ) -> None:
        self.api_key = api_key
        self.domain = domain
        self.signing_key = signing_key
        self.events_url = events_url  # every accepted send's events go there (None: none)
        self.posts: list[MailgunPost] = []
        self.host = host
        self.port = port  # 0 until started: then the real port
        self.messages: list[ReceivedMime] = []
        self.requests = 0  # every messages.mime request, whatever its answer
        self._mode = "ok"
        self.set_mode(mode)
        self._controls = dict(controls or {})
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def signed(self, event_data: dict[str, Any], timestamp: str | None = None) -> bytes:
        """The body Mailgun posts for `event_data` (tests post it by hand)."""
        timestamp = timestamp or str(int(time.time()))
        token = secrets.token_hex(25)  # 50 characters, as Mailgun's
        signature = {
            "timestamp": timestamp,
            "token": token,
            "signature": sign(self.signing_key, timestamp, token),
        }
        return json.dumps({"signature": signature, "event-data": event_data}).encode()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/v3/{domain}/messages.mime", self._send)
        add_control_routes(app, "/_standin", self)
        for name, standin in self._controls.items():
            add_control_routes(app, f"/_standin/{name}", standin)
        return app

    async def _send(self, request: web.Request) -> web.Response:
        self.requests += 1
        if basic_credentials(request.headers.get("Authorization", "")) != (API_USER, self.api_key):
            return web.Response(status=401, text="Forbidden")
        domain = request.match_info["domain"]
        if domain != self.domain:
            return _error(404, f"Domain not found: {domain}")
        mode = self._mode
        if mode == "hang":
            await self._stopping.wait()  # never answers; stop() ends the wait
            return _error(503, "Shutting down")
        if mode == "fail":
            return _error(503, "Service Unavailable")
        if mode == "throttle":
            return web.json_response(
                {"message": "Too many requests"},
                status=429,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        if request.content_type != "multipart/form-data":
            return _error(
                400,
                "Invalid request content type. Expecting 'multipart/form-data' but got"
                f" '{request.content_type}'",
            )
        try:
            form = await _read_form(request)
        except (ValueError, AssertionError, aiohttp.ClientError):
            return _error(400, "malformed multipart/form-data request")
        problem = self._problem(form)
        if problem:
            return _error(400, problem)
        if mode == "reject":
            return _error(400, "to parameter is not a valid address. please check documentation")
        if mode == "sandbox":
            return _error(
                400,
                f"Domain {self.domain} is not allowed to send: Sandbox subdomains are for test"
                " purposes only. Please add your own domain or add the address to authorized"
                " recipients in Account Settings.",
            )
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        message_id = f"{stamp}.{uuid.uuid4().hex[:16]}@{self.domain}"
        to = [a for value in form.fields["to"] for a in split_addresses(value)]
        sent = ReceivedMime(
            message_id=message_id,
            domain=domain,
            to=to,
            message=form.files["message"],
            variables={k[2:]: v[-1] for k, v in form.fields.items() if k.startswith("v:")},
            options={k: v for k, v in form.fields.items() if k[:2] in ("o:", "h:")},
        )
        self.messages.append(sent)
        self._after_send(sent)
        return web.json_response({"id": f"<{message_id}>", "message": "Queued. Thank you."})

    def _problem(self, form: _Form) -> str:
        """Mailgun's 400 message for a `messages.mime` form it would refuse; "" if none."""
        if "message" in form.fields:
            return "'message' parameter is not a file"
        if "message" not in form.files:
            return "message parameter is missing"
        if not form.fields.get("to"):
            return "to parameter is missing"
        to = [a for value in form.fields["to"] for a in split_addresses(value)]
        if not to or not all(_is_address(a) for a in to):
            return "to parameter is not a valid address. please check documentation"
        if len(to) > MAX_RECIPIENTS:
            return f"Too many recipients, max is {MAX_RECIPIENTS}"
        options = sum(
            len(k) + sum(len(v.encode()) for v in values)
            for k, values in form.fields.items()
            if k[:2] in ("o:", "h:", "v:")
        )
        if options > MAX_OPTIONS_BYTES:
            return (
                "Send options (parameters starting with o:, h:, or v:) are limited to 16 kB total"
            )
        return ""

    def _after_send(self, sent: ReceivedMime) -> None:
        url = self.events_url
        if url is None:
            return
        headers = BytesHeaderParser().parsebytes(sent.message)
        sender = str(headers.get("From", "")).rpartition("<")[2].rstrip(">").strip()
        now = time.time()
        for recipient in sent.to:
            task = asyncio.create_task(
                self._post_all(url, events_for(sent, recipient, sender, now))
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post_all(self, url: str, events: list[dict[str, Any]]) -> None:
        for event in events:  # one post per event, in order, as Mailgun posts them
            await self._post(url, event)

    async def _post(self, url: str, event: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        status = 0
        for delay_s in (0.0, *RETRY_DELAYS_S):
            await asyncio.sleep(delay_s)
            body = self.signed(event)  # each attempt signed afresh, with its own token
            headers = {"Content-Type": "application/json"}
            try:
                async with self._session.post(url, data=body, headers=headers) as answer:
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                logger.info("Mailgun stand-in: event post to %s failed: %s", url, exc)
                continue
            if status < 500:
                break
        self.posts.append(MailgunPost(status, event))

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
        await cancel_and_wait(self._tasks)
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._runner.cleanup()
        self._runner = None
