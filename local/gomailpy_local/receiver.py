"""A local webhook receiver for `gomail up`: what an application's endpoint would see.

    async with WebhookReceiver(secret) as receiver:     # 127.0.0.1, a free port
        receiver.url                                    # POST here (the endpoint's url)
        receiver.page_url                               # the last events, as a page
        receiver.events                                 # verified, deduplicated by webhook-id

Every request is verified with the `standardwebhooks` library, as a real receiver in any
language would be (a bad or missing signature: 401, nothing kept). Events are kept once per
webhook-id (a retry that was delivered before is acknowledged and dropped). `mode` makes it
misbehave like a real endpoint: `fail` (500), `gone` (410) or `hang` (never answers).
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections import deque
from typing import Any, Self

import yaml
from aiohttp import web
from pydantic import SecretStr
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from gomailpy.config.settings import Settings
from gomailpy.webhooks.signing import new_secret

MODES = ("ok", "fail", "gone", "hang")
LOCAL_ENDPOINT = "local"  # its name in webhooks.endpoints under `gomail up`


class WebhookReceiver:
    def __init__(
        self, secret: str | None = None, *, host: str = "127.0.0.1", port: int = 0, keep: int = 500
    ) -> None:
        self.secret = secret or new_secret()
        self._verifier = Webhook(self.secret)
        self._host = host
        self._port = port
        self.mode = "ok"
        self.events: deque[dict[str, Any]] = deque(maxlen=keep)  # newest last
        self.webhook_ids: set[str] = set()
        self.requests = 0
        self.duplicates = 0
        self.unverified = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}/webhook"

    @property
    def page_url(self) -> str:
        return f"http://{self._host}:{self._port}/"

    def of(self, message_id: str) -> list[dict[str, Any]]:
        """The events kept for one email, as received (`{"type", "timestamp", "data"}`)."""
        return [e for e in self.events if e["data"].get("messageId") == message_id]

    async def _webhook(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.text()
        try:
            payload = self._verifier.verify(body, dict(request.headers))
        except (WebhookVerificationError, ValueError):
            self.unverified += 1
            return web.json_response({"error": "signature not verified"}, status=401)
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "fail":
            return web.json_response({"error": "failing on purpose"}, status=500)
        if self.mode == "gone":
            return web.json_response({"error": "gone"}, status=410)
        webhook_id = request.headers["webhook-id"]
        if webhook_id in self.webhook_ids:
            self.duplicates += 1
            return web.Response(status=204)
        self.webhook_ids.add(webhook_id)
        for event in payload if isinstance(payload, list) else [payload]:
            self.events.append({**event, "webhookId": webhook_id, "receivedAt": time.time()})
        return web.Response(status=204)

    async def _page(self, request: web.Request) -> web.Response:
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v or ''))}</td>"
                for v in (
                    time.strftime("%H:%M:%S", time.localtime(e["receivedAt"])),
                    e["type"],
                    e["data"].get("messageId"),
                    e["data"].get("recipient"),
                    e["data"].get("provider"),
                    e["data"].get("reason"),
                    e["webhookId"],
                )
            )
            + "</tr>"
            for e in reversed(self.events)
        )
        page = (
            "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=2>"
            "<title>gomailpy webhooks</title><h1>Webhooks received (verified)</h1>"
            f"<p>{len(self.events)} event(s), newest first; {self.unverified} refused"
            f" (bad signature); mode {html.escape(self.mode)}</p><table border=1 cellpadding=4>"
            "<tr><th>at<th>type<th>messageId<th>recipient<th>provider<th>reason<th>webhook-id"
            f"{rows}</table>"
        )
        return web.Response(text=page, content_type="text/html")

    async def _events_json(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.events))

    async def _set_mode(self, request: web.Request) -> web.Response:
        try:
            mode = json.loads(await request.text()).get("mode")
        except (ValueError, AttributeError):
            mode = None
        if mode not in MODES:
            return web.json_response({"error": f"mode must be one of {list(MODES)}"}, status=400)
        self.mode = mode
        return web.json_response({"mode": mode})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhook", self._webhook)
        app.router.add_get("/", self._page)
        app.router.add_get("/events.json", self._events_json)
        app.router.add_post("/mode", self._set_mode)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def with_local_receiver(settings: Settings, receiver: WebhookReceiver) -> Settings:
    """`settings` with webhooks on and an endpoint `local` to `receiver` (`gomail up`): loopback
    targets allowed (it is on 127.0.0.1; private ones never are), its secret beside any
    configured ones."""
    data = settings.model_dump(mode="python")
    webhooks = data["webhooks"]
    secrets = settings.webhooks.secrets
    known = yaml.safe_load(secrets.get_secret_value()) if secrets is not None else None
    webhooks.update(
        enabled=True,
        allow_loopback_targets=True,
        endpoints=[*webhooks["endpoints"], {"name": LOCAL_ENDPOINT, "url": receiver.url}],
        secrets=SecretStr(json.dumps({**(known or {}), LOCAL_ENDPOINT: receiver.secret})),
    )
    return Settings.model_validate(data)


def banner_lines(settings: Settings) -> list[str]:
    endpoint = settings.webhooks.endpoint(LOCAL_ENDPOINT)
    if endpoint is None:
        return []
    page = endpoint.url.removesuffix("webhook")
    return [f"  webhooks        {page}   (signed events, as your application would get them)"]
