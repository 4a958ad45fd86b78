"""Typed configuration: one `Settings` tree, read from a YAML file and the environment.

Sources, highest priority first, as pydantic-settings merges them (`settings_customise_sources`):
1. environment variables `GOMAILPY_<SECTION>__<KEY>` (e.g. `GOMAILPY_QUEUES__URLS='[q1, q2]'`,
   `GOMAILPY_PIPELINE__UNHEALTHY_THRESHOLD=3`), through pydantic-settings' environment source
   with `env_nested_delimiter="__"`: lists are read as YAML (JSON is YAML too), other values as
   text; `null` or an empty value unsets a key;
2. the YAML file (`config/*.yaml`), through pydantic-settings' YamlConfigSettingsSource;
3. the defaults below, which run the whole system locally.

Secrets (`SecretStr` fields) come from the environment only: a secret written in a YAML file is
refused, so config files can be committed and shared. Every problem is reported with the file (or
environment variable) and the dotted key, e.g.
`config/pipeline.yaml: pipeline.unhealthy_threshold: must be >= 1` (see
`gomailpy.config.sources`).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from gomailpy.config.base import Port, PositiveSeconds
from gomailpy.config.base import Section as _Section
from gomailpy.config.bulk import BulkSettings
from gomailpy.config.feedback import EventsSettings, ReputationSettings, SuppressionSettings
from gomailpy.config.operator import OperatorSettings
from gomailpy.config.providers import (
    KIND_MODELS,
    SECRET_KEYS,
    ProvidersSettings,
    env_name,
    instance_names,
    is_legacy,
)
from gomailpy.config.regions import RegionSettings
from gomailpy.config.sources import (
    ENV_NULLS,
    Environment,
    env_origins,
    find_secrets,
    problems,
    read_yaml,
    secret_paths,
)
from gomailpy.config.steering import SteeringSettings
from gomailpy.config.webhooks import WebhooksSettings
from gomailpy.email.dkim import key_problems
from gomailpy.errors import ConfigError

ENV_PREFIX = "GOMAILPY_"
ENV_NESTING = "__"

_SHA256_HEX = re.compile("[0-9a-f]{64}")


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


# What an API key may do, SendGrid-style (api.auth maps every guarded route to one): send mail
# (POST /email/send, /v3/mail/send, cancelling a schedule), the templates, the suppression list,
# read events (GET /email/{id}, GET /events), and the operator's endpoints (/admin/).
MAIL_SEND, TEMPLATES, SUPPRESSIONS, EVENTS_READ, ADMIN = SCOPES = (
    "mail.send",
    "templates",
    "suppressions",
    "events.read",
    "admin",
)


def _sha256_hex(value: str) -> str:
    digest = value.strip().lower()
    if not _SHA256_HEX.fullmatch(digest):
        # Never echoes the value: it may be a key pasted by mistake.
        raise ValueError(
            "must be the SHA-256 hash of an API key (64 hex digits), never the key itself;"
            " make one with `gomail hash-key`"
        )
    return digest


class ApiKeySettings(_Section):
    """One API key (`api.api_keys`): the SHA-256 of the key and what it may do.

    `scopes` left out (None): every scope, as a key of `api.api_key_hashes` has.
    """

    hash: str
    scopes: list[str] | None = None

    @field_validator("hash")
    @classmethod
    def _hash_is_sha256(cls, value: str) -> str:
        return _sha256_hex(value)

    @model_validator(mode="after")
    def _scopes_are_known(self) -> ApiKeySettings:
        if self.scopes is None:
            return self
        known = ", ".join(SCOPES)
        unknown = [scope for scope in self.scopes if scope not in SCOPES]
        if unknown:
            raise ValueError(
                f"key {self.key_id}: unknown scope {', '.join(map(repr, unknown))};"
                f" the scopes are {known}"
            )
        if not self.scopes:
            raise ValueError(
                f"key {self.key_id}: no scope: list some ({known}), or leave `scopes` out for"
                " every one"
            )
        self.scopes = sorted(set(self.scopes), key=SCOPES.index)
        return self

    @property
    def key_id(self) -> str:
        """What logs and the API call the key: the first 12 hex digits of its hash."""
        return self.hash[:12]


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: Port = 8000
    max_body_size_bytes: Annotated[int, Field(ge=1024)] = 204800
    access_log_file_path: str | None = None  # None: access log on the "gomailpy.access" logger
    cors_origins: list[str] = []
    queue_choice: Literal["least-depth", "round-robin"] = "least-depth"
    depth_refresh_s: PositiveSeconds = 2.0
    # The longest a request waits for the queues, every failover included (api.enqueue.gateway);
    # also bounds each probe of a queue whose circuit is open. Past it the answer is 503.
    enqueue_deadline_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    # Requests for the same queue share SendMessageBatch calls (api.enqueue.batcher): whenever
    # one of the queue's `batch_max_calls` call slots is free, a call leaves at once with what is
    # waiting, up to `batch_max_entries`; what arrives while every slot is busy fills the next
    # call. `batch_linger_ms` > 0 makes a free slot wait that long for more entries first (fuller
    # calls at light load, for that much latency). 1 entry turns batching off. A full call does
    # not wait for those slots: it leaves at once in one of `batch_full_calls` further ones, so
    # under heavy load the line moves as fast as the queue server answers.
    batch_linger_ms: Annotated[float, Field(ge=0, le=1000)] = 0.0
    batch_max_entries: Annotated[int, Field(ge=1, le=10)] = 10
    batch_max_calls: Annotated[int, Field(ge=1, le=64)] = 2  # per queue, per API process
    batch_full_calls: Annotated[int, Field(ge=0, le=64)] = 6  # per queue, per API process
    serve_webclient: bool = True
    shutdown_grace_s: PositiveSeconds = 10.0
    # The front door (api.auth, api.ratelimit). API keys are stored as SHA-256 hashes (64 hex
    # digits, `gomail hash-key`), never in plain: a hash is no secret, so it may sit in YAML.
    # Empty: no key is required. Environment: GOMAILPY_API__API_KEY_HASHES='[hash1, hash2]'
    # (or the hashes separated by commas).
    api_key_hashes: list[str] = []
    # Keys with scopes: [{hash: <64 hex digits>, scopes: [mail.send, events.read]}]; a key of
    # `api_key_hashes` (or one here without `scopes`) may do everything (SCOPES).
    # Environment: GOMAILPY_API__API_KEYS='[{hash: ..., scopes: [mail.send]}]'
    api_keys: list[ApiKeySettings] = []
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
            try:
                hashes.append(_sha256_hex(item))
            except ValueError as exc:
                raise ValueError(f"item {number}: {exc}") from None
        return hashes

    @model_validator(mode="after")
    def _each_key_once(self) -> ApiSettings:
        seen: set[str] = set()
        for key in self.keys:
            if key.hash in seen:
                raise ValueError(
                    f"key {key.key_id} is configured twice (api.api_keys, api.api_key_hashes):"
                    " give each key one entry, with its scopes"
                )
            seen.add(key.hash)
        return self

    @property
    def keys(self) -> list[ApiKeySettings]:
        """Every configured key: those of `api_keys`, then those of `api_key_hashes` (every
        scope). Empty: no key is required."""
        return [*self.api_keys, *(ApiKeySettings(hash=h) for h in self.api_key_hashes)]


class PipelineSettings(_Section):
    # gomail slept up to 5 s per iteration, capping a busy node; long polling already keeps an
    # idle node from spinning, so the floor here is small.
    min_iteration_duration_s: Annotated[float, Field(ge=0)] = 0.05
    healthy_threshold: Annotated[int, Field(ge=1)] = 6
    unhealthy_threshold: Annotated[int, Field(ge=1)] = 2
    max_readers_per_queue: Annotated[int, Field(ge=1, le=1000)] = 20
    send_timeout_s: PositiveSeconds = 10.0
    # The bound on the window pipeline.sending.inflight sizes by Little's law (memory), not its
    # size.
    max_in_flight: Annotated[int, Field(ge=1)] = 2000
    retry_base_delay_s: Annotated[float, Field(ge=0)] = 2.0
    retry_max_delay_s: Annotated[float, Field(ge=0, le=43200)] = 300.0
    shutdown_grace_s: PositiveSeconds = 20.0
    # How long a node holds an email another node said it was sending (an open intent, status
    # on), counted from that node's lease end, before sending it itself, in doubt; None: one
    # queues.visibility_timeout_s. Longer than the stalls to ride out (GC, VM pauses).
    in_doubt_grace_s: Annotated[float, Field(ge=0)] | None = None
    admin_host: str = "127.0.0.1"
    admin_port: Port = 9100  # /metrics, /healthz, /readyz; 0 picks a free port


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
    # The MAC key of message ids (gomailpy.store.deliveries.ids), the same on every API node; None:
    # derived from `table` (ids then catch typos, not forgeries).
    id_key: SecretStr | None = None

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


class Settings(BaseSettings):
    """Everything gomailpy reads. Build it with `load_settings`.

    Built from a mapping (`Settings.model_validate(data)`, or `Settings(**data)`), it is plain
    data and reads nothing else: the environment and the file are sources only inside
    `load_settings`, which checks them first and can then say which file or variable a bad value
    came from.
    """

    model_config = SettingsConfigDict(
        extra="forbid",
        validate_default=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTING,
    )

    aws: AwsSettings = AwsSettings()
    queues: QueueSettings = QueueSettings()
    api: ApiSettings = ApiSettings()
    pipeline: PipelineSettings = PipelineSettings()
    providers: ProvidersSettings = ProvidersSettings()
    status: StatusSettings = StatusSettings()
    claim_check: ClaimCheckSettings = ClaimCheckSettings()
    events: EventsSettings = EventsSettings()
    suppression: SuppressionSettings = SuppressionSettings()
    reputation: ReputationSettings = ReputationSettings()  # pipeline.sending.reputation
    webhooks: WebhooksSettings = WebhooksSettings()  # gomailpy.config.webhooks
    steering: SteeringSettings = SteeringSettings()  # controls, rates: gomailpy.config.steering
    regions: RegionSettings = RegionSettings()  # regional queues: gomailpy.config.regions
    operator: OperatorSettings = OperatorSettings()  # the operator page: gomailpy.config.operator
    bulk: BulkSettings = BulkSettings()  # unsubscribe links, tracking: gomailpy.bulk
    logging: LoggingSettings = LoggingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        loading = _LOADING.get()
        if loading is None:  # built from data: nothing else is read
            return (init_settings,)
        env, path = loading
        exact = {env_var_for(p) for p in SECRET_PATHS}  # secrets: their exact text, even "null"
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            Environment(settings_cls, env, exact=exact),
        ]
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

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


SECRET_PATHS = secret_paths(Settings)
# What `load_settings` is reading (the environment, the file) while it builds a Settings; unset,
# Settings reads nothing but what it is given.
_LOADING: ContextVar[tuple[Mapping[str, str], Path | None] | None] = ContextVar(
    "gomailpy_settings_loading", default=None
)


def env_var_for(path: tuple[str, ...] | list[str]) -> str:
    return ENV_PREFIX + ENV_NESTING.join(part.upper() for part in path)


def load_settings(
    path: str | Path | None = None, *, env: Mapping[str, str] | None = None
) -> Settings:
    """Read settings from `path` (None: defaults only) and `env` (default: `os.environ`).

    Raises `ConfigError` listing every problem, each naming its file or variable and key (and,
    under `providers`, the instance: `providers[1] (ses-eu).region`).
    """
    env = os.environ if env is None else env
    source = str(path) if path is not None else "defaults"
    data = read_yaml(Path(path), Settings.model_fields) if path is not None else {}
    secrets_in_file = [
        (".".join(p), env_var_for(p)) for p in find_secrets(data, SECRET_PATHS)
    ] + provider_secrets_in(data.get("providers"))
    if secrets_in_file:
        refused = [
            f"{source}: {where}: secrets are read from the environment only;"
            f" remove it from the file and set {variable}"
            for where, variable in secrets_in_file
        ]
        raise ConfigError("\n".join(refused), problems=refused)
    # Provider instances are a list: their variables name the instance (_provider_env), not an
    # index, so pydantic-settings never sees them.
    provider_prefix = env_var_for(("providers",))
    general = {k: v for k, v in env.items() if not k.upper().startswith(provider_prefix)}
    origins, unknown = env_origins(Settings, general)
    if unknown:
        raise ConfigError("\n".join(unknown), problems=unknown)
    yaml_file = Path(path) if path is not None and data else None
    try:
        data = _provider_env(data, env, origins)
    except ValueError as exc:
        raise ConfigError(str(exc), problems=[str(exc)]) from None
    # The instances, with their variables laid over them, are given to Settings: the highest of
    # its sources; the file and the other variables are pydantic-settings' own sources.
    given = {"providers": data["providers"]} if "providers" in data else {}
    loading = _LOADING.set((general, yaml_file))
    try:
        settings = Settings(**given)  # the sources: settings_customise_sources
    except ValidationError as exc:
        names = {"providers": instance_names(data.get("providers"))}
        found = problems(exc, Settings, source, origins, names=names, kinds=KIND_MODELS)
        raise ConfigError("\n".join(found), problems=found) from None
    finally:
        _LOADING.reset(loading)
    missing = [f"{source}: {message}" for message in missing_secrets(settings)]
    if missing:
        raise ConfigError("\n".join(missing), problems=missing)
    return settings


def provider_secrets_in(providers: Any) -> list[tuple[str, str]]:
    """(key, variable) of each secret a file's `providers:` gives a value."""
    found = []
    if is_legacy(providers):
        entries = [(f"providers.{n}", n, e) for n, e in providers.items()]
    elif isinstance(providers, list):
        entries = [
            (f"providers[{i}]", str(e.get("name", i)), e)
            for i, e in enumerate(providers)
            if isinstance(e, dict)
        ]
    else:
        return []
    for where, name, entry in entries:
        if not isinstance(entry, dict):
            continue
        for key in sorted(SECRET_KEYS & set(entry)):
            if entry[key] not in (None, ""):
                found.append((f"{where}.{key}", provider_var(name, key)))
    return found


def provider_var(instance: str, key: str) -> str:
    """The variable of one instance's key: GOMAILPY_PROVIDERS__SES_EU__REGION."""
    return f"{ENV_PREFIX}PROVIDERS{ENV_NESTING}{env_name(instance)}{ENV_NESTING}{key.upper()}"


def _provider_env(
    data: dict[str, Any], env: Mapping[str, str], origins: dict[tuple[str, ...], str]
) -> dict[str, Any]:
    """`data` with the provider variables laid over it: `GOMAILPY_PROVIDERS` (the whole list,
    YAML) first, then `GOMAILPY_PROVIDERS__<INSTANCE>__<KEY>` on the instance of that name
    (three-key form: on that key, created if absent). ValueError naming a variable that fits no
    instance."""
    prefix = env_var_for(("providers",))
    whole = next((v for k, v in env.items() if k.upper() == prefix), None)
    if whole not in (None, ""):
        data = {**data, "providers": yaml.safe_load(str(whole))}
        origins[("providers",)] = f"environment {prefix}"
    variables = sorted((k, v) for k, v in env.items() if k.upper().startswith(prefix + ENV_NESTING))
    if not variables:
        return data
    providers = data.get("providers")
    if providers is None:
        providers = {}  # only variables: the three-key form, as before instances had names
    providers = copy.deepcopy(providers)
    for variable, text in variables:
        parts = variable[len(prefix) + len(ENV_NESTING) :].split(ENV_NESTING)
        if len(parts) != 2 or not all(parts):
            raise ValueError(
                f"environment {variable}: must name an instance and a key,"
                f" {prefix}{ENV_NESTING}<INSTANCE>{ENV_NESTING}<KEY>"
            )
        instance, key = parts[0].upper(), parts[1].lower()
        value: Any = text if key in SECRET_KEYS else _env_value(text)
        if isinstance(providers, dict):
            name = instance.lower()
            providers.setdefault(name, {})[key] = value
            origins[("providers", name, key)] = f"environment {variable}"
            continue
        number = next(
            (
                i
                for i, entry in enumerate(providers)
                if isinstance(entry, dict) and env_name(str(entry.get("name", ""))) == instance
            ),
            None,
        )
        if number is None:
            known = ", ".join(str(n) for n in instance_names(providers) if n) or "none"
            raise ValueError(
                f"environment {variable}: no provider instance is named {instance.lower()!r}"
                f" (instances: {known})"
            )
        providers[number][key] = value
        origins[("providers", str(number), key)] = f"environment {variable}"
    return {**data, "providers": providers}


def _env_value(text: str) -> Any:
    if text in ENV_NULLS:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def missing_secrets(settings: Settings) -> list[str]:
    """Secrets that an enabled part of the configuration needs but nobody set."""
    missing = []
    numbers = {name: n for n, name in enumerate(settings.providers.names())}
    for sendgrid in settings.providers.sendgrid_instances():
        if sendgrid.api_key is None:
            where = f"providers[{numbers[sendgrid.name]}] ({sendgrid.name}).api_key"
            variable = provider_var(sendgrid.name, "api_key")
            missing.append(f"{where}: missing secret: SendGrid is enabled, so set {variable}")
    for mailgun in settings.providers.mailgun_instances():
        if mailgun.api_key is None:
            where = f"providers[{numbers[mailgun.name]}] ({mailgun.name}).api_key"
            variable = provider_var(mailgun.name, "api_key")
            missing.append(f"{where}: missing secret: Mailgun is enabled, so set {variable}")
    for smtp in settings.providers.smtp_instances():
        if smtp.username and smtp.password is None:
            where = f"providers[{numbers[smtp.name]}] ({smtp.name}).password"
            variable = provider_var(smtp.name, "password")
            missing.append(f"{where}: missing secret: username is set, so set {variable}")
        where = f"providers[{numbers[smtp.name]}] ({smtp.name})"
        variable = provider_var(smtp.name, "dkim_keys")
        missing.extend(key_problems(smtp.dkim, smtp.dkim_keys, instance=where, variable=variable))
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
