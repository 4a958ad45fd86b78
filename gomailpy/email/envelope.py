"""The message that travels on a queue: a versioned JSON envelope around a validated `Email`.

Version 1:

    {"v": 1, "id": "<message id>", "created_at": "2026-11-24T13:00:00.123456Z", "email": {...}}

`id` is the messageId the API answered with; it also names the email in logs, metrics and the
delivery status. A reader refuses versions it does not know (`EnvelopeError`) rather than guess:
such a message goes to the dead-letter queue, where a newer node can still read it.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from gomailpy.email.bulk.options import BulkOptions
from gomailpy.email.models import Email
from gomailpy.errors import EnvelopeError

ENVELOPE_VERSION: Literal[1] = 1


class Envelope(BaseModel):
    """One queued email with its identity and creation time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = ENVELOPE_VERSION
    id: str
    created_at: datetime
    email: Email
    # Optional, and left out of the JSON when unset (so nodes of the previous release still read
    # every envelope that does not use them): SendGrid's custom_args and categories, which travel
    # with the email to the provider and its events; and when a scheduled email is due (epoch
    # seconds; gomailpy.email.schedule holds it on the queue until then).
    custom_args: dict[str, str] | None = None
    categories: list[str] | None = None
    send_at: float | None = None
    bulk: BulkOptions | None = None  # unsubscribe links, tracking (gomailpy.email.bulk.options)

    @classmethod
    def wrap(
        cls, email: Email, *, message_id: str | None = None, send_at: float | None = None
    ) -> Envelope:
        return cls(
            id=message_id or new_message_id(),
            created_at=datetime.now(UTC),
            email=email,
            send_at=send_at,
        )

    def encode(self) -> str:
        """The queue message body. Compact JSON; non-ASCII kept as UTF-8 (SQS counts bytes)."""
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def decode(cls, body: str) -> Envelope:
        """Read a queue message body, or raise `EnvelopeError` saying why it is unreadable."""
        try:
            raw: Any = json.loads(body)
        except ValueError as exc:
            raise EnvelopeError(f"not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise EnvelopeError("not a JSON object")
        version = raw.get("v")
        if version != ENVELOPE_VERSION:
            raise EnvelopeError(f"unknown envelope version {version!r} (this node reads v1)")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise EnvelopeError(f"invalid envelope at {where}: {first['msg']}") from None


def new_message_id() -> str:
    return str(uuid.uuid4())
