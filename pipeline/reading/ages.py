"""How long the emails a node is about to send have waited: the age of the oldest one per queue
in each batch (`gomailpy_queue_oldest_message_age_seconds`), what an operator alerts on when a
backlog builds up. SQS reports no such age itself (only CloudWatch does); the envelope knows
when the API accepted it, or when a scheduled email fell due.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from gomailpy import metrics
from gomailpy.queues.sqs import queue_name
from pipeline.sending.settlement import Item


def note_ages(items: Sequence[Item], now: float | None = None) -> None:
    """Set each queue's gauge to the age (s) of its oldest email among `items`."""
    now = time.time() if now is None else now
    oldest: dict[str, float] = {}
    for item in items:
        envelope = item.envelope
        since = max(envelope.created_at.timestamp(), envelope.send_at or 0.0)
        queue = item.message.queue_url
        oldest[queue] = max(oldest.get(queue, 0.0), now - since)
    for url, age in oldest.items():
        metrics.QUEUE_OLDEST_AGE.labels(queue_name(url)).set(max(age, 0.0))
