"""SES's own limits as its rate: `GetSendQuota` (MaxSendRate, Max24HourSend, SentLast24Hours),
of each SES instance (its account, in its region), read at start and every
`steering.ses_quota_refresh_s` (never more often than once a second).

With `steering.ses_quota: true` the SES rate's cluster ceiling (pipeline.prepare.rates) is the
account's MaxSendRate, or `steering.rates.ses` when that is lower. Opt-in: an emulator's quota
(LocalStack and moto answer 1 email/s) would throttle a local stack that never asked for it. A read
that fails keeps the last ceiling (logged).
`gomailpy_provider_daily_quota_remaining{provider="ses-eu"}` shows what is left of the day's quota;
with less than `NEARLY_SPENT` of it left SES rests (pipeline.sending.controls.steer: no traffic
while another provider is healthy) until it frees up.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gomailpy import metrics
from gomailpy.config.providers import SesSettings
from gomailpy.config.settings import Settings
from gomailpy.queues.aws import open_aws_client
from pipeline.periodic import PeriodicRefresh
from pipeline.prepare.rates import ProviderRate

log = logging.getLogger("gomailpy.pipeline")
# What is left of the day's quota when SES stops taking new traffic (probes and all-down aside):
# the rest stays for mail already in flight, and for the quota's rolling window to free.
NEARLY_SPENT = 0.02


class SesQuota(PeriodicRefresh):
    """Keeps `rate.ceiling` at SES's MaxSendRate (or `configured`, when lower and > 0)."""

    def __init__(
        self,
        client: Any,
        rate: ProviderRate,
        *,
        configured: float,
        refresh_s: float,
        name: str = "ses",
    ) -> None:
        super().__init__(max(1.0, refresh_s))
        self.name = name  # the SES instance: each reads its own account's quota in its region
        self._client = client
        self._rate = rate
        self._configured = configured
        self.max_send_rate = 0.0
        self.remaining_today: float | None = None
        self.nearly_spent = False

    async def refresh(self) -> None:
        try:
            answer = await self._client.get_send_quota()
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            log.warning(
                "SES GetSendQuota of %s failed (%s): keeping %.2f/s",
                self.name,
                exc,
                self._rate.ceiling,
            )
            return
        self.max_send_rate = float(answer.get("MaxSendRate", 0) or 0)
        daily = float(answer.get("Max24HourSend", 0) or 0)
        if daily > 0:  # -1 (or 0): no daily limit
            self.remaining_today = max(0.0, daily - float(answer.get("SentLast24Hours", 0) or 0))
            metrics.PROVIDER_QUOTA_REMAINING.labels(self.name).set(self.remaining_today)
            spent = self.remaining_today <= daily * NEARLY_SPENT
            if spent != self.nearly_spent:
                log.warning(
                    "SES daily quota %s: %.0f of %.0f left (%s)",
                    "nearly spent, traffic moves to the others" if spent else "available again",
                    self.remaining_today,
                    daily,
                    self.name,
                    extra={"provider": self.name},
                )
            self.nearly_spent = spent
        rates = [r for r in (self.max_send_rate, self._configured) if r > 0]
        if rates:
            self._rate.ceiling = min(rates)


async def open_ses_quota(
    stack: AsyncExitStack, settings: Settings, name: str, rate: ProviderRate
) -> SesQuota:
    """Read the quota of SES instance `name` (its account, in its region) into `rate` now and
    then every `steering.ses_quota_refresh_s`."""
    ses = settings.providers[name]
    assert isinstance(ses, SesSettings)
    # v1's GetSendQuota for both API versions: the quota is the account's in that region (and
    # LocalStack emulates no sesv2 GetAccount).
    client = await open_aws_client(
        stack,
        "ses",
        settings.aws,
        region=ses.region,
        endpoint_url=ses.endpoint_url,
        read_timeout_s=ses.timeout_s,
        max_attempts=2,
    )
    quota = SesQuota(
        client,
        rate,
        configured=settings.steering.rate_for(name),
        refresh_s=settings.steering.ses_quota_refresh_s,
        name=name,
    )
    return await stack.enter_async_context(quota)
