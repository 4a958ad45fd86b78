"""Settings of the operator's controls and of the providers' send rates (`steering:`).

    steering:
      controls_poll_s: 2        # how often a node reads the controls (gomailpy.controls)
      heartbeat_s: 5            # how often a node says it is alive (node#<id>, for rate shares)
      rates: {ses: 14, smtp: 20}   # emails/s for the whole cluster; absent or 0: no limit
      ses_quota: false          # true: SES's rate is its account's MaxSendRate (GetSendQuota)

With `ses_quota`, SES's rate is its account's MaxSendRate unless `rates.ses` is lower
(pipeline.ses_quota).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PROVIDER_NAMES = ("ses", "sendgrid", "smtp")


class SteeringSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    controls_poll_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    heartbeat_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    rates: dict[str, Annotated[float, Field(ge=0)]] = {}
    # SES's rate from its account (GetSendQuota: MaxSendRate), unless rates.ses is lower. Off by
    # default: emulators answer 1 email/s (pipeline.ses_quota).
    ses_quota: bool = False
    ses_quota_refresh_s: Annotated[float, Field(ge=1)] = 60.0  # never more than once a second

    def rate_for(self, provider: str) -> float:
        """The configured cluster-wide rate of `provider` in emails/s; 0: none configured."""
        return self.rates.get(provider, 0.0)
