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
PIPELINE_RETRIES = Counter(
    "gomailpy_pipeline_retries_total",
    "Emails released back to their queue for a later try, by outcome",
    ["outcome"],
)
