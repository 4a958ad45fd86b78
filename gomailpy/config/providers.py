"""Settings of the providers (`providers:`): a list of named instances of a kind; part of
gomailpy.config.settings.

    providers:
      - {name: ses-us, kind: ses, region: us-east-1}
      - {name: ses-eu, kind: ses, region: eu-west-1, weight: 2}
      - {name: sendgrid, kind: sendgrid}           # GOMAILPY_PROVIDERS__SENDGRID__API_KEY
      - {name: relay-a, kind: smtp, host: relay-a.internal, port: 587, start_tls: true}
      - {name: relay-b, kind: smtp, host: relay-b.internal, enabled: false}
      - {name: mailgun-eu, kind: mailgun, domain: mg.example.com, base_url: https://api.eu.mailgun.net}
                                                   # GOMAILPY_PROVIDERS__MAILGUN_EU__API_KEY and
                                                   # ..._WEBHOOK_SIGNING_KEY

Every instance has a `name` (unique: it labels metrics, controls, health and events), a `kind`
(ses, sendgrid, smtp or mailgun: the union below is discriminated on it), `enabled` (default true),
`weight` and `timeout_s`, then its kind's own settings. An instance's secrets come from the
environment, `GOMAILPY_PROVIDERS__<NAME>__<KEY>` with the name in upper case and `-` as `_`
(gomailpy.config.settings).

The three-key form of earlier versions (`providers: {ses: {...}, sendgrid: {...}, smtp: {...}}`,
each disabled unless `enabled: true`) is still read, as instances named after their kind, with
one warning saying how to write it now.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import Field, RootModel, SecretStr, model_validator

from gomailpy.config.base import Port, PositiveSeconds
from gomailpy.config.base import Section as _Section
from gomailpy.email.dkim import DkimDomainSettings

log = logging.getLogger("gomailpy.settings")

KINDS = ("ses", "sendgrid", "smtp", "mailgun")
# The keys of the three-key form, one instance of each kind; also the kinds `gomail up` always runs.
LEGACY_NAMES = ("ses", "sendgrid", "smtp")
# of any kind: environment only
SECRET_KEYS = frozenset({"api_key", "password", "dkim_keys", "webhook_signing_key"})
# A Mailgun sending domain goes into the request path (/v3/<domain>/messages.mime): a host name,
# nothing that could add a path segment or a query.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DOMAIN_PATTERN = rf"^{_LABEL}(?:\.{_LABEL})*$"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class _ProviderSection(_Section):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]  # default: the kind
    enabled: bool = True
    weight: Annotated[float, Field(gt=0)] = 1.0
    timeout_s: PositiveSeconds = 10.0

    @model_validator(mode="before")
    @classmethod
    def _named_after_kind(cls, value: Any) -> Any:
        if isinstance(value, dict) and "name" not in value:
            return {"name": value.get("kind", cls.model_fields["kind"].default), **value}
        return value


class SesSettings(_ProviderSection):
    kind: Literal["ses"] = "ses"
    # v2: sesv2 SendEmail with raw content (40 MB); v1: SendRawEmail (10 MB). v1 stays the
    # default while LocalStack (the local stack's SES) does not emulate sesv2.
    api_version: Literal["v1", "v2"] = "v1"
    region: str | None = None  # None: aws.region
    endpoint_url: str | None = None  # None: aws.endpoint_url
    configuration_set: str | None = None
    # where SES publishes this instance's events (gomail init creates it in `region`); None:
    # events.ses_topic
    events_topic: str | None = None


class SendGridSettings(_ProviderSection):
    kind: Literal["sendgrid"] = "sendgrid"
    base_url: str = "https://api.sendgrid.com"
    api_key: SecretStr | None = None
    max_connections: Annotated[int, Field(ge=1)] = 50
    # The Event Webhook's verification key of this account (base64 DER, public: no secret), for
    # posts to /events/sendgrid/<name>; None: events.sendgrid_public_key
    webhook_public_key: str | None = None


class SmtpSettings(_ProviderSection):
    kind: Literal["smtp"] = "smtp"
    host: str = "127.0.0.1"
    port: Port = 25
    use_tls: bool = False  # implicit TLS (port 465)
    start_tls: bool = False  # STARTTLS after connecting
    validate_certs: bool = True
    username: str | None = None
    password: SecretStr | None = None
    max_connections: Annotated[int, Field(ge=1)] = 4
    dkim: list[DkimDomainSettings] = []  # signing domains (gomailpy.email.dkim); keys: below
    dkim_keys: SecretStr | None = None  # {domain: PEM key} as YAML/JSON, for dkim[] without a file

    @model_validator(mode="after")
    def _tls_modes_exclusive(self) -> SmtpSettings:
        if self.use_tls and self.start_tls:
            raise ValueError("use_tls and start_tls cannot both be true")
        return self


class MailgunSettings(_ProviderSection):
    """A Mailgun account's sending domain (gomailpy.providers.mailgun): raw MIME through
    `POST /v3/<domain>/messages.mime`, events through the signed webhook
    `/events/mailgun/<name>`."""

    kind: Literal["mailgun"] = "mailgun"
    # the sending domain, as Mailgun has it (required)
    domain: Annotated[str, Field(pattern=DOMAIN_PATTERN, max_length=253)]
    base_url: str = "https://api.mailgun.net"  # the EU region: https://api.eu.mailgun.net
    api_key: SecretStr | None = None  # sent as HTTP Basic auth, user `api`
    # The account's HTTP webhook signing key (not the API key): checks the HMAC of each event
    # posted to /events/mailgun/<name>; None: that route answers 404.
    webhook_signing_key: SecretStr | None = None
    max_connections: Annotated[int, Field(ge=1)] = 50


ProviderSettings = Annotated[
    SesSettings | SendGridSettings | SmtpSettings | MailgunSettings, Field(discriminator="kind")
]
KIND_MODELS: dict[str, type[_ProviderSection]] = {
    "ses": SesSettings,
    "sendgrid": SendGridSettings,
    "smtp": SmtpSettings,
    "mailgun": MailgunSettings,
}


_Kind = TypeVar("_Kind", "SesSettings", "SendGridSettings", "SmtpSettings")


def is_legacy(value: Any) -> bool:
    """True for the three-key form: a mapping whose keys are kinds and whose entries name no
    kind of their own."""
    return (
        isinstance(value, dict)
        and set(value) <= set(LEGACY_NAMES)
        and all(not isinstance(v, dict) or "kind" not in v for v in value.values())
    )


def from_legacy(value: dict[str, Any]) -> list[Any]:
    """The three-key form as instances named after their kind, disabled unless enabled."""
    return [
        {"name": name, "kind": name, **entry, "enabled": entry.get("enabled", False)}
        if isinstance(entry, dict)
        else entry
        for name, entry in value.items()
    ]


def instance_names(value: Any) -> list[str | None]:
    """The name of each instance of a `providers:` value (as read, before validation), by
    position; None where an entry has none. For messages naming the instance."""
    items = from_legacy(value) if is_legacy(value) else value
    if not isinstance(items, list):
        return []
    return [str(i["name"]) if isinstance(i, dict) and "name" in i else None for i in items]


def env_name(instance: str) -> str:
    """How an instance name is written in an environment variable: `ses-eu` -> `SES_EU`."""
    return instance.upper().replace("-", "_")


class ProvidersSettings(RootModel[list[ProviderSettings]]):
    """The provider instances, in the order written: each has a unique `name` (default: its
    kind), a `kind` and that kind's keys (gomailpy.config.providers)."""

    root: list[ProviderSettings] = []

    @model_validator(mode="before")
    @classmethod
    def _read_three_key_form(cls, value: Any) -> Any:
        if not is_legacy(value):
            return value
        converted = from_legacy(value)
        shown = [
            {k: v for k, v in entry.items() if k not in SECRET_KEYS}
            for entry in converted
            if isinstance(entry, dict)
        ]
        written = yaml.safe_dump(
            shown, default_flow_style=True, sort_keys=False, width=1 << 16
        ).strip()
        log.warning(
            "providers: the three-key form (ses:, sendgrid:, smtp:) is deprecated; write a list"
            " of named instances instead: providers: %s",
            written,
        )
        return converted

    @model_validator(mode="after")
    def _names_unique(self) -> ProvidersSettings:
        seen: dict[str, int] = {}
        for number, instance in enumerate(self.root):
            if instance.name in seen:
                raise ValueError(
                    f"providers[{number}].name: {instance.name!r} is already the name of"
                    f" providers[{seen[instance.name]}]; every instance needs its own name"
                )
            seen[instance.name] = number
        return self

    def __iter__(self) -> Iterator[ProviderSettings]:  # type: ignore[override]
        return iter(self.root)

    def __len__(self) -> int:
        return len(self.root)

    def __getitem__(self, name: str) -> ProviderSettings:
        """The instance named `name`; KeyError if none is."""
        for instance in self.root:
            if instance.name == name:
                return instance
        raise KeyError(name)

    def get(self, name: str) -> ProviderSettings | None:
        return next((i for i in self.root if i.name == name), None)

    def names(self) -> list[str]:
        """Every instance's name, enabled or not, in the order written."""
        return [instance.name for instance in self.root]

    def known(self) -> tuple[str, ...]:
        """The names the operator's controls accept: every instance's; with none configured,
        the three of the three-key form."""
        return tuple(self.names()) or LEGACY_NAMES

    def enabled(self) -> dict[str, ProviderSettings]:
        """The enabled instances by name."""
        return {instance.name: instance for instance in self.root if instance.enabled}

    def kind_of(self, name: str) -> str | None:
        instance = self.get(name)
        return instance.kind if instance is not None else None

    def of_kind(self, kind: str) -> list[ProviderSettings]:
        """The enabled instances of `kind`, in the order written."""
        return [i for i in self.root if i.enabled and i.kind == kind]

    def ses_instances(self) -> list[SesSettings]:
        """The enabled SES instances."""
        return [i for i in self.root if i.enabled and isinstance(i, SesSettings)]

    def sendgrid_instances(self) -> list[SendGridSettings]:
        """The enabled SendGrid instances."""
        return [i for i in self.root if i.enabled and isinstance(i, SendGridSettings)]

    def smtp_instances(self) -> list[SmtpSettings]:
        """The enabled SMTP instances."""
        return [i for i in self.root if i.enabled and isinstance(i, SmtpSettings)]

    def mailgun_instances(self) -> list[MailgunSettings]:
        """The enabled Mailgun instances."""
        return [i for i in self.root if i.enabled and isinstance(i, MailgunSettings)]

    # The three-key form's view, for code written before instances had names: the instance
    # named after the kind, else the first of that kind, else a disabled one (as its default was).

    @property
    def ses(self) -> SesSettings:
        return self._one(SesSettings)

    @property
    def sendgrid(self) -> SendGridSettings:
        return self._one(SendGridSettings)

    @property
    def smtp(self) -> SmtpSettings:
        return self._one(SmtpSettings)

    def _one(self, model: type[_Kind]) -> _Kind:
        kind = model.model_fields["kind"].default
        of_kind = [i for i in self.root if isinstance(i, model)]
        named = [i for i in of_kind if i.name == kind]
        return (named or of_kind or [model(name=kind, enabled=False)])[0]
