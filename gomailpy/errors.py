"""Every error gomailpy raises on purpose.

```
GomailError
├── ConfigError                  # a config file, key or secret is wrong; message names file and key
├── QueueError                   # an SQS call failed; names the queue
├── EnvelopeError                # an unreadable queue message (poison): dead-letter queue
├── InvalidEmailError            # an email request has invalid fields (API 422)
├── MalformedRequestError        # a request body of the wrong shape (API 400)
└── ProviderError                # a provider did not accept an email
    ├── TransientProviderError   # retry later; counts toward the provider's health
    ├── PermanentProviderError   # the email itself is refused: fail it for good; health untouched
    └── ProviderAccountError     # this provider's account refused it: try another provider
```

Providers report outcomes as `SendResult` values (see `gomailpy.providers.base`), not by raising;
these classes exist for code paths where an exception is the natural shape (configuration, queue
I/O, decoding).
"""

from __future__ import annotations


class GomailError(Exception):
    """Base of every error gomailpy raises on purpose."""


class ConfigError(GomailError):
    """Configuration cannot be used. `str()` is a message a person can act on."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        self.problems = problems or [message]
        super().__init__(message)


class QueueError(GomailError):
    """An SQS call failed. `queue` names the queue, `operation` the SQS action."""

    def __init__(self, queue: str, operation: str, reason: str) -> None:
        self.queue = queue
        self.operation = operation
        self.reason = reason
        super().__init__(f"queue {queue}: {operation} failed: {reason}")


class EnvelopeError(GomailError):
    """A queue message is not a gomailpy envelope this version can read."""


class ProviderError(GomailError):
    """A provider did not accept an email."""

    def __init__(self, provider: str, reason: str) -> None:
        self.provider = provider
        self.reason = reason
        super().__init__(f"{provider}: {reason}")


class TransientProviderError(ProviderError):
    """Worth retrying later; `retry_after_s` is the provider's hint, if it gave one."""

    def __init__(self, provider: str, reason: str, *, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(provider, reason)


class PermanentProviderError(ProviderError):
    """The email itself is refused (bad recipient, malformed content): no provider would take it."""


class ProviderAccountError(ProviderError):
    """This provider's account refused the email (unverified sender, bad key): try another one."""


class InvalidEmailError(GomailError):
    """An email request has invalid fields. `errors` maps each request field to one message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in errors.items()))


class MalformedRequestError(GomailError):
    """A request body is not of the expected shape at all (answered 400, not 422)."""
