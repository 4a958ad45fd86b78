"""Settings of regional queues (`regions:`): which region each queue is in, where the API puts mail
and which regions' queues a pipeline node reads.

    regions:
      queues: {gomailpy-eu-1: eu-west-1, gomailpy-us-1: us-east-1}   # queue name -> region
      home: eu-west-1          # the API's home region (None: no regional routing)
      header: X-Gomail-Region  # a request naming a configured region is routed as from there
      spill_depth: 1000        # the home region's depth beyond which mail goes to another region
      pipeline: [eu-west-1]    # the regions whose queues a pipeline node reads; []: every queue

A queue not listed under `queues` is in no region: never home to anyone, but a place to spill to.
With no `queues` (the default) routing is what it always was: every queue alike
(api.enqueue.queue_choice). The API's choice itself is api.enqueue.queue_choice.regional_order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator


def _name(entry: str) -> str:
    # gomailpy.queues.sqs.queue_name, which cannot be imported here (gomailpy.queues.sqs imports
    # settings).
    return entry.rstrip("/").rsplit("/", 1)[-1]


class RegionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    queues: dict[str, Annotated[str, Field(min_length=1)]] = {}  # queue name (or URL) -> region
    home: str | None = None
    header: Annotated[str, Field(min_length=1)] | None = None
    spill_depth: Annotated[int, Field(ge=0)] = 1000
    pipeline: list[str] = []

    @model_validator(mode="after")
    def _regions_known(self) -> RegionSettings:
        known = set(self.queues.values())
        named = [self.home, *self.pipeline]
        unknown = [region for region in named if region is not None and region not in known]
        if unknown:
            raise ValueError(
                f"regions: {', '.join(sorted(set(unknown)))}: no queue is in that region"
                f" (regions.queues names: {', '.join(sorted(known)) or 'none'})"
            )
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.queues)

    def region_of(self, entry: str) -> str | None:
        """The region of a configured queue entry (a name or a URL), None when untagged."""
        return self.queues.get(entry) or self.queues.get(_name(entry))

    def pinned(self, entries: Sequence[str]) -> list[str]:
        """The entries a pipeline node reads: those in `pipeline`'s regions, or all of them."""
        if not self.pipeline:
            return list(entries)
        return [entry for entry in entries if self.region_of(entry) in self.pipeline]
