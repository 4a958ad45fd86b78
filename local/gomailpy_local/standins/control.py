"""The stand-ins' control API, so a person or another process can read messages and flip faults.

    GET    {prefix}/messages        -> JSON list of what the stand-in received
    DELETE {prefix}/messages        -> forget them
    GET    {prefix}/mode            -> {"mode": "ok", "modes": [...]}
    POST   {prefix}/mode {"mode": "fail"}

`add_control_routes` adds these for any stand-in to an aiohttp app; the SendGrid stand-in serves
its own at `/_standin` and those of the stand-ins it is given at `/_standin/<name>` (the SMTP
stand-in at `/_standin/smtp`), so one HTTP port controls them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, Self

from aiohttp import web


class Controllable(Protocol):
    modes: tuple[str, ...]

    @property
    def mode(self) -> str: ...

    def set_mode(self, mode: str) -> None: ...

    def messages_json(self) -> list[dict[str, Any]]: ...

    def clear(self) -> None: ...


class Recorded(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class StandIn:
    """What every stand-in shares: a fault `mode` out of `modes`, what it `messages` got, and
    `async with` around its own `start` / `stop`."""

    modes: tuple[str, ...] = ("ok",)
    messages: Sequence[Recorded]
    _mode: str = "ok"

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self.set_mode(mode)

    def set_mode(self, mode: str) -> None:
        if mode not in self.modes:
            raise ValueError(f"mode must be one of {self.modes}, not {mode!r}")
        self._mode = mode

    def messages_json(self) -> list[dict[str, Any]]:
        return [m.to_json() for m in self.messages]

    def clear(self) -> None:
        self.messages = []

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def add_control_routes(app: web.Application, prefix: str, standin: Controllable) -> None:
    async def get_messages(request: web.Request) -> web.Response:
        return web.json_response(standin.messages_json())

    async def delete_messages(request: web.Request) -> web.Response:
        standin.clear()
        return web.json_response({"cleared": True})

    async def get_mode(request: web.Request) -> web.Response:
        return web.json_response({"mode": standin.mode, "modes": list(standin.modes)})

    async def post_mode(request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        mode = body.get("mode") if isinstance(body, dict) else None
        if mode not in standin.modes:
            return web.json_response(
                {"error": f"mode must be one of {list(standin.modes)}"}, status=400
            )
        standin.set_mode(mode)
        return web.json_response({"mode": standin.mode})

    app.router.add_get(f"{prefix}/messages", get_messages)
    app.router.add_delete(f"{prefix}/messages", delete_messages)
    app.router.add_get(f"{prefix}/mode", get_mode)
    app.router.add_post(f"{prefix}/mode", post_mode)
