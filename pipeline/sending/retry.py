"""How long a message waits before its next try: a pure function of its delivery count.

The wait doubles with every delivery (base, 2×base, 4×base… capped), with up to 20 % jitter so
messages that failed together do not all come back in the same instant. A provider's own
Retry-After is honoured when it is longer. SQS caps a visibility timeout at 12 hours.
"""

from __future__ import annotations

import random

from gomailpy.config.settings import PipelineSettings

SQS_MAX_VISIBILITY_S = 43200


def retry_delay_s(
    receive_count: int,
    *,
    base_s: float,
    max_s: float,
    retry_after_s: float | None = None,
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> int:
    exponent = max(0, receive_count - 1)
    delay = min(max_s, base_s * (2 ** min(exponent, 30)))
    delay *= 1 + jitter * (rng or random).random()
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return int(max(0, min(SQS_MAX_VISIBILITY_S, round(delay))))


def configured_retry_delay_s(
    receive_count: int, pipeline: PipelineSettings, retry_after_s: float | None = None
) -> int:
    """`retry_delay_s` with `pipeline.retry_base_delay_s` and `pipeline.retry_max_delay_s`."""
    return retry_delay_s(
        receive_count,
        base_s=pipeline.retry_base_delay_s,
        max_s=pipeline.retry_max_delay_s,
        retry_after_s=retry_after_s,
    )
