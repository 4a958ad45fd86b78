"""Signed, self-contained link tokens: verified with the secret alone, no store read.

    token = sign(Link(Kind.UNSUBSCRIBE, "msg-1", "ann@example.com", group=3), key, now)
    link = verify(token, key, Kind.UNSUBSCRIBE, ttl_s=180 * 86400, now=now)   # or TokenError

A token is base64url (no padding) of `payload || mac`, where `payload` is the kind (one byte),
the issue time (epoch s, 4 bytes), the group (4 bytes, 0: none) and the message id, recipient
and URL (UTF-8, NUL-separated), and `mac` the first 16 bytes of HMAC-SHA-256 under
`bulk.secret` of a domain label and the payload. The kind is signed, so an open pixel's token is
no unsubscribe link. Expiry is `issued + ttl`, the ttl being the configuration's now (a shorter
ttl retires old links at once). Errors (`TokenError`): malformed 400, a MAC that does not verify
(tampered, another server's key, another kind) 403, expired 410.

A `mailto:` unsubscribe address must fit an SMTP local part (64 octets), so its token
(`sign_mailto`) carries only the kind, time and group; its MAC covers the recipient too, who is
the sender of the unsubscribe mail (`verify_mailto(token, sender, ...)`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import struct
from dataclasses import dataclass
from enum import Enum

from gomailpy.errors import TokenError

MAC_BYTES = 16  # 128 bits: no forging by guessing
MAX_TOKEN_CHARS = 4096  # a URL in a click token makes it long; far past this is no token of ours
_LABEL = b"gomailpy-link-v1\x00"
_HEAD = struct.Struct(">cII")  # kind, issued (epoch s), group (0: none)
MALFORMED = "This link is not valid (malformed)"
FORGED = "This link was not issued here or has been altered"
EXPIRED = "This link has expired"


class Kind(Enum):
    UNSUBSCRIBE = b"u"
    OPEN = b"o"
    CLICK = b"c"
    MAILTO = b"m"


@dataclass(frozen=True, slots=True)
class Link:
    kind: Kind
    message_id: str
    recipient: str
    group: int | None = None  # an unsubscribe group (SendGrid's asm group_id)
    url: str = ""  # a click's destination
    issued_at: float = 0.0  # set by `verify`


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(token: str) -> bytes:
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise TokenError(MALFORMED)
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise TokenError(MALFORMED) from None


def _mac(key: bytes, payload: bytes) -> bytes:
    # hmac.digest: OpenSSL's one-shot HMAC, cheaper than an hmac.new object per tracking hit.
    return hmac.digest(key, _LABEL + payload, "sha256")[:MAC_BYTES]


def _group_field(group: int | None) -> int:
    if group is not None and not 0 < group < 2**32:
        raise ValueError("an unsubscribe group is an integer from 1 to 4294967295")
    return group or 0


def sign(link: Link, key: bytes, now: float) -> str:
    """The token of `link`, issued at `now`."""
    fields = "\x00".join((link.message_id, link.recipient, link.url)).encode("utf-8")
    payload = _HEAD.pack(link.kind.value, int(now), _group_field(link.group)) + fields
    return _b64(payload + _mac(key, payload))


def _checked(raw: bytes, key: bytes, kind: Kind, extra: bytes = b"") -> bytes:
    if len(raw) < _HEAD.size + MAC_BYTES:
        raise TokenError(MALFORMED)
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(key, payload + extra)):
        raise TokenError(FORGED, 403)
    if payload[:1] != kind.value:
        raise TokenError(FORGED, 403)
    return payload


def _fresh(issued: int, ttl_s: float, now: float) -> None:
    if now > issued + ttl_s:
        raise TokenError(EXPIRED, 410)


def verify(token: str, key: bytes, kind: Kind, *, ttl_s: float, now: float) -> Link:
    """The link `token` stands for, or TokenError (see the module docstring)."""
    payload = _checked(_unb64(token), key, kind)
    _, issued, group = _HEAD.unpack(payload[: _HEAD.size])
    try:
        fields = payload[_HEAD.size :].decode("utf-8").split("\x00")
    except UnicodeDecodeError:
        raise TokenError(MALFORMED) from None  # signed by us, so not reachable: still no 500
    if len(fields) != 3:
        raise TokenError(MALFORMED)
    _fresh(issued, ttl_s, now)
    message_id, recipient, url = fields
    return Link(kind, message_id, recipient, group or None, url, float(issued))


def _mailto_extra(recipient: str) -> bytes:
    return b"\x00" + recipient.strip().lower().encode("utf-8")


def sign_mailto(recipient: str, group: int | None, key: bytes, now: float) -> str:
    """The short token of a `mailto:` unsubscribe address (see the module docstring)."""
    payload = _HEAD.pack(Kind.MAILTO.value, int(now), _group_field(group))
    return _b64(payload + _mac(key, payload + _mailto_extra(recipient)))


def verify_mailto(token: str, sender: str, key: bytes, *, ttl_s: float, now: float) -> Link:
    """The unsubscribe `sender` asks for by mailing the address of `token`, or TokenError."""
    payload = _checked(_unb64(token), key, Kind.MAILTO, _mailto_extra(sender))
    if len(payload) != _HEAD.size:
        raise TokenError(MALFORMED)
    _, issued, group = _HEAD.unpack(payload)
    _fresh(issued, ttl_s, now)
    return Link(Kind.MAILTO, "", sender.strip().lower(), group or None, "", float(issued))
