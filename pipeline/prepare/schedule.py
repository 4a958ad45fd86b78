"""Holding scheduled sends on the queue until they are due (gomailpy.email.schedule): the first
of the steps before sending (pipeline.steps), right after intake.

An item whose envelope has `send_at` still ahead goes back on its queue as a new message, with
the same body and attributes and `DelaySeconds = min(remaining, 900)`, and only once SQS has
accepted that copy is the received message deleted. Why this way:
- not ChangeMessageVisibility: every receive counts towards `queues.max_receive_count`, after
  which SQS moves the message to the dead-letter queue (72 h is up to 288 hops of 15 min); a
  visibility timeout cannot reach past 12 h from the receive; and the retention period runs
  from the first send. A new message starts all three afresh.
- send first, delete second: if the send fails, the received message is released for another
  try and keeps its place; nothing is lost. If the node dies between the two, the email is held
  twice: a duplicate on the queue, never a loss, and the delivery store's record (`sent`) makes
  the later copy a no-op for nodes that read it, as for any redelivery.
A claim-checked email re-sends its small reference; its S3 object stays until it is sent.

Before holding, a scheduled email is checked against its schedule record: cancelled
(`DELETE /email/{id}/schedule`) means deleted, with its S3 object if any, and never sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gomailpy.email.schedule import next_hop_s
from gomailpy.errors import QueueError, StoreError
from gomailpy.queues.sqs import QueueClient
from gomailpy.store.items import ItemTable
from gomailpy.store.schedules import Schedules
from pipeline.sending.settlement import Item, IterationReport, Plan, Taken

log = logging.getLogger("gomailpy.pipeline")

RETRY_HOLD_S = 5  # a copy SQS refused: the received message is back this soon for another try


class ScheduleHold:
    """The step that holds not-yet-due items on their queue (see the module docstring)."""

    def __init__(
        self, queues: QueueClient, table: ItemTable | None, clock: Callable[[], float] = time.time
    ) -> None:
        self._queues = queues
        self._schedules = Schedules(table) if table is not None else None
        self._clock = clock

    async def __call__(self, taken: Taken, report: IterationReport) -> Taken:
        items, plan = taken
        scheduled = [item for item in items if item.envelope.send_at is not None]
        if not scheduled:
            return taken
        cancelled = await asyncio.gather(*(self._cancelled(item) for item in scheduled))
        held: set[int] = set()
        for item, is_cancelled in zip(scheduled, cancelled, strict=True):
            if is_cancelled:
                plan.delete(item.message, item.reference)
                held.add(id(item))
                log.info("email %s was cancelled: dropped", item.envelope.id)
                continue
            assert item.envelope.send_at is not None
            hop = next_hop_s(item.envelope.send_at, self._clock())
            if hop > 0:
                await self._hold(item, hop, plan)
                held.add(id(item))
        return [item for item in items if id(item) not in held], plan

    async def _cancelled(self, item: Item) -> bool:
        if self._schedules is None:
            return False
        try:
            return await self._schedules.is_cancelled(item.envelope.id)
        except StoreError as exc:
            # Unknown: hold or send it as if not cancelled (the table is only for cancelling).
            log.warning("could not read the schedule of %s: %s", item.envelope.id, exc)
            return False

    async def _hold(self, item: Item, hop_s: int, plan: Plan) -> None:
        message = item.message
        try:
            await self._queues.send(
                message.queue_url, message.body, delay_s=hop_s, attributes=message.attributes
            )
        except QueueError as exc:
            log.warning("could not hold email %s (%s): retrying", item.envelope.id, exc)
            plan.release(message, RETRY_HOLD_S)
            return
        # Deleted without its S3 object: the copy just sent refers to the same one.
        plan.delete(message)
        log.debug("email %s held for %d s", item.envelope.id, hop_s)
