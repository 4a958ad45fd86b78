"""Prometheus metrics of the API and the pipeline nodes, named after Prometheus conventions.

All live in the process's default registry; `/metrics` serves `generate_latest()`.
Tests read them through `sample(...)`, comparing values before and after, since the registry is
per process and shared by every test in it.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

# -- API ----------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "gomailpy_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
HTTP_REQUEST_SECONDS = Histogram(
    "gomailpy_http_request_duration_seconds", "Time to answer an HTTP request", ["route"]
)
ENQUEUE_SECONDS = Histogram(
    "gomailpy_enqueue_duration_seconds",
    "Time from a valid request to the queue's acceptance",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ENQUEUED = Counter("gomailpy_emails_enqueued_total", "Emails accepted onto a queue", ["queue"])
ENQUEUE_FAILURES = Counter(
    "gomailpy_enqueue_failures_total", "Attempts to put an email on a queue that failed", ["queue"]
)
# Regional queues (gomailpy.config.regions): where mail was routed from and where it went;
# `home` != `region` is a spill. "" stands for no region.
REGION_ENQUEUED = Counter(
    "gomailpy_region_emails_enqueued_total",
    "Emails accepted onto a queue, by the caller's region and the queue's",
    ["home", "region"],
)
REGION_DEPTH = Gauge(
    "gomailpy_region_queue_depth", "Messages in a region's queues, as the API last read", ["region"]
)

# -- queues (API and pipeline both refresh these) ----------------------------------------------
QUEUE_VISIBLE = Gauge("gomailpy_queue_messages_visible", "Approximate visible messages", ["queue"])
QUEUE_IN_FLIGHT = Gauge(
    "gomailpy_queue_messages_in_flight", "Approximate received, not yet deleted", ["queue"]
)

# -- pipeline -----------------------------------------------------------------------------------
MESSAGES_RECEIVED = Counter(
    "gomailpy_messages_received_total", "Messages received from a queue", ["queue"]
)
PROVIDER_SENDS = Counter(
    "gomailpy_provider_sends_total",
    "Emails offered to a provider, by outcome (accepted, transient, throttled, permanent, account)",
    ["provider", "outcome"],
)
PROVIDER_SEND_SECONDS = Histogram(
    "gomailpy_provider_send_duration_seconds", "Time a provider took to answer", ["provider"]
)
PROVIDER_HEALTHY = Gauge(
    "gomailpy_provider_healthy",
    "1 if the provider's circuit is closed (healthy), else 0",
    ["provider"],
)
PROVIDER_STATE_CHANGES = Counter(
    "gomailpy_provider_state_changes_total", "Health state changes", ["provider", "to_state"]
)
EMAILS_FAILED = Counter(
    "gomailpy_emails_failed_total", "Emails failed for good (recorded, removed)", ["reason"]
)
DEAD_LETTERED = Counter(
    "gomailpy_messages_dead_lettered_total",
    "Unreadable messages moved to a dead-letter queue",
    ["queue"],
)
ITERATION_SECONDS = Histogram(
    "gomailpy_pipeline_iteration_duration_seconds", "Duration of one pipeline iteration"
)
BATCH_SIZE = Histogram(
    "gomailpy_pipeline_batch_size",
    "Messages pooled in one pipeline iteration",
    buckets=(0, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    """Current value of one sample in this process's registry (0 if absent)."""
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


PIPELINE_SETTLE_FAILURES = Counter(
    "gomailpy_pipeline_settle_failures_total",
    "Deletes or visibility changes the queue refused (the message comes back: maybe twice)",
    ["operation"],
)
SENDS_IN_DOUBT = Counter(
    "gomailpy_sends_in_doubt_total",
    "Sends of emails another node had said it was sending and never said how it ended (it died,"
    " or stalled past pipeline.in_doubt_grace_s): each may be a second delivery",
)
PIPELINE_LEASES_LOST = Counter(
    "gomailpy_pipeline_leases_lost_total",
    "Messages whose visibility ran out (or whose renewal SQS refused) before the node was done:"
    " not sent here, they come back to another node",
)
PIPELINE_RETRIES = Counter(
    "gomailpy_pipeline_retries_total",
    "Emails released back to their queue for a later try, by outcome",
    ["outcome"],
)

# -- what providers report after sending (events, suppression, reputation) ---------------------
EVENTS_RECORDED = Counter(
    "gomailpy_events_recorded_total",
    "Provider events recorded (duplicates not counted), by provider and type",
    ["provider", "type"],
)
EVENT_REPORTS_DEAD_LETTERED = Counter(
    "gomailpy_event_reports_dead_lettered_total",
    "Events-queue bodies no parser could read, moved to the events dead-letter queue",
)
RECIPIENTS_SUPPRESSED = Counter(
    "gomailpy_recipients_suppressed_total",
    "Recipients dropped before sending because they are on the suppression list",
)
EMAILS_SUPPRESSED = Counter(
    "gomailpy_emails_suppressed_total", "Emails never sent: every recipient is suppressed"
)
ENGAGEMENT_EVENTS = Counter(
    "gomailpy_engagement_events_total",
    "New opened, clicked, unsubscribed and complained events, by the provider instance that sent"
    " the email (unknown: not joined to one), type, and machine (true: a privacy proxy's or link"
    " scanner's open or click, kept apart so that rates count people); divide by"
    ' gomailpy_provider_sends_total{outcome="accepted"} for a rate',
    ["provider", "type", "machine"],
)
PROVIDER_BOUNCE_RATE = Gauge(
    "gomailpy_provider_bounce_rate",
    "Hard bounces per accepted send over the provider's last sends (this node)",
    ["provider"],
)
PROVIDER_COMPLAINT_RATE = Gauge(
    "gomailpy_provider_complaint_rate",
    "Complaints per accepted send over the provider's last sends (this node)",
    ["provider"],
)
PROVIDER_REPUTATION_HELD = Gauge(
    "gomailpy_provider_reputation_held",
    "1 while the provider is out of rotation because its bounce or complaint rate is too high",
    ["provider"],
)
SENDING_PAUSED = Gauge(
    "gomailpy_sending_paused",
    "1 while this pipeline node sends nothing and leaves the mail on the queues, by reason:"
    " reputation (every provider it may use is held for its bounce or complaint rate)",
    ["reason"],
)
DOMAIN_OUTCOMES = Counter(
    "gomailpy_domain_outcomes_total",
    "Outcomes per provider at a recipient domain group (delivered, deferred, bounced, blocked);"
    " domain: a well-known mailbox provider (google, microsoft, …) or other",
    ["provider", "domain", "outcome"],
)
DOMAIN_EXCLUDED = Gauge(
    "gomailpy_domain_excluded",
    "1 while this node keeps a recipient domain group's mail off a provider that is blocked or"
    " deferred there (pipeline.sending.mailbox_health)",
    ["provider", "domain"],
)
DOMAIN_EXCLUSIONS = Counter(
    "gomailpy_domain_exclusions_total",
    "Per-domain exclusions that started (change=start) or ended (change=end)",
    ["provider", "domain", "change"],
)

# -- webhooks (gomailpy.webhooks, pipeline.webhooks) ---------------------------------------------
WEBHOOKS_PUBLISHED = Counter(
    "gomailpy_webhook_events_published_total", "Events put on the webhook queue", ["endpoint"]
)
WEBHOOK_EVENTS_LOST = Counter(
    "gomailpy_webhook_events_not_published_total",
    "Send events (sent, failed) not offered: the webhook queue refused them (logged)",
)
WEBHOOK_ATTEMPTS = Counter(
    "gomailpy_webhook_attempts_total",
    "Webhook requests by outcome: delivered, retry, gone (410: endpoint disabled), refused"
    " (target not allowed), dead_lettered",
    ["endpoint", "outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "gomailpy_webhook_attempt_duration_seconds", "Time of one webhook request", ["endpoint"]
)
WEBHOOK_OLDEST_AGE = Gauge(
    "gomailpy_webhook_oldest_undelivered_age_seconds",
    "Age of the oldest delivery this node has seen fail and not yet delivered",
    ["endpoint"],
)
WEBHOOK_ENDPOINT_DISABLED = Gauge(
    "gomailpy_webhook_endpoint_disabled",
    "1 while the endpoint is disabled (it answered 410)",
    ["endpoint"],
)

# -- the operator's controls (gomailpy.operating.controls, pipeline.steering) ----------------------
PROVIDER_CONTROLLED = Gauge(
    "gomailpy_provider_controlled",
    "1 while an operator's control is set on the provider (this node's last read), by control:"
    " disabled, forced_open, forced_closed, weight, probe_after, pinned",
    ["provider", "control"],
)
QUEUE_OLDEST_AGE = Gauge(
    "gomailpy_queue_oldest_message_age_seconds",
    "Age of the oldest email in this node's last batch from the queue (since the API accepted"
    " it, or a scheduled one fell due); read it with the queue's depth: it keeps its last value",
    ["queue"],
)

# -- provider rates (pipeline.prepare.rates) -------------------------------------------------------
PROVIDER_RATE_LIMIT = Gauge(
    "gomailpy_provider_rate_limit",
    "Emails/s this node may send through the provider: its share of the cluster's rate, as"
    " throttling has shrunk it; absent: no limit",
    ["provider"],
)
LIVE_NODES = Gauge(
    "gomailpy_pipeline_live_nodes", "Pipeline nodes alive (heartbeats), as this node counts them"
)
PROVIDER_QUOTA_REMAINING = Gauge(
    "gomailpy_provider_daily_quota_remaining",
    "Emails the provider's account may still send in its 24-hour window (SES GetSendQuota)",
    ["provider"],
)

# -- the process's own health (gomailpy.operating.loop_watch) ------------------------------
# Buckets from 1 ms: a loop that answers its timer later than that is delaying every request.
_PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
EVENT_LOOP_LAG = Histogram(
    "gomailpy_event_loop_lag_seconds",
    "How late the event loop ran a periodic timer (every 0.1 s): time a callback held the loop",
    buckets=_PAUSE_BUCKETS,
)
GC_PAUSE = Histogram(
    "gomailpy_gc_pause_seconds",
    "Time of one garbage collection (gc.callbacks), by generation",
    ["generation"],
    buckets=(0.0001, 0.00025, 0.0005, *_PAUSE_BUCKETS),
)
