"""Where a webhook may go, at delivery: `GuardedResolver` checks every address DNS gives for a
target's host before aiohttp connects to it (the checks: gomailpy.config.webhook_targets, which
the settings also run on every target's URL at config time).

    GuardedResolver(allow_loopback=False)          # delivery: every address DNS gives, checked

aiohttp's connector resolves through it, so the addresses checked are the addresses connected to
(no second lookup to race: no DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from gomailpy.config.webhook_targets import (
    LOOPBACK_HINT,
    TargetRefusedError,
    address_problem,
    name_problem,
)

__all__ = ["GuardedResolver", "TargetRefusedError"]


class GuardedResolver(AbstractResolver):
    """A resolver (aiohttp's by default) that refuses a host when any address it resolves to
    is one `address_problem` names: aiohttp connects only to addresses checked here."""

    def __init__(self, *, allow_loopback: bool, inner: AbstractResolver | None = None) -> None:
        self._allow_loopback = allow_loopback
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        why = name_problem(host, allow_loopback=self._allow_loopback)
        if why:
            raise TargetRefusedError(f"{host} is {why}")
        found = await self._inner.resolve(host, port, family)
        for entry in found:
            try:
                address = ipaddress.ip_address(entry["host"].split("%", 1)[0])
            except ValueError:
                raise TargetRefusedError(f"{host} resolves to {entry['host']!r}") from None
            why = address_problem(address, allow_loopback=self._allow_loopback)
            if why:
                hint = address_problem(address, allow_loopback=True) is None
                raise TargetRefusedError(
                    f"{host} resolves to {entry['host']}, {why}" + (f"; {LOOPBACK_HINT}" * hint)
                )
        if not found:
            raise TargetRefusedError(f"{host} resolves to no address")
        return found

    async def close(self) -> None:
        await self._inner.close()
