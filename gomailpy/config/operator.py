"""Settings of the operator page (`operator:`, api.views.overview and webclient/operator/).

    operator:
      node_admin_urls: [http://10.0.1.5:9100]   # pipeline nodes' admin servers (/status, /metrics)
      local_controls: false   # true: the controls work without an API key (`gomail up` only)

The API reads each node's /status and /metrics for the page's provider health and sends, with a
short timeout: a node that does not answer is shown as such, never waited for.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class OperatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    node_admin_urls: list[str] = []
    # The admin API refuses changes without an API key (api.views.controls): an open API must not
    # steer. `gomail up` has no keys and runs on loopback only, so it turns this on for its page.
    local_controls: bool = False
