"""Message ids that prove themselves: issued by the API, they carry their issue time and a MAC.

    ids = message_ids(settings.status)
    message_id = ids.new()              # "0194f2a3b4c5-9f8e7d6c5b4a3928-1a2b3c4d5e6f7081"
    request_id = ids.new(parts=3)       # "0194f2a3b4c5-9f8e7d6c5b4a3928-3-…": a v3 request's,
                                        # whose emails are request_id + "_0", "_1", "_2"
    ids.issued_at(message_id)           # its issue time (epoch s), or None: not ours, or expired

This is what lets the API write nothing per email and still answer `GET /email/{id}` truthfully:
an email answered 200 has no record until a node tried it, and an id with a valid MAC, issued
less than `status.ttl_s` ago, can only be one the API answered 200 for (ids of failed requests
are never shown to anyone) — so it reads as `queued`. Any other id without a record is 404.

A v3 request makes one email per personalization, `<request id>_<n>`. The request id carries the
number of parts under its MAC, so `_<n>` reads as an email only for n below it; the request id
itself names no email. The parts of a request issued before the count was (`<one-email id>_<n>`)
cannot be told from made-up ones: they read as unknown until a node has tried them (seconds).

The MAC is HMAC-SHA-256 under `status.id_key` (a secret shared by every API node; from the
environment: GOMAILPY_STATUS__ID_KEY). Without one, the key is derived from the table name, which
anyone can do: so an API whose status store is a real one refuses to start without it
(`id_key_problem`); a memory store or an emulator on loopback may keep the derived key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

from gomailpy.config.settings import Settings, StatusSettings
from gomailpy.queues.aws import is_loopback

_ID = re.compile(r"^([0-9a-f]{12})-([0-9a-f]{16})(?:-([1-9][0-9]{0,5}))?-([0-9a-f]{16})$")
_PART = re.compile(r"^(.+)_(0|[1-9][0-9]{0,5})$")
MAX_PARTS = 999_999  # what the id's count field holds; a v3 request makes at most 1000
FUTURE_SKEW_S = 300.0  # an id from further ahead than this was not issued by a sane clock
MIN_KEY_CHARS = 32  # status.id_key: e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`
ID_KEY_VARIABLE = "GOMAILPY_STATUS__ID_KEY"


class MessageIds:
    def __init__(self, key: bytes, ttl_s: float) -> None:
        self._key = key
        self._ttl_s = ttl_s

    def _mac(self, signed: str) -> str:
        return hmac.new(self._key, signed.encode(), hashlib.sha256).hexdigest()[:16]

    def new(self, now: float | None = None, *, parts: int | None = None) -> str:
        """A fresh id: issue time in milliseconds, 64 random bits, 64 bits of MAC (hex).

        `parts`: the id of a request that makes that many emails (1 or more), which are
        `<id>_0` to `<id>_<parts - 1>`; the count is covered by the MAC.
        """
        stamp = f"{int((time.time() if now is None else now) * 1000):012x}"
        nonce = secrets.token_hex(8)
        if parts is None:
            return f"{stamp}-{nonce}-{self._mac(f'{stamp}-{nonce}')}"
        if not 1 <= parts <= MAX_PARTS:
            raise ValueError(f"parts must be from 1 to {MAX_PARTS}, not {parts}")
        signed = f"{stamp}-{nonce}-{parts}"
        return f"{signed}-{self._mac(signed)}"

    def issued_at(self, message_id: str, now: float | None = None) -> float | None:
        """When the email `message_id` was issued (epoch seconds), if the id is one of ours, names
        an email (not a request of several) and is unexpired."""
        part = _PART.match(message_id)
        base, index = (part.group(1), int(part.group(2))) if part else (message_id, None)
        match = _ID.match(base)
        if match is None:
            return None
        stamp, nonce, parts, mac = match.groups()
        signed = f"{stamp}-{nonce}" if parts is None else f"{stamp}-{nonce}-{parts}"
        if not hmac.compare_digest(mac, self._mac(signed)):
            return None
        if parts is None:
            named = index is None  # one email's id: `<it>_<n>` was never issued
        else:
            named = index is not None and index < int(parts)  # not the request's own id
        if not named:
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


def id_key_problem(settings: Settings) -> str | None:
    """Why an API with these settings must not issue ids, or None.

    With the status store on a real endpoint, ids must be MAC'd under a secret
    (`status.id_key`, at least MIN_KEY_CHARS characters): a derived key lets anyone mint ids that
    read as `queued`. A memory store, or a DynamoDB emulator on loopback (`gomail up`, tests),
    may go without.
    """
    status = settings.status
    if status.backend != "dynamodb":
        return None
    endpoint = status.endpoint_url or settings.aws.endpoint_url
    if is_loopback(endpoint):
        return None
    where = f"the status store ({endpoint or 'AWS DynamoDB'}) is not an emulator on loopback"
    if status.id_key is None:
        return (
            f"status.id_key: missing secret: {where}, so message ids need a secret MAC key;"
            f" set {ID_KEY_VARIABLE} (the same on every API node), e.g. to the output of"
            " `python -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    if len(status.id_key.get_secret_value()) < MIN_KEY_CHARS:
        return (
            f"status.id_key: too short: {where}, so {ID_KEY_VARIABLE} must be a random secret"
            f" of at least {MIN_KEY_CHARS} characters (e.g. `secrets.token_hex(32)`)"
        )
    return None
