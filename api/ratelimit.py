"""Rate limits: token buckets per client address and per API key, in this process's memory.

A bucket holds up to `burst` tokens and refills at `rate` tokens per second; each request takes
one, and a request finding less than one is answered 429 with Retry-After (the whole seconds
until a token is back). Limits are per API node: with N nodes behind a load balancer a client
may get up to N times the configured rate (configure rate / N per node for a total).

Memory is bounded: buckets are kept in least-recently-used order, a bucket idle long enough to
be full again is dropped (a full bucket is the same as none), and past `max_buckets` the least
recently used is dropped even if not full, which at worst gives that client a fresh burst.

The clock is injectable (tests step it by hand instead of sleeping).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from api.responses import error_response

Clock = Callable[[], float]
IPV6_PREFIX = 64  # one client usually holds a whole /64: limit it as one address
UNKNOWN_ADDRESS = "unknown"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per key (an address, an API key id), created on first use."""

    def __init__(
        self, rate: float, burst: int, *, max_buckets: int = 100_000, clock: Clock = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1 or max_buckets < 1:
            raise ValueError("rate must be > 0, burst and max_buckets >= 1")
        self.rate = rate
        self.burst = burst
        self.max_buckets = max_buckets
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._refill_s = burst / rate  # how long an idle bucket takes to be full again

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 if granted, else the seconds until one is available."""
        now = self.clock()
        self._evict_idle(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            elapsed = max(0.0, now - bucket.updated)  # a clock stepping back refills nothing
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
            self._buckets.move_to_end(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _evict_idle(self, now: float) -> None:
        # Least recently used first: stop at the first bucket touched too recently to be full.
        while self._buckets:
            bucket = next(iter(self._buckets.values()))
            if now - bucket.updated < self._refill_s:
                break
            self._buckets.popitem(last=False)


def retry_after_s(wait_s: float) -> int:
    """Retry-After in whole seconds, never 0 (a client retrying at once would just be refused)."""
    return max(1, math.ceil(wait_s))


def too_many_requests(what: str, limiter: TokenBuckets, wait_s: float) -> web.Response:
    retry = retry_after_s(wait_s)
    response = error_response(
        429,
        f"Too many requests {what}: the limit is {limiter.rate:g} per second with bursts of"
        f" {limiter.burst}; retry after {retry} s",
    )
    response.headers["Retry-After"] = str(retry)
    return response


def client_address(request: web.Request, header: str | None = None) -> str:
    """The address a request is limited by: the TCP peer, or the last entry of `header` (set by
    a trusted reverse proxy). IPv6 addresses count by their /64."""
    raw: str | None = None
    if header is not None:
        value = request.headers.get(header, "")
        raw = value.rsplit(",", 1)[-1].strip() or None
    if raw is None:
        raw = request.remote
    if not raw:
        return UNKNOWN_ADDRESS
    return normalize_address(raw)


def normalize_address(raw: str) -> str:
    text = raw.strip()
    if text.startswith("[") and "]" in text:  # "[v6]:port"
        text = text[1 : text.index("]")]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        # "v4:port" from a proxy, or a name: keep the host part, bounded in size.
        host = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)
