"""The SendGrid stand-in's Event Webhook: signed posts of the events real SendGrid would send.

What happens to a recipient is chosen by its address, the convention every stand-in follows
(the SMTP stand-in sends DSNs by it too): the local part, lower-cased, starting with

    bounce     -> the address does not exist: a hard bounce   (bounce@example.org, bounce+1@...)
    complain   -> delivered, then marked as spam               (complain@example.org)
    defer      -> the receiving server says "try later"       (defer@example.org)
    anything else -> delivered

Every recipient first gets `processed`. One POST per accepted send carries its events, signed as
SendGrid signs: ECDSA P-256 with SHA-256 over the timestamp header followed by the body, with
the stand-in's own key pair (`public_key` is what `events.sendgrid_public_key` must hold). A post
that finds no server or gets a 5xx is tried again a few times, as SendGrid does.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec

from gomailpy.feedback.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, public_key_text, sign
from gomailpy.lifecycle import cancel_and_wait

logger = logging.getLogger(__name__)

BOUNCE, COMPLAIN, DEFER = "bounce", "complain", "defer"
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)  # after the first attempt: five posts at most


def outcome_for(address: str) -> str:
    """ "bounce", "complain", "defer" or "deliver" for a recipient address (see above)."""
    local = address.rpartition("@")[0].lower()
    for outcome in (BOUNCE, COMPLAIN, DEFER):
        if local.startswith(outcome):
            return outcome
    return "deliver"


def _recipients(block: dict[str, Any]) -> list[str]:
    return [
        str(entry["email"])
        for kind in ("to", "cc", "bcc")
        for entry in block.get(kind) or []
        if isinstance(entry, dict) and "email" in entry
    ]


def events_for(message_id: str, payload: dict[str, Any], now: int) -> list[dict[str, Any]]:
    """The events SendGrid would report for one accepted `/v3/mail/send` payload."""
    custom = payload.get("custom_args") or {}
    events: list[dict[str, Any]] = []
    for number, block in enumerate(payload.get("personalizations") or []):
        # SendGrid puts custom_args at the top level of each event.
        args = {**custom, **(block.get("custom_args") or {})}
        for address in _recipients(block):
            common = {
                **args,
                "email": address,
                "timestamp": now,
                "smtp-id": f"<{message_id}@standin.sendgrid.local>",
                "sg_message_id": f"{message_id}.standin-{number}",
            }
            event = functools.partial(_event, common)
            events.append(event("processed"))
            outcome = outcome_for(address)
            if outcome == BOUNCE:
                events.append(
                    event(
                        "bounce",
                        type="bounce",
                        status="5.1.1",
                        bounce_classification="Invalid Address",
                        reason="550 5.1.1 The email account does not exist (stand-in)",
                    )
                )
            elif outcome == DEFER:
                events.append(
                    event(
                        "deferred",
                        attempt="1",
                        response="450 4.2.0 Mailbox temporarily unavailable (stand-in)",
                    )
                )
            else:
                events.append(event("delivered", response="250 2.0.0 OK (stand-in)"))
                if outcome == COMPLAIN:
                    events.append(event("spamreport"))
    return events


def _event(common: dict[str, Any], name: str, **fields: Any) -> dict[str, Any]:
    return {**common, "event": name, "sg_event_id": uuid.uuid4().hex, **fields}


@dataclass(frozen=True, slots=True)
class WebhookPost:
    """One post the stand-in made: what it sent and what the webhook answered (0: no answer)."""

    status: int
    events: list[dict[str, Any]]


class WebhookPoster:
    """Posts signed events to `url` in the background; `aclose()` stops what is still going."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url
        self.posts: list[WebhookPost] = []
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    @property
    def public_key(self) -> str:
        return public_key_text(self._key.public_key())

    def signed(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        """The headers SendGrid sends with `body` (tests use it to post by hand)."""
        timestamp = timestamp or str(int(time.time()))
        return {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._key, timestamp, body),
        }

    def after_send(self, message_id: str, payload: dict[str, Any]) -> None:
        if self.url is None:
            return
        task = asyncio.create_task(self._post(self.url, events_for(message_id, payload, _now())))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, events: list[dict[str, Any]]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        # Like SendGrid's own posts: compact JSON ending in CRLF, signed as sent.
        body = json.dumps(events, separators=(",", ":")).encode() + b"\r\n"
        status = 0
        for delay_s in (0.0, *RETRY_DELAYS_S):
            await asyncio.sleep(delay_s)
            try:
                async with self._session.post(url, data=body, headers=self.signed(body)) as answer:
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                logger.info("SendGrid stand-in: event post to %s failed: %s", url, exc)
                continue
            if status < 500:
                break
        self.posts.append(WebhookPost(status, events))

    async def aclose(self) -> None:
        await cancel_and_wait(self._tasks)
        if self._session is not None:
            await self._session.close()
            self._session = None


def _now() -> int:
    return int(time.time())
