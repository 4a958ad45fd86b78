"""Settings of the operator's controls and of the providers' send rates (`steering:`).

    steering:
      controls_poll_s: 2        # how often a node reads the controls (gomailpy.operating.controls)
      heartbeat_s: 5            # how often a node says it is alive (node#<id>, for rate shares)
      rates: {ses: 14, smtp: 20}   # emails/s for the whole cluster; absent or 0: no limit
      ses_quota: false          # true: SES's rate is its account's MaxSendRate (GetSendQuota)
      domains:                  # per recipient domain group (pipeline.sending.mailbox_health)
        min_events: 5           # outcomes of a (provider, group) pair before it is judged
        max_bad_share: 0.5      # blocked + deferred share that excludes the pair
        probe_after_s: 300      # then one probe tries the pair again

With `ses_quota`, SES's rate is its account's MaxSendRate unless `rates.ses` is lower
(pipeline.prepare.ses_quota).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PROVIDER_NAMES = ("ses", "sendgrid", "smtp")


class DomainSteeringSettings(BaseModel):
    """`steering.domains`: health per (provider, recipient domain group) and the exclusion it
    drives (pipeline.sending.mailbox_health). Over the last `window_s`, once a pair has at least
    `min_events` outcomes and at least `max_bad_share` of them are blocked or deferred, while
    another provider is not bad at that group, the pair is excluded: that group's mail goes to
    the others. After `probe_after_s` one email (a probe) tries the pair again; the exclusion
    ends when the probe is delivered, or when no block or deferral for it came back within
    `probe_wait_s`; a refused probe starts another `probe_after_s`."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = True
    window_s: Annotated[float, Field(gt=0)] = 600.0
    min_events: Annotated[int, Field(ge=1)] = 5
    max_bad_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    probe_after_s: Annotated[float, Field(gt=0)] = 300.0
    probe_wait_s: Annotated[float, Field(gt=0)] = 120.0
    max_events_per_pair: Annotated[int, Field(ge=10)] = 1000  # memory bound per pair


class SteeringSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    controls_poll_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    heartbeat_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    rates: dict[str, Annotated[float, Field(ge=0)]] = {}
    # SES's rate from its account (GetSendQuota: MaxSendRate), unless rates.ses is lower. Off by
    # default: emulators answer 1 email/s (pipeline.prepare.ses_quota).
    ses_quota: bool = False
    ses_quota_refresh_s: Annotated[float, Field(ge=1)] = 60.0  # never more than once a second
    # per recipient domain group: pipeline.sending.mailbox_health
    domains: DomainSteeringSettings = DomainSteeringSettings()

    def rate_for(self, provider: str) -> float:
        """The configured cluster-wide rate of `provider` in emails/s; 0: none configured."""
        return self.rates.get(provider, 0.0)
