"""Settings of what happens after "accepted" (`events:`, `suppression:`, `reputation:`); part
of gomailpy.config.settings."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from gomailpy.config.base import Port
from gomailpy.config.base import Section as _Section


class EventsSettings(_Section):
    """What providers report after accepting an email (gomailpy.events): one events queue (with
    its dead-letter queue `<queue><queues.dlq_suffix>`) that SES's SNS topic, the SendGrid and
    Mailgun webhooks and the SMTP bounce listener all feed, read by the pipeline nodes."""

    enabled: bool = False
    queue: str = "gomailpy-events"  # a name (resolved like queues.urls) or a URL
    ses_topic: str = "gomailpy-ses-events"  # SNS topic of SES's configuration-set events
    ses_configuration_set: str = "gomailpy"
    sendgrid_public_key: str | None = None  # the Event Webhook's verification key (base64 DER)
    sendgrid_replay_window_s: Annotated[int, Field(ge=1)] = 600
    # How far a Mailgun webhook post's signed timestamp may be from now (its key is per
    # instance: providers[].webhook_signing_key)
    mailgun_replay_window_s: Annotated[int, Field(ge=1)] = 600
    bounce_domain: str = "bounces.gomailpy.local"  # VERP envelope senders: bounces+<id>@<domain>
    bounce_host: str = "127.0.0.1"  # the SMTP listener that takes DSNs and complaints
    bounce_port: Port = 2526
    consumers: Annotated[int, Field(ge=1, le=50)] = 4  # receives at once (pipeline.feedback)


class SuppressionSettings(_Section):
    """One suppression list for every provider (stored with the delivery records)."""

    enabled: bool = True  # needs status.backend memory or dynamodb
    soft_bounce_limit: Annotated[int, Field(ge=1)] = 18  # soft bounces (Postal's 18) ...
    soft_bounce_window_s: Annotated[int, Field(ge=60)] = 7 * 24 * 3600  # ... within this window
    refuse_at_api: bool = False  # 422 when every recipient of an email is suppressed


class ReputationSettings(_Section):
    """`reputation`: per provider, over its last `window` accepted sends, past
    `max_bounce_rate` (hard bounces) or `max_complaint_rate` (with at least `min_sample` sends
    counted), the provider gets no mail for `hold_s` (not even a probe) or until an operator
    releases it; when every provider is held, sending pauses (pipeline.sending.reputation)."""

    enabled: bool = True  # acts only where events are read (events.enabled)
    window: Annotated[int, Field(ge=10)] = 10_000
    min_sample: Annotated[int, Field(ge=1)] = 1_000
    max_bounce_rate: Annotated[float, Field(gt=0, le=1)] = 0.04  # SES reviews at 5 %
    max_complaint_rate: Annotated[float, Field(gt=0, le=1)] = 0.0008  # SES reviews at 0.1 %
    hold_s: Annotated[float, Field(gt=0)] = 3600.0
