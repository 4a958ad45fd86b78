"""Typed configuration: one `Settings` tree, read from a YAML file and the environment.

Sources, highest priority first:
1. environment variables `GOMAILPY_<SECTION>__<KEY>` (e.g. `GOMAILPY_QUEUES__URLS='[q1, q2]'`,
   `GOMAILPY_PIPELINE__UNHEALTHY_THRESHOLD=3`; values are read as YAML scalars or lists);
2. the YAML file (`config/*.yaml`);
3. the defaults below, which run the whole system locally.

Secrets (`SecretStr` fields) come from the environment only: a secret written in a YAML file is
refused, so config files can be committed and shared. Every problem is reported with the file (or
environment variable) and the dotted key, e.g.
`config/pipeline.yaml: pipeline.unhealthy_threshold: must be >= 1`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from gomailpy.errors import ConfigError

ENV_PREFIX = "GOMAILPY_"
ENV_NESTING = "__"

PositiveSeconds = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]
_SHA256_HEX = re.compile("[0-9a-f]{64}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class AwsSettings(_Section):
    """How to reach AWS or an SQS/SES/S3-compatible server such as LocalStack."""

    region: str = "us-east-1"
    endpoint_url: str | None = None  # None: the real AWS endpoints
    client_timeout_s: PositiveSeconds = 30.0  # connect and read timeout of every AWS call
    access_key_id: SecretStr | None = None  # None: botocore's own chain (env, profile, role)
    secret_access_key: SecretStr | None = None
    max_pool_connections: Annotated[int, Field(ge=1)] = 64


class QueueSettings(_Section):
    """The queues emails travel on; each has a dead-letter queue named `<name><dlq_suffix>`."""

    urls: Annotated[list[str], Field(min_length=1)] = ["gomailpy-1", "gomailpy-2"]
    # A bare name (no "://") is resolved to a URL through GetQueueUrl on the configured endpoint.
    dlq_suffix: str = "-dlq"
    max_receive_count: Annotated[int, Field(ge=1, le=1000)] = 10
    visibility_timeout_s: Annotated[int, Field(ge=1, le=43200)] = 60
    wait_time_s: Annotated[int, Field(ge=0, le=20)] = 20  # long polling when a queue is empty


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: Port = 8000
    max_body_size_bytes: Annotated[int, Field(ge=1024)] = 204800
    access_log_file_path: str | None = None  # None: access log on the "gomailpy.access" logger
    cors_origins: list[str] = []
    queue_choice: Literal["least-depth", "round-robin"] = "least-depth"
    depth_refresh_s: PositiveSeconds = 2.0
    # Requests arriving together for the same queue share one SendMessageBatch (api.batcher):
    # a batch leaves after at most `batch_linger_ms` or once it holds `batch_max_entries`.
    # 0 ms (or 1 entry) turns batching off: one call per request.
    batch_linger_ms: Annotated[float, Field(ge=0, le=1000)] = 2.0
    batch_max_entries: Annotated[int, Field(ge=1, le=10)] = 10
    serve_webclient: bool = True
    shutdown_grace_s: PositiveSeconds = 10.0
    # The front door (api.auth, api.ratelimit). API keys are stored as SHA-256 hashes (64 hex
    # digits, `gomail hash-key`), never in plain: a hash is no secret, so it may sit in YAML.
    # Empty: no key is required. Environment: GOMAILPY_API__API_KEY_HASHES='[hash1, hash2]'
    # (or the hashes separated by commas).
    api_key_hashes: list[str] = []
    # Token buckets, in requests per second with a burst; 0 turns a limit off. Per API node.
    rate_limit_per_key: Annotated[float, Field(ge=0)] = 0.0
    rate_limit_per_key_burst: Annotated[int, Field(ge=1)] = 50
    rate_limit_per_address: Annotated[float, Field(ge=0)] = 0.0
    rate_limit_per_address_burst: Annotated[int, Field(ge=1)] = 50
    rate_limit_max_buckets: Annotated[int, Field(ge=1)] = 100_000  # per limit; LRU beyond
    # A header a reverse proxy sets to the client's address (e.g. X-Forwarded-For; its last
    # entry is used). None: the TCP peer. Set it only when clients can reach the API through
    # that proxy alone, or they choose their own address.
    client_address_header: str | None = None

    @field_validator("api_key_hashes", mode="before")
    @classmethod
    def _hashes_from_text(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: "hash1, hash2" or "hash1 hash2"
            return [part for part in value.replace(",", " ").split() if part]
        return value

    @field_validator("api_key_hashes")
    @classmethod
    def _hashes_are_sha256(cls, value: list[str]) -> list[str]:
        hashes = []
        for number, item in enumerate(value):
            digest = item.strip().lower()
            if not _SHA256_HEX.fullmatch(digest):
                raise ValueError(
                    f"item {number}: must be the SHA-256 hash of an API key (64 hex digits),"
                    " never the key itself; make one with `gomail hash-key`"
                )
            hashes.append(digest)
        return hashes


class PipelineSettings(_Section):
    # gomail slept up to 5 s per iteration, capping a busy node; long polling already keeps an
    # idle node from spinning, so the floor here is small.
    min_iteration_duration_s: Annotated[float, Field(ge=0)] = 0.05
    healthy_threshold: Annotated[int, Field(ge=1)] = 6
    unhealthy_threshold: Annotated[int, Field(ge=1)] = 2
    max_readers_per_queue: Annotated[int, Field(ge=1, le=1000)] = 20
    send_timeout_s: PositiveSeconds = 10.0
    max_in_flight: Annotated[int, Field(ge=1)] = 500
    retry_base_delay_s: Annotated[float, Field(ge=0)] = 2.0
    retry_max_delay_s: Annotated[float, Field(ge=0, le=43200)] = 300.0
    shutdown_grace_s: PositiveSeconds = 20.0
    admin_host: str = "127.0.0.1"
    admin_port: Port = 9100  # /metrics, /healthz, /readyz; 0 picks a free port


class _ProviderSection(_Section):
    enabled: bool = False
    weight: Annotated[float, Field(gt=0)] = 1.0
    timeout_s: PositiveSeconds = 10.0


class SesSettings(_ProviderSection):
    region: str | None = None  # None: aws.region
    endpoint_url: str | None = None  # None: aws.endpoint_url
    configuration_set: str | None = None


class SendGridSettings(_ProviderSection):
    base_url: str = "https://api.sendgrid.com"
    api_key: SecretStr | None = None
    max_connections: Annotated[int, Field(ge=1)] = 50


class SmtpSettings(_ProviderSection):
    host: str = "127.0.0.1"
    port: Port = 25
    use_tls: bool = False  # implicit TLS (port 465)
    start_tls: bool = False  # STARTTLS after connecting
    validate_certs: bool = True
    username: str | None = None
    password: SecretStr | None = None
    max_connections: Annotated[int, Field(ge=1)] = 4

    @model_validator(mode="after")
    def _tls_modes_exclusive(self) -> SmtpSettings:
        if self.use_tls and self.start_tls:
            raise ValueError("use_tls and start_tls cannot both be true")
        return self


class ProvidersSettings(_Section):
    ses: SesSettings = SesSettings()
    sendgrid: SendGridSettings = SendGridSettings()
    smtp: SmtpSettings = SmtpSettings()

    def enabled(self) -> dict[str, _ProviderSection]:
        return {
            name: section
            for name, section in (
                ("ses", self.ses),
                ("sendgrid", self.sendgrid),
                ("smtp", self.smtp),
            )
            if section.enabled
        }


class StatusSettings(_Section):
    """Delivery status and idempotency keys (GET /email/{id}, Idempotency-Key).

    `none`: off (GET /email/{id} answers 501, Idempotency-Key is refused); `memory`: one process
    only (API and pipeline in the same process, tests); `dynamodb`: shared by every API and
    pipeline node, through aiobotocore (`gomail init` creates the table with TTL on `expires_at`).
    """

    backend: Literal["none", "memory", "dynamodb"] = "none"
    table: Annotated[str, Field(min_length=3, max_length=255)] = "gomailpy-status"
    ttl_s: Annotated[int, Field(ge=60)] = 7 * 24 * 3600  # records expire this long after a write
    idempotency_window_s: Annotated[int, Field(ge=1)] = 24 * 3600
    region: str | None = None  # None: aws.region
    endpoint_url: str | None = None  # None: aws.endpoint_url (LocalStack cannot serve DynamoDB
    # offline: point this at moto's server locally)

    @property
    def enabled(self) -> bool:
        return self.backend != "none"


class ClaimCheckSettings(_Section):
    """Emails too large for a queue message: stored in S3, the queue carries a reference."""

    bucket: str | None = None  # None: off; an email over the SQS limit is answered 400
    threshold_bytes: Annotated[int, Field(ge=1024, le=1048576)] = 262144  # SQS's classic limit
    prefix: str = "emails/"
    region: str | None = None  # None: aws.region
    endpoint_url: str | None = None  # None: aws.endpoint_url

    @property
    def enabled(self) -> bool:
        return self.bucket is not None


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Settings(_Section):
    """Everything gomailpy reads. Build it with `load_settings`."""

    aws: AwsSettings = AwsSettings()
    queues: QueueSettings = QueueSettings()
    api: ApiSettings = ApiSettings()
    pipeline: PipelineSettings = PipelineSettings()
    providers: ProvidersSettings = ProvidersSettings()
    status: StatusSettings = StatusSettings()
    claim_check: ClaimCheckSettings = ClaimCheckSettings()
    logging: LoggingSettings = LoggingSettings()

    @model_validator(mode="after")
    def _timeouts_fit_visibility(self) -> Settings:
        # A send must end well before its message becomes visible again, or another node picks
        # it up while it is still being sent and the email goes out twice (gomail did this).
        if self.pipeline.send_timeout_s * 2 > self.queues.visibility_timeout_s:
            raise ValueError(
                f"pipeline.send_timeout_s: must be at most half of queues.visibility_timeout_s"
                f" ({self.pipeline.send_timeout_s:g} > {self.queues.visibility_timeout_s} / 2)"
            )
        return self


def _secret_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths: set[tuple[str, ...]] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths |= _secret_paths(annotation, (*prefix, name))
        elif "SecretStr" in str(annotation):
            paths.add((*prefix, name))
    return paths


SECRET_PATHS = _secret_paths(Settings)


def env_var_for(path: tuple[str, ...] | list[str]) -> str:
    return ENV_PREFIX + ENV_NESTING.join(part.upper() for part in path)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: {where}not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        sections = ", ".join(Settings.model_fields)
        raise ConfigError(f"{path}: the top level must be a mapping of sections ({sections})")
    return data


def _find_secrets(data: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = (*prefix, str(key))
            if path in SECRET_PATHS and value not in (None, ""):
                found.append(path)
            else:
                found.extend(_find_secrets(value, path))
    return found


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Overlay GOMAILPY_* variables on `data`; return which paths came from which variable."""
    origins: dict[tuple[str, ...], str] = {}
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or ENV_NESTING not in name:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_NESTING)]
        if tuple(path) in SECRET_PATHS:
            value: Any = raw  # secrets stay strings, whatever they look like
        else:
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = raw
        _set_path(data, path, value)
        origins[tuple(path)] = f"environment {name}"
    return origins


def _describe(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    messages: dict[str, Callable[[], str]] = {
        "greater_than_equal": lambda: f"must be >= {ctx.get('ge')}",
        "greater_than": lambda: f"must be > {ctx.get('gt')}",
        "less_than_equal": lambda: f"must be <= {ctx.get('le')}",
        "less_than": lambda: f"must be < {ctx.get('lt')}",
        "int_parsing": lambda: "must be a whole number",
        "int_type": lambda: "must be a whole number",
        "int_from_float": lambda: "must be a whole number",
        "float_parsing": lambda: "must be a number",
        "float_type": lambda: "must be a number",
        "bool_parsing": lambda: "must be true or false",
        "bool_type": lambda: "must be true or false",
        "string_type": lambda: "must be a string",
        "list_type": lambda: "must be a list",
        "model_type": lambda: "must be a mapping of keys",
        "dict_type": lambda: "must be a mapping of keys",
        "missing": lambda: "is required",
        "literal_error": lambda: f"must be one of {ctx.get('expected')}",
        "too_short": lambda: f"must have at least {ctx.get('min_length')} item(s)",
    }
    if kind in messages:
        return messages[kind]()
    message = str(error["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _known_keys(path: tuple[Any, ...]) -> list[str]:
    model: Any = Settings
    for part in path:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return []
        model = field.annotation
    return list(model.model_fields)


def _problems(exc: ValidationError, source: str, origins: dict[tuple[str, ...], str]) -> list[str]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        key = ".".join(str(part) for part in loc)
        where = origins.get(tuple(str(p) for p in loc), source)
        if not key:  # a rule across sections: its message names the keys itself
            problems.append(f"{where}: {_describe(error)}")
        elif error["type"] == "extra_forbidden":
            known = ", ".join(_known_keys(loc[:-1]))
            problems.append(f"{where}: {key}: unknown key; known keys here: {known}")
        else:
            problems.append(f"{where}: {key}: {_describe(error)}")
    return problems


def load_settings(
    path: str | Path | None = None, *, env: Mapping[str, str] | None = None
) -> Settings:
    """Read settings from `path` (None: defaults only) and `env` (default: `os.environ`).

    Raises `ConfigError` listing every problem, each naming its file or variable and key.
    """
    env = os.environ if env is None else env
    source = str(path) if path is not None else "defaults"
    data = _read_yaml(Path(path)) if path is not None else {}
    secrets_in_file = _find_secrets(data)
    if secrets_in_file:
        problems = [
            f"{source}: {'.'.join(p)}: secrets are read from the environment only;"
            f" remove it from the file and set {env_var_for(p)}"
            for p in secrets_in_file
        ]
        raise ConfigError("\n".join(problems), problems=problems)
    origins = _apply_env(data, env)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc, source, origins)
        raise ConfigError("\n".join(problems), problems=problems) from None
    missing = missing_secrets(settings)
    if missing:
        problems = [f"{source}: {message}" for message in missing]
        raise ConfigError("\n".join(problems), problems=problems)
    return settings


def missing_secrets(settings: Settings) -> list[str]:
    """Secrets that an enabled part of the configuration needs but nobody set."""
    missing = []
    sendgrid = settings.providers.sendgrid
    if sendgrid.enabled and sendgrid.api_key is None:
        path = ("providers", "sendgrid", "api_key")
        missing.append(
            f"{'.'.join(path)}: missing secret: SendGrid is enabled, so set {env_var_for(path)}"
        )
    smtp = settings.providers.smtp
    if smtp.enabled and smtp.username and smtp.password is None:
        path = ("providers", "smtp", "password")
        missing.append(
            f"{'.'.join(path)}: missing secret: smtp.username is set, so set {env_var_for(path)}"
        )
    aws = settings.aws
    if (aws.access_key_id is None) != (aws.secret_access_key is None):
        have, lack = (
            ("access_key_id", "secret_access_key")
            if aws.access_key_id
            else ("secret_access_key", "access_key_id")
        )
        missing.append(
            f"aws.{lack}: missing secret: aws.{have} is set, so set {env_var_for(('aws', lack))}"
        )
    return missing
