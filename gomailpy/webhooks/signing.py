"""Standard Webhooks signatures (https://www.standardwebhooks.com/): what a receiver checks.

    webhook-id: msg_<stable id>          the same on every retry: receivers dedupe by it
    webhook-timestamp: <epoch seconds>   the attempt's time: receivers refuse old ones (replays)
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">  [space] v1,<...>

The secret is `whsec_` + base64 of random bytes; the HMAC key is those bytes
(`gomailpy.config.webhooks.secret_key` decodes it). During a rotation
the header carries one signature per valid secret, so receivers holding either accept it. The
`standardwebhooks` package (what receivers use) verifies exactly this; the tests check it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from gomailpy.config.webhooks import SECRET_PREFIX

SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh endpoint secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(
    keys: Sequence[bytes], webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three headers of one attempt, signed with every key in `keys` (current first)."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(k, webhook_id, timestamp, body) for k in keys),
    }
