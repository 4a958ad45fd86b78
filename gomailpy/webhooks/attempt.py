"""One webhook request, and when to try again.

    session = open_webhook_session(settings.webhooks)   # an aiohttp session guarding targets
    answer = await attempt(session, settings.webhooks, endpoint, delivery, SigningKeys(...))
    answer.verdict          # delivered (2xx) | gone (410) | refused (target not allowed) | retry

The request goes to the target's canonical URL (gomailpy.config.webhook_targets: its host normalised
and checked here, not by aiohttp's parser); a name is resolved by the session's
`GuardedResolver`, so the addresses checked are the ones connected to. A refused target is
`refused`: the deliverer dead-letters it at once, since retrying would not change the answer.
Redirects are never followed (a 3xx is not a delivery: tried again later), and at most
`max_response_bytes` of an answer are read before the connection is dropped, so a receiver
cannot make a node follow it elsewhere or fill its memory. Each attempt has its own timeout.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Literal

import aiohttp
from aiohttp.abc import AbstractResolver

from gomailpy.config.webhook_targets import checked_target
from gomailpy.config.webhooks import WebhookEndpointSettings, WebhooksSettings
from gomailpy.webhooks.outbox import Delivery
from gomailpy.webhooks.signing import signed_headers
from gomailpy.webhooks.targets import GuardedResolver, TargetRefusedError

MAX_HOP_S = 43_200  # SQS's longest visibility timeout: the longest one wait can be
USER_AGENT = "gomailpy-webhooks/1"

Verdict = Literal["delivered", "gone", "refused", "retry"]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None: no HTTP answer (timeout, refused connection, refused target)
    problem: str  # what went wrong, for logs and the dead-letter reason; "" when delivered
    seconds: float
    refused: bool = False  # the target is not allowed (checked before connecting)

    @property
    def verdict(self) -> Verdict:
        if self.refused:
            return "refused"
        if self.status is not None and 200 <= self.status < 300:
            return "delivered"
        if self.status == 410:
            return "gone"
        return "retry"


def backoff_s(attempt: int, base_s: float, *, rng: random.Random | None = None) -> int:
    """Seconds before try `attempt + 1`: base × 2^(attempt-1), capped at 12 h, with jitter
    (between half and all of it, so that a recovered receiver is not hit by every node at once)."""
    ceiling = min(MAX_HOP_S, base_s * 2 ** min(max(attempt - 1, 0), 30))
    return max(1, int(ceiling * (0.5 + 0.5 * (rng or random).random())))


class SigningKeys:
    """Every endpoint's keys, read from the settings once."""

    def __init__(self, webhooks: WebhooksSettings) -> None:
        self._current = webhooks.secret_map()
        self._previous = webhooks.previous_map()

    def __call__(self, name: str, now: float) -> list[bytes]:
        """The endpoint's key, and its previous one while the rotation window lasts."""
        keys = [self._current[name]] if name in self._current else []
        previous = self._previous.get(name)
        if previous is not None and now < previous[1]:
            keys.append(previous[0])
        return keys


def open_webhook_session(
    webhooks: WebhooksSettings, *, resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """A session whose connections go only to allowed addresses (checked after DNS, by a
    `GuardedResolver` around `resolver`: aiohttp's own unless a test gives a stub)."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allow_loopback=webhooks.allow_loopback_targets, inner=resolver),
        limit=0,  # per-endpoint concurrency is bounded by the deliverer
        ttl_dns_cache=10,
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
        auto_decompress=False,
    )


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """At most `cap` bytes of the answer. A longer one is not read on: its connection is
    dropped (a shorter one's goes back to the pool)."""
    head = b""
    try:
        while len(head) <= cap:
            chunk = await response.content.read(cap + 1 - len(head))
            if not chunk:
                response.release()
                return head
            head += chunk
    except (TimeoutError, aiohttp.ClientError):
        pass
    response.close()
    return head[:cap]


async def attempt(
    session: aiohttp.ClientSession,
    webhooks: WebhooksSettings,
    endpoint: WebhookEndpointSettings,
    delivery: Delivery,
    keys: SigningKeys,
    *,
    now: float | None = None,
) -> Answer:
    """POST one delivery to its endpoint, signed now; never raises for what the target does."""
    started = time.perf_counter()
    try:
        target = checked_target(endpoint.url, allow_loopback=webhooks.allow_loopback_targets)
    except TargetRefusedError as exc:
        return Answer(None, f"target refused: {exc}", 0.0, refused=True)
    body = delivery.body.encode()
    stamp = int(time.time() if now is None else now)
    headers = signed_headers(keys(endpoint.name, stamp), delivery.webhook_id, stamp, body)
    try:
        async with session.post(
            target.url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=webhooks.attempt_timeout_s),
        ) as response:
            status = response.status
            head = await _read_capped(response, webhooks.max_response_bytes)
    except TargetRefusedError as exc:
        took = time.perf_counter() - started
        return Answer(None, f"target refused: {exc}", took, refused=True)
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, TargetRefusedError):
            took = time.perf_counter() - started
            return Answer(None, f"target refused: {exc.os_error}", took, refused=True)
        return Answer(None, f"cannot connect: {exc}", time.perf_counter() - started)
    except TimeoutError:
        took = time.perf_counter() - started
        return Answer(None, f"no answer within {webhooks.attempt_timeout_s:g} s", took)
    except (aiohttp.ClientError, OSError) as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
    took = time.perf_counter() - started
    if 200 <= status < 300:
        return Answer(status, "", took)
    text = head[:200].decode("utf-8", "replace").strip()
    return Answer(status, f"HTTP {status}" + (f": {text}" if text else ""), took)
