"""Settings of the providers (`providers:` — ses, sendgrid, smtp); part of gomailpy.settings."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, model_validator

from gomailpy.dkim_signing import DkimDomainSettings
from gomailpy.settings_base import Port, PositiveSeconds
from gomailpy.settings_base import Section as _Section


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
    dkim: list[DkimDomainSettings] = []  # signing domains (gomailpy.dkim_signing); keys: below
    dkim_keys: SecretStr | None = None  # {domain: PEM key} as YAML/JSON, for dkim[] without a file

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
