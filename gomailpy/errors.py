"""Every error gomailpy raises on purpose: one tree, drawn here.

```
GomailError
├── ConfigError                  # a config file, key or secret is wrong; message names file and key
├── EnvelopeError                # an unreadable queue message (poison): dead-letter queue
├── EventFormatError             # an events-queue body no parser can read: events DLQ
├── MalformedRequestError        # a request body that is not JSON, too large, or of the wrong shape
├── InvalidEmailError            # an email request has invalid fields; one message per field
├── UnqueueableEmailError        # a queue refused an email for what it carries (answered 400)
├── TemplateError                # a stored template is missing, or failed to render (answered 422)
│   ├── TemplateSyntaxError      # refused when stored: does not parse, nests too deep, a partial
│   └── TemplateLimitError       # rendering went past the output size or the step or time budget
├── TokenError                   # an unsubscribe or tracking link's token is malformed, forged
│                                #   or expired (gomailpy.bulk.tokens; answered 400, 403 or 410)
├── V3RequestError               # a SendGrid v3 request gomailpy cannot honour    email.v3_fields
├── SendAtError (ValueError)     # a send time that cannot be used                  email.schedule
├── ControlError (ValueError)    # an operator's change that cannot be made       operating.controls
├── TargetRefusedError (OSError) # a webhook target refused: URL or address  config.webhook_targets
├── ConditionFailedError         # a conditional write on the table did not hold; the record kind
│                                #   that asked catches it (gomailpy.store.dynamodb)
└── BackendError                 # a service gomailpy relies on failed: try again later
    ├── QueueError               # one SQS call failed; names the queue and the operation
    ├── NoQueueAvailableError    # every configured queue refused an email
    ├── ClaimCheckError          # an S3 call of the claim check failed (`missing`: no object)
    └── StoreError               # the status table (DynamoDB) could not be read or written,
                                 #   whichever record kind: deliveries, events, suppressions,
                                 #   templates, schedules, controls
```

Errors that belong to one module's input stay defined there (named at the right above) and
still derive from GomailError; a second base (ValueError, OSError) is kept where callers, or the
libraries they sit under, catch that. The local stack's LocalStackError (gomailpy_local) derives
from GomailError too.

The API answers them in one place (`api.responses.error_answer`): MalformedRequestError 400,
InvalidEmailError 422, UnqueueableEmailError 400, TemplateError 422, any BackendError 503
(NoQueueAvailableError with Retry-After). The pipeline fails an email whose template raises a
TemplateError for good (retrying would fail the same way). Providers report the outcome of a send
as `SendResult` values (see `gomailpy.providers.base`), not by raising.
"""

from __future__ import annotations

from collections.abc import Sequence


class GomailError(Exception):
    """Base of every error gomailpy raises on purpose."""


class ConfigError(GomailError):
    """Configuration cannot be used. `str()` is a message a person can act on."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        self.problems = problems or [message]
        super().__init__(message)


class EnvelopeError(GomailError):
    """A queue message is not a gomailpy envelope this version can read."""


class EventFormatError(GomailError):
    """A report on the events queue that no parser can read; `str()` is the reason kept with it
    in the events dead-letter queue."""


class MalformedRequestError(GomailError):
    """A request body cannot be read as JSON or is not of the expected shape at all (answered
    400, not 422). `str()` is the message for the client."""


class InvalidEmailError(GomailError):
    """An email request has invalid fields. `errors` maps each request field to one message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in errors.items()))


class UnqueueableEmailError(GomailError):
    """A queue refused an email for its contents (SQS's InvalidMessageContents, MessageTooLong):
    every queue would, so the client must change the request. Never an outage (answered 400)."""

    def __init__(self, queue: str, reason: str) -> None:
        self.queue = queue
        self.reason = reason
        super().__init__(f"queue {queue} refused the email for its contents: {reason}")


class TemplateError(GomailError):
    """A template is missing, invalid, or failed to render; `str()` says which and why."""


class TemplateSyntaxError(TemplateError):
    """A template's source cannot be used: it does not parse, nests deeper than allowed, or asks
    for what gomailpy does not offer (partials, hash arguments). Found when it is stored."""


class TemplateLimitError(TemplateError):
    """Rendering a template went past a limit (output size, steps, time): the template and its
    data, not the server, are at fault."""


class TokenError(GomailError):
    """A signed link token (gomailpy.bulk.tokens) cannot be used. `status`: 400 malformed, 403
    not signed by this server's key (tampered, foreign, another kind), 410 expired."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


class BackendError(GomailError):
    """SQS, S3 or DynamoDB failed or refused a call: nothing is wrong with the request itself."""


class QueueError(BackendError):
    """An SQS call failed. `queue` names the queue, `operation` the SQS action."""

    def __init__(self, queue: str, operation: str, reason: str) -> None:
        self.queue = queue
        self.operation = operation
        self.reason = reason
        super().__init__(f"queue {queue}: {operation} failed: {reason}")


class NoQueueAvailableError(BackendError):
    """Every configured queue refused the message, or is known to be down; `reasons` says why,
    one line per queue; `retry_after_s` is the wait to advise the client (whole seconds)."""

    def __init__(self, reasons: Sequence[str], *, retry_after_s: int = 1) -> None:
        self.reasons = list(reasons)
        self.retry_after_s = retry_after_s
        super().__init__("; ".join(self.reasons) or "no queue configured")


class ClaimCheckError(BackendError):
    """S3 could not be reached or refused a call; `missing` when the object is not there."""

    def __init__(self, operation: str, reason: str, *, missing: bool = False) -> None:
        self.operation = operation
        self.reason = reason
        self.missing = missing
        super().__init__(f"claim check: {operation} failed: {reason}")


class StoreError(BackendError):
    """The status table could not be read or written (any record kind on it); `operation` is
    the DynamoDB action."""

    def __init__(self, operation: str, reason: str) -> None:
        self.operation = operation
        self.reason = reason
        super().__init__(f"store: {operation} failed: {reason}")


class ConditionFailedError(GomailError):
    """A conditional write whose condition did not hold (`str()`: the operation). Not a failure:
    the store that wrote it decides what it means (a key already held, an event already kept)."""
