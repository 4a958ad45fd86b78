"""The unsubscribe headers, a step of the node's batch (pipeline.steps): each email that asks
for them (or whose sender the configuration names, `bulk.unsubscribe_senders`) gets
`List-Unsubscribe` and `List-Unsubscribe-Post` (gomailpy.bulk.headers) before the split, so
every provider sends the same headers, and the SMTP path's DKIM signature covers them.
After rendering (pipeline.steps): no token is signed for a dropped email.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gomailpy.bulk.headers import with_unsubscribe
from gomailpy.config.settings import Settings
from pipeline.sending.settlement import IterationReport, Taken


class UnsubscribeHeaders:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._bulk = settings.bulk
        events = settings.events
        self._bounce_domain = events.bounce_domain if events.enabled else None
        self._clock = clock

    async def __call__(self, taken: Taken, report: IterationReport) -> Taken:
        if not self._bulk.enabled:
            return taken
        now = self._clock()
        for item in taken[0]:
            item.envelope = with_unsubscribe(item.envelope, self._bulk, self._bounce_domain, now)
        return taken
