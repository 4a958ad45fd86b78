"""`bulk:` settings: unsubscribe links and tracking (gomailpy.bulk); part of
gomailpy.config.settings."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator

from gomailpy.config.base import Section as _Section

DAY_S = 24 * 3600
MIN_SECRET_CHARS = 32  # e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`


class BulkSettings(_Section):
    """One-click unsubscribe and tracking links. Off until `secret` (environment only:
    GOMAILPY_BULK__SECRET, at least 32 characters, shared by every API and pipeline node) and
    `public_url` (where recipients reach the API: `https://mail.example.com`) are set."""

    secret: SecretStr | None = None  # HMAC-SHA-256 key of every link token
    public_url: str | None = None  # the API's public origin; links are <public_url>/u/<token>
    unsubscribe_ttl_s: Annotated[int, Field(ge=3600)] = 180 * DAY_S  # an unsubscribe link works
    tracking_ttl_s: Annotated[int, Field(ge=3600)] = 90 * DAY_S  # an open pixel or link works
    # Senders (addresses or @domains) whose every email gets List-Unsubscribe, asked or not.
    unsubscribe_senders: list[str] = []
    # A hit this soon after the email was sent is a prefetch (privacy proxy, link scanner).
    machine_window_s: Annotated[float, Field(ge=0)] = 10.0
    flush_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0  # tracking events' batching
    max_pending_events: Annotated[int, Field(ge=10)] = 100_000  # beyond: hits are not recorded

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters")
        return value

    @field_validator("public_url")
    @classmethod
    def _an_origin(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL, e.g. https://mail.example.com")
        return value.rstrip("/") if value else value

    @property
    def enabled(self) -> bool:
        return self.secret is not None and bool(self.public_url)

    def key(self) -> bytes:
        assert self.secret is not None
        return self.secret.get_secret_value().encode("utf-8")

    def wants_unsubscribe(self, sender: str) -> bool:
        """Whether the configuration puts List-Unsubscribe on every email of `sender`."""
        sender = sender.lower()
        domain = "@" + sender.rpartition("@")[2]
        return any(s.lower() in (sender, domain) for s in self.unsubscribe_senders)
