"""Optional API keys: who may use the email endpoints.

Keys are configured as SHA-256 hashes (`api.api_key_hashes`), never in plain, so a config file or
an environment listing gives nobody a key. A request proves it holds one by sending it, as
`Authorization: Bearer <key>` or `X-Api-Key: <key>`; the API hashes what it got and compares that
with every configured hash using `hmac.compare_digest`, all of them every time, so neither timing
nor which hash matched tells a caller anything about the keys.

Plain SHA-256 (no salt, no slow KDF) is right for keys made by `new_key`: 256 random bits
cannot be guessed from their hash. It would not be right for passwords people choose, which is
why keys are generated, not picked.

With no hash configured nothing is required. The guarded routes are those under `/email/`
(sending, and any status lookup beside it); /healthz, /readyz, /metrics, /openapi.json and the
send form stay open, as does the CORS preflight (browsers send it without credentials).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from api.responses import error_response

GUARDED_PREFIX = ("/email/", "/suppressions", "/admin/")  # emails, the list, the controls
GUARDED_PATHS = frozenset({"/events"})  # the event feed (not /events/sendgrid: signed)
# Routes that check the key themselves (api.templates.check_key), not rate-limited: documented
# with the key schemes and 401 all the same.
SELF_GUARDED_PREFIX = ("/templates",)
# The accepted key's id on the request (first 12 hex digits of its hash), for handlers and logs.
API_KEY_ID = web.RequestKey("api_key_id", str)
KEY_HEADER = "X-Api-Key"
REALM = "gomailpy"
KEY_BYTES = 32  # new_key's randomness: 256 bits

MISSING = "An API key is required: send 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'"
INVALID = "The API key is not valid"
BAD_SCHEME = (
    "The Authorization header must be 'Bearer <key>' (or send the key as 'X-Api-Key: <key>')"
)


def hash_key(key: str) -> str:
    """The SHA-256 of `key` (UTF-8, surrounding whitespace removed) as 64 lowercase hex digits:
    what goes in `api.api_key_hashes`."""
    return hashlib.sha256(key.strip().encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random API key (43 URL-safe characters)."""
    return secrets.token_urlsafe(KEY_BYTES)


def hash_key_command(key: str | None) -> str:
    """What `gomail hash-key` prints: for a given key its hash; for none, a new key and its hash.

    The key should reach the command on standard input, not argv (shell history, `ps`).
    """
    if key is None or not key.strip():
        made = new_key()
        return (
            f"key:  {made}\n"
            f"hash: {hash_key(made)}\n"
            "Give the key to the client (it is shown only now) and put the hash in"
            " api.api_key_hashes."
        )
    return hash_key(key)


@dataclass(frozen=True)
class KeyCheck:
    """What a request's credentials came to: `key_id` when accepted, else the 401's message."""

    key_id: str | None
    problem: str | None = None


class KeyRing:
    """The configured key hashes, and the constant-time check of a presented key against them."""

    def __init__(self, hashes: Iterable[str]) -> None:
        self._hashes = tuple(bytes.fromhex(h) for h in hashes)

    @property
    def required(self) -> bool:
        return bool(self._hashes)

    def match(self, key: str) -> str | None:
        """The id of the key (the first 12 hex digits of its hash, fit for logs and rate-limit
        buckets) if it is configured, else None. Compares with every hash whatever matches."""
        digest = hashlib.sha256(key.strip().encode("utf-8")).digest()
        found: bytes | None = None
        for candidate in self._hashes:
            if hmac.compare_digest(digest, candidate) and found is None:
                found = candidate
        return found.hex()[:12] if found is not None else None

    def check(self, headers: Mapping[str, str]) -> KeyCheck:
        key = presented_key(headers)
        if key is None:
            scheme = headers.get("Authorization", "").strip()
            return KeyCheck(None, BAD_SCHEME if scheme else MISSING)
        key_id = self.match(key)
        return KeyCheck(key_id) if key_id is not None else KeyCheck(None, INVALID)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request sent: `Authorization: Bearer <key>`, else `X-Api-Key`; None if neither
    (or an Authorization header of another scheme, with no X-Api-Key)."""
    authorization = headers.get("Authorization", "")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    key = headers.get(KEY_HEADER, "").strip()
    return key or None


def is_guarded(request: web.Request) -> bool:
    """Does this request need a key (when keys are configured)? Only requests that reach an
    email handler: a preflight, a 404 or a 405 is answered as without keys."""
    path = request.path
    if request.method == "OPTIONS" or not (
        path.startswith(GUARDED_PREFIX) or path in GUARDED_PATHS
    ):
        return False
    return request.match_info.http_exception is None


def unauthorized(problem: str) -> web.Response:
    response = error_response(401, problem)
    challenge = f'Bearer realm="{REALM}"'
    if problem == INVALID:
        challenge += ', error="invalid_token"'
    response.headers["WWW-Authenticate"] = challenge
    return response


def document_security(document: dict[str, Any], *, keys: bool, limited: bool) -> dict[str, Any]:
    """Add to the OpenAPI document what the front door answers: the key schemes and 401 when
    keys are required, 429 when a rate limit is on, on every operation under /email/."""
    if not keys and not limited:
        return document
    if keys:
        document["components"]["securitySchemes"] = {
            "bearerKey": {"type": "http", "scheme": "bearer", "description": "An API key"},
            "headerKey": {"type": "apiKey", "in": "header", "name": KEY_HEADER},
        }
    errors = {"$ref": "#/components/schemas/Errors"}
    for path, operations in document["paths"].items():
        front_door = path.startswith(GUARDED_PREFIX) or path in GUARDED_PATHS
        if not (front_door or path.startswith(SELF_GUARDED_PREFIX)):
            continue
        for method, operation in operations.items():
            if method == "options":
                continue
            responses = operation["responses"]
            if keys:
                operation["security"] = [{"bearerKey": []}, {"headerKey": []}]
                responses["401"] = {
                    "description": "No API key, or not a valid one (see WWW-Authenticate)",
                    "content": {"application/json": {"schema": errors}},
                }
            if limited and front_door:
                responses["429"] = {
                    "description": "Rate limit reached; Retry-After says when to try again",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": errors}},
                }
    return document
