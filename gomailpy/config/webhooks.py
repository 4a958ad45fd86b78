"""The `webhooks:` section: where to tell the application what became of its emails.

    webhooks:
      enabled: true
      queue: gomailpy-webhooks          # dead-letter queue: <queue><queues.dlq_suffix>
      endpoints:
        - {name: app, url: "https://app.example.com/hooks/email", events: [bounced, complained]}
        - {name: crm, url: "https://crm.example.com/in", batch: true}   # events: [] = all

Secrets come from the environment only, one per endpoint, as YAML/JSON (`gomail webhooks add`
makes one): `GOMAILPY_WEBHOOKS__SECRETS='{"app": "whsec_...", "crm": "whsec_..."}'`. To rotate,
move the old one to `GOMAILPY_WEBHOOKS__PREVIOUS_SECRETS='{"app": {"secret": "whsec_old",
"until": "2026-12-01T00:00:00Z"}}'`: both signatures are sent until then.

Targets are checked here (the URL, its host normalised, a literal address: anything not
globally routable, cloud metadata) and again at every delivery, after DNS
(`gomailpy.webhooks.targets`). Only loopback can be allowed, for local testing
(`allow_loopback_targets`); private, link-local and metadata targets never are. The checks
live in gomailpy.config.webhook_targets and a secret is read by `secret_key` here, so that the
settings tree imports no feature package.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from gomailpy.config.webhook_targets import static_problem
from gomailpy.events import EventType

SECRETS_VARIABLE = "GOMAILPY_WEBHOOKS__SECRETS"
PREVIOUS_VARIABLE = "GOMAILPY_WEBHOOKS__PREVIOUS_SECRETS"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
SECRET_PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret; ValueError (without the value) if it is not one."""
    text = secret.strip()
    if not text.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX!r} (make one with `gomail webhooks add`)")
    try:
        encoded = text[len(SECRET_PREFIX) :].rstrip("=")
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"not base64 after {SECRET_PREFIX!r}") from None
    if len(key) < 16:
        raise ValueError("too short: at least 16 bytes of key")
    return key


class WebhookEndpointSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    name: str  # letters, digits, - and _: the key of its secret, metrics and state
    url: str
    events: list[str] = []  # event types it wants (gomailpy.events.EventType); [] = all
    batch: bool = False  # a JSON array of up to batch_max_events per request
    batch_max_events: Annotated[int, Field(ge=1, le=500)] = 100
    concurrency: Annotated[int, Field(ge=1, le=100)] = 4  # requests at once, per node

    @field_validator("name")
    @classmethod
    def _name_is_a_key(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("letters, digits, '-' and '_' only (1 to 64)")
        return value

    @field_validator("events")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        known = {t.value for t in EventType} - {EventType.UNKNOWN.value}
        wrong = [t for t in value if t not in known]
        if wrong:
            raise ValueError(f"unknown event type(s) {wrong}; known: {', '.join(sorted(known))}")
        return value

    def wants(self, kind: EventType) -> bool:
        """Reports of a kind this version does not know (`unknown`) are kept, never offered."""
        if kind is EventType.UNKNOWN:
            return False
        return not self.events or kind.value in self.events


class WebhooksSettings(BaseModel):
    """Signed webhooks to the application (gomailpy.webhooks)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = False
    queue: str = "gomailpy-webhooks"  # a name (resolved like queues.urls) or a URL
    # Loopback targets (127.0.0.0/8, ::1, localhost) are refused unless this is true: for local
    # testing only (`gomail up` sets it for its local receiver, the tests for theirs).
    allow_loopback_targets: bool = False
    endpoints: list[WebhookEndpointSettings] = []
    secrets: SecretStr | None = None  # {endpoint name: "whsec_..."} as YAML/JSON
    previous_secrets: SecretStr | None = None  # {name: {"secret": "whsec_...", "until": ISO}}
    max_age_s: Annotated[int, Field(ge=60, le=14 * 24 * 3600)] = 24 * 3600  # then: the DLQ
    attempt_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    retry_base_delay_s: Annotated[float, Field(gt=0, le=3600)] = 5.0  # doubles per attempt
    max_response_bytes: Annotated[int, Field(ge=0, le=1_048_576)] = 65536  # of an answer read
    consumers: Annotated[int, Field(ge=1, le=50)] = 2  # receives at once, per node

    @model_validator(mode="before")
    @classmethod
    def _no_private_targets(cls, data: Any) -> Any:
        """The former `allow_private_targets`: `false` (what it always meant) is dropped; `true`
        is refused, since nothing may allow private targets any more."""
        if not isinstance(data, dict) or "allow_private_targets" not in data:
            return data
        data = dict(data)
        former = str(data.pop("allow_private_targets")).strip().lower()
        if former not in ("false", "0", "no", "off"):
            raise ValueError(
                "allow_private_targets is gone: private, link-local and cloud metadata targets"
                " are always refused; for a receiver on this machine (local testing only) set"
                " allow_loopback_targets: true"
            )
        return data

    @model_validator(mode="after")
    def _endpoints_usable(self) -> WebhooksSettings:
        problems = []
        names: set[str] = set()
        for number, endpoint in enumerate(self.endpoints):
            where = f"endpoints.{number} ({endpoint.name})"
            if endpoint.name in names:
                problems.append(f"{where}: the name is used twice")
            names.add(endpoint.name)
            problem = static_problem(endpoint.url, allow_loopback=self.allow_loopback_targets)
            if problem:
                problems.append(f"{where}.url: {problem}")
        try:
            secrets = self.secret_map()
            previous = self.previous_map()
        except ValueError as exc:
            problems.append(str(exc))
            secrets, previous = {}, {}
        for name in sorted(set(secrets) - names):
            problems.append(f"secrets: {name!r} is not the name of an endpoint")
        for name in sorted(set(previous) - names):
            problems.append(f"previous_secrets: {name!r} is not the name of an endpoint")
        if self.enabled:
            problems += [
                f"{f'endpoints.{n} ({e.name})'}: missing secret: set {SECRETS_VARIABLE} with one"
                f" for {e.name!r} (`gomail webhooks add` makes one)"
                for n, e in enumerate(self.endpoints)
                if e.name not in secrets
            ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def secret_map(self) -> dict[str, bytes]:
        """Each endpoint's signing key (decoded). ValueError names what is wrong, never a value."""
        return {name: _key("secrets", name, value) for name, value in _mapping(self.secrets)}

    def previous_map(self) -> dict[str, tuple[bytes, float]]:
        """Each rotated endpoint's previous key and until when (epoch s) it still signs."""
        found = {}
        for name, value in _mapping(self.previous_secrets, "previous_secrets"):
            if not isinstance(value, dict) or "secret" not in value or "until" not in value:
                raise ValueError(
                    f'previous_secrets: {name}: must be {{"secret": "whsec_...",'
                    f' "until": "<ISO time>"}} ({PREVIOUS_VARIABLE})'
                )
            until = value["until"]
            try:
                when = until if isinstance(until, datetime) else datetime.fromisoformat(str(until))
            except ValueError:
                raise ValueError(f"previous_secrets: {name}: until: not an ISO time") from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            found[name] = (_key("previous_secrets", name, value["secret"]), when.timestamp())
        return found

    def endpoint(self, name: str) -> WebhookEndpointSettings | None:
        return next((e for e in self.endpoints if e.name == name), None)


def _mapping(secret: SecretStr | None, key: str = "secrets") -> list[tuple[str, Any]]:
    if secret is None or not secret.get_secret_value().strip():
        return []
    try:
        data = yaml.safe_load(secret.get_secret_value())
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        raise ValueError(f"{key}: must be a mapping {{endpoint name: secret}} as YAML or JSON")
    return [(str(name), value) for name, value in data.items()]


def _key(key: str, name: str, value: Any) -> bytes:
    try:
        return secret_key(str(value))
    except ValueError as exc:
        raise ValueError(f"{key}: {name}: {exc}") from None
