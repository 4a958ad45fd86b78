"""Where a webhook may go: never to this machine's neighbourhood unless allowed.

A webhook URL is a request gomailpy makes on someone's say-so; pointed at 127.0.0.1, a private
network or the cloud metadata service (169.254.169.254), it would reach what the internet must
not (server-side request forgery). So targets that are loopback, private, link-local, shared,
multicast, reserved or unspecified are refused unless `webhooks.allow_private_targets`:

- at config time, `static_problem`: the URL's shape, literal addresses and local names;
- at every delivery, `GuardedResolver`: each address DNS gives for the host is checked before
  aiohttp connects to it, so a name that later resolves to 10.0.0.5 is refused then, and the
  address checked is the address used (no second lookup to race).
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

ALLOW_HINT = "set webhooks.allow_private_targets: true to allow it"
LOCAL_NAMES = ("localhost", "localhost.localdomain", "metadata.google.internal")
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_problem(address: Address) -> str | None:
    """Why a webhook may not go to `address`, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA:
        return "the cloud metadata service"
    for test, what in (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_private, "a private address"),
        (address.is_multicast, "a multicast address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_reserved, "a reserved address"),
    ):
        if test:
            return what
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    return None


_SHARED = ipaddress.ip_network("100.64.0.0/10")


def static_problem(url: str, *, allow_private: bool) -> str | None:
    """What is wrong with a webhook URL without asking DNS (config time), or None."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"{url!r} is not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not host:
        return f"{url!r} must be an http:// or https:// URL with a host"
    if parts.username or parts.password:
        return f"{url!r}: credentials in the URL would be sent in clear; sign instead"
    if allow_private:
        return None
    name = host.lower().rstrip(".")
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        return f"{url!r} points at this machine ({host}); {ALLOW_HINT}"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None  # a name: checked after DNS at every delivery
    why = address_problem(address)
    return f"{url!r} points at {why} ({host}); {ALLOW_HINT}" if why else None


class TargetRefusedError(OSError):
    """A webhook target resolved to an address it may not use."""


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing hosts that resolve to an address `address_problem` names."""

    def __init__(self, *, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self._allow_private = allow_private
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return found
        for entry in found:
            why = address_problem(ipaddress.ip_address(entry["host"].split("%", 1)[0]))
            if why:
                raise TargetRefusedError(f"{host} resolves to {entry['host']}, {why}; {ALLOW_HINT}")
        return found

    async def close(self) -> None:
        await self._inner.close()
