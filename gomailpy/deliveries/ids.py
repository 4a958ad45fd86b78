"""Message ids that prove themselves: issued by the API, they carry their issue time and a MAC.

    ids = message_ids(settings.status)
    message_id = ids.new()              # "0194f2a3b4c5-9f8e7d6c5b4a3928-1a2b3c4d5e6f7081"
    ids.issued_at(message_id)           # its issue time (epoch s), or None: not ours, or expired

This is what lets the API write nothing per email and still answer `GET /email/{id}` truthfully:
an email answered 200 has no record until a node tried it, and an id with a valid MAC, issued
less than `status.ttl_s` ago, can only be one the API answered 200 for (ids of failed requests
are never shown to anyone) — so it reads as `queued`. Any other id without a record is 404.

The MAC is HMAC-SHA-256 under `status.id_key` (a secret shared by every API node; from the
environment: GOMAILPY_STATUS__ID_KEY). Without one, the key is derived from the table name: ids
then still catch typos and guesses, but a forged id could read as `queued`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

from gomailpy.settings import StatusSettings

_ID = re.compile(r"^([0-9a-f]{12})-([0-9a-f]{16})-([0-9a-f]{16})$")
FUTURE_SKEW_S = 300.0  # an id from further ahead than this was not issued by a sane clock


class MessageIds:
    def __init__(self, key: bytes, ttl_s: float) -> None:
        self._key = key
        self._ttl_s = ttl_s

    def _mac(self, stamp: str, nonce: str) -> str:
        digest = hmac.new(self._key, f"{stamp}-{nonce}".encode(), hashlib.sha256)
        return digest.hexdigest()[:16]

    def new(self, now: float | None = None) -> str:
        """A fresh id: issue time in milliseconds, 64 random bits, 64 bits of MAC (hex)."""
        stamp = f"{int((time.time() if now is None else now) * 1000):012x}"
        nonce = secrets.token_hex(8)
        return f"{stamp}-{nonce}-{self._mac(stamp, nonce)}"

    def issued_at(self, message_id: str, now: float | None = None) -> float | None:
        """When `message_id` was issued (epoch seconds), if it is one of ours and unexpired."""
        match = _ID.match(message_id)
        if match is None:
            return None
        stamp, nonce, mac = match.groups()
        if not hmac.compare_digest(mac, self._mac(stamp, nonce)):
            return None
        issued = int(stamp, 16) / 1000
        now = time.time() if now is None else now
        if not now - self._ttl_s <= issued <= now + FUTURE_SKEW_S:
            return None
        return issued


def message_ids(settings: StatusSettings) -> MessageIds:
    """The id issuer and checker for `settings` (the configured key, or one from the table)."""
    if settings.id_key is not None:
        key = settings.id_key.get_secret_value().encode()
    else:
        key = hashlib.sha256(b"gomailpy-message-id:" + settings.table.encode()).digest()
    return MessageIds(key, settings.ttl_s)
