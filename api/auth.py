"""Optional API keys: who may use the email endpoints.

Keys are configured as SHA-256 hashes (`api.api_keys`, with scopes; `api.api_key_hashes`), never
in plain, so a config file or an environment listing gives nobody a key. A request proves it
holds one by sending it, as `Authorization: Bearer <key>` or `X-Api-Key: <key>`; the API hashes
what it got and compares that with every configured hash using `hmac.compare_digest`, all of them
every time, so neither timing nor which hash matched tells a caller anything about the keys.

Plain SHA-256 (no salt, no slow KDF) is right for keys made by `new_key`: 256 random bits
cannot be guessed from their hash. It would not be right for passwords people choose, which is
why keys are generated, not picked.

With no hash configured nothing is required. The guarded routes are those under `/email/`
(sending, and any status lookup beside it), /suppressions, /admin/ and /events (the templates
and /v3/mail/send check for themselves); /healthz, /readyz, /metrics, /openapi.json and the
send form stay open, as does the CORS preflight (browsers send it without credentials).

Each key has scopes (gomailpy.config.settings.SCOPES, SendGrid-style): `required_scope` says which
one a guarded route needs, and a key without it is answered 403. A key configured without scopes
(every key of `api.api_key_hashes`) has them all, and `log_unscoped_keys` says so at startup.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from api.responses import error_response
from gomailpy.config.settings import (
    ADMIN,
    EVENTS_READ,
    MAIL_SEND,
    SCOPES,
    SUPPRESSIONS,
    TEMPLATES,
    ApiKeySettings,
    ApiSettings,
)

logger = logging.getLogger(__name__)

GUARDED_PREFIX = ("/email/", "/suppressions", "/admin/", "/asm/")  # + unsubscribe groups
GUARDED_PATHS = frozenset({"/events"})  # the event feed (not /events/sendgrid: signed)
# Routes that check the key themselves (api.views.templates.check_key), not rate-limited: documented
# with the key schemes and 401 all the same.
SELF_GUARDED_PREFIX = ("/templates",)
# The accepted key's id on the request (first 12 hex digits of its hash), for handlers and logs.
API_KEY_ID = web.RequestKey("api_key_id", str)
KEY_HEADER = "X-Api-Key"
REALM = "gomailpy"
KEY_BYTES = 32  # new_key's randomness: 256 bits

# The scope of each guarded route, by its pattern (`resource.canonical`); then by prefix.
ROUTE_SCOPES = {
    "/email/send": MAIL_SEND,
    "/email/{messageId}/schedule": MAIL_SEND,  # cancelling a scheduled send
    "/v3/mail/send": MAIL_SEND,
    "/email/{messageId}": EVENTS_READ,  # the status, its timeline and the recipients' events
    "/events": EVENTS_READ,
}
PREFIX_SCOPES = (
    ("/templates", TEMPLATES),
    ("/suppressions", SUPPRESSIONS),
    ("/asm/", SUPPRESSIONS),  # unsubscribe groups (api.views.bulk)
    ("/admin/", ADMIN),
)
ALL_SCOPES = frozenset(SCOPES)

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


def hash_key_command(key: str | None, scopes: Iterable[str] = ()) -> str:
    """What `gomail hash-key` prints: for a given key its hash; for none, a new key and its hash.
    With `scopes`, the configuration that gives the key those scopes (and no other).

    The key should reach the command on standard input, not argv (shell history, `ps`).
    """
    wanted = sorted(set(scopes), key=SCOPES.index)
    if key is not None and key.strip():
        return config_snippet(hash_key(key), wanted) if wanted else hash_key(key)
    made = new_key()
    digest = hash_key(made)
    lines = [f"key:  {made}", f"hash: {digest}"]
    if not wanted:
        lines.append(
            "Give the key to the client (it is shown only now) and put the hash in"
            " api.api_key_hashes (every scope), or under api.api_keys with --scope to narrow it."
        )
    else:
        lines.append("Give the key to the client (it is shown only now) and configure it:")
        lines.append(config_snippet(digest, wanted))
    return "\n".join(lines)


def config_snippet(digest: str, scopes: list[str]) -> str:
    """The YAML that configures the key of hash `digest` with `scopes`."""
    return f'api:\n  api_keys:\n    - hash: "{digest}"\n      scopes: [{", ".join(scopes)}]'


def required_scope(pattern: str) -> str:
    """The scope a guarded route needs, by its pattern (`resource.canonical`). A route listed
    nowhere needs `admin`: a new one stays closed to narrower keys until it is listed."""
    if pattern in ROUTE_SCOPES:
        return ROUTE_SCOPES[pattern]
    for prefix, scope in PREFIX_SCOPES:
        if pattern.startswith(prefix):
            return scope
    return ADMIN


def request_scope(request: web.Request) -> str:
    """The scope `request`'s route needs (`required_scope`)."""
    resource = request.match_info.route.resource
    return required_scope(resource.canonical if resource is not None else request.path)


def forbidden_message(scope: str) -> str:
    return f"This API key may not do this: it needs the scope {scope!r} (api.api_keys)"


def log_unscoped_keys(api: ApiSettings) -> None:
    """One line per configured key without scopes: it may do everything, as every key did."""
    for key in api.keys:
        if key.scopes is None:
            logger.info(
                "API key %s has no scopes: it has every one (%s). To narrow it, list it under"
                " api.api_keys with its scopes (`gomail hash-key --scope mail.send ...`)",
                key.key_id,
                ", ".join(SCOPES),
            )


@dataclass(frozen=True)
class KeyCheck:
    """What a request's credentials came to: `key_id` when accepted; else the 401's message,
    or with `key_id` (a valid key without the scope) the 403's."""

    key_id: str | None
    problem: str | None = None

    def refusal(self) -> web.Response | None:
        """The answer refusing the request (401 or 403), or None: accepted."""
        if self.problem is None:
            return None
        if self.key_id is None:
            return unauthorized(self.problem)
        return error_response(403, self.problem)


class KeyRing:
    """The configured keys, and the constant-time check of a presented key against them.

    `keys`: settings of keys (gomailpy.config.settings.ApiKeySettings), or bare hashes (every
    scope).
    """

    def __init__(self, keys: Iterable[str | ApiKeySettings]) -> None:
        entries = [k if isinstance(k, ApiKeySettings) else ApiKeySettings(hash=k) for k in keys]
        self._hashes = tuple(bytes.fromhex(k.hash) for k in entries)
        self._scopes = tuple(
            ALL_SCOPES if k.scopes is None else frozenset(k.scopes) for k in entries
        )

    @classmethod
    def from_settings(cls, api: ApiSettings) -> KeyRing:
        return cls(api.keys)

    @property
    def required(self) -> bool:
        return bool(self._hashes)

    def _find(self, key: str) -> int | None:
        """The index of `key` among the configured ones. Compares with every hash whatever
        matches."""
        digest = hashlib.sha256(key.strip().encode("utf-8")).digest()
        found: int | None = None
        for index, candidate in enumerate(self._hashes):
            if hmac.compare_digest(digest, candidate) and found is None:
                found = index
        return found

    def match(self, key: str) -> str | None:
        """The id of the key (the first 12 hex digits of its hash, fit for logs and rate-limit
        buckets) if it is configured, else None."""
        found = self._find(key)
        return self._hashes[found].hex()[:12] if found is not None else None

    def check(self, headers: Mapping[str, str], scope: str | None = None) -> KeyCheck:
        """The key `headers` present, checked; with `scope`, also that the key has it."""
        key = presented_key(headers)
        if key is None:
            scheme = headers.get("Authorization", "").strip()
            return KeyCheck(None, BAD_SCHEME if scheme else MISSING)
        found = self._find(key)
        if found is None:
            return KeyCheck(None, INVALID)
        key_id = self._hashes[found].hex()[:12]
        if scope is not None and scope not in self._scopes[found]:
            return KeyCheck(key_id, forbidden_message(scope))
        return KeyCheck(key_id)


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
    keys are required (with 403 and `x-scope`, the scope each operation needs), 429 when a rate
    limit is on, on every operation under /email/."""
    if not keys and not limited:
        return document
    # A copy: the paths of the route modules are module-level dicts, shared by every app.
    document = copy.deepcopy(document)
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
                scope = required_scope(path)
                operation["security"] = [{"bearerKey": []}, {"headerKey": []}]
                operation["x-scope"] = scope
                responses["401"] = {
                    "description": "No API key, or not a valid one (see WWW-Authenticate)",
                    "content": {"application/json": {"schema": errors}},
                }
                forbidden = f"the API key lacks the scope {scope!r}"
                if "403" in responses:  # another reason already (an origin, no keys)
                    forbidden = f"{responses['403']['description']}; or {forbidden}"
                responses["403"] = {
                    "description": forbidden[0].upper() + forbidden[1:],
                    "content": {"application/json": {"schema": errors}},
                }
            if limited and front_door:
                responses["429"] = {
                    "description": "Rate limit reached; Retry-After says when to try again",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": errors}},
                }
    return document
