"""Schedule records on the status table: `sched#<messageId>` (state `scheduled` and its
`send_at`), written when a scheduled email is queued and turned `cancelled` by
`DELETE /email/{id}/schedule`; a node holding or releasing the message drops a cancelled one
(pipeline.prepare.schedule). When a send is due: gomailpy.email.schedule."""

from __future__ import annotations

from dataclasses import dataclass

from gomailpy.store.items import ItemTable

SCHEDULE_PREFIX = "sched#"
# A schedule record outlives its send time by this much (then DynamoDB's TTL removes it).
KEEP_AFTER_DUE_S = 24 * 3600

SCHEDULED = "scheduled"
CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    message_id: str
    state: str  # SCHEDULED or CANCELLED
    send_at: float


class Schedules:
    """The `sched#<id>` records on the status table (see the module docstring)."""

    def __init__(self, table: ItemTable) -> None:
        self._table = table

    async def record(self, message_id: str, send_at: float) -> None:
        await self._table.put(
            SCHEDULE_PREFIX + message_id,
            {"state": SCHEDULED, "send_at": send_at},
            expires_at=send_at + KEEP_AFTER_DUE_S,
        )

    async def get(self, message_id: str) -> ScheduleRecord | None:
        item = await self._table.get(SCHEDULE_PREFIX + message_id)
        if item is None:
            return None
        return ScheduleRecord(message_id, str(item.get("state")), float(item.get("send_at", 0)))

    async def cancel(self, record: ScheduleRecord) -> None:
        await self._table.put(
            SCHEDULE_PREFIX + record.message_id,
            {"state": CANCELLED, "send_at": record.send_at},
            expires_at=record.send_at + KEEP_AFTER_DUE_S,
        )

    async def is_cancelled(self, message_id: str) -> bool:
        record = await self.get(message_id)
        return record is not None and record.state == CANCELLED
