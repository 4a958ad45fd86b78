"""Scheduled sends on the API's side: recording them, and `DELETE /email/{messageId}/schedule`.

A scheduled email is queued at once and held on the queue by the pipeline (gomailpy.email.schedule).
When the status table is on, the API also writes its schedule record, which is what a cancel
turns into `cancelled` (and the delivery record into `failed`, so GET /email/{id} says so); a
node holding the message drops it at its next hop. `DELETE /email/{X-Message-Id}/schedule`
cancels every part of a v3 request (`<X-Message-Id>_0`, `_1`, ...).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from api.responses import error_response
from api.views.delivery import DELIVERY_STORE
from api.views.templates import ITEM_TABLE
from gomailpy.email.envelope import Envelope
from gomailpy.email.schedule import CANCELLED_REASON
from gomailpy.email.v3 import part_id
from gomailpy.errors import StoreError
from gomailpy.store.deliveries import DeliveryRecord, DeliveryState
from gomailpy.store.deliveries.records import after_attempt
from gomailpy.store.schedules import CANCELLED, ScheduleRecord, Schedules

logger = logging.getLogger(__name__)

SCHEDULES_OFF = (
    "Cancelling needs the status table, which is off on this server (status.backend is none)"
)
MAX_PARTS = 1000
FAILED = DeliveryState.FAILED


def cancelled_record(message_id: str, now: float, queued_at: float) -> DeliveryRecord:
    record = after_attempt(
        None,
        message_id,
        queued_at=min(now, queued_at),
        state=FAILED,
        now=now,
        attempt=0,
        reason=CANCELLED_REASON,
    )
    assert record is not None  # only a record already `sent` gives None
    return record


async def record_schedule(app: web.Application, envelope: Envelope) -> None:
    """Write the schedule record of a queued scheduled email (when the table is on). A failed
    write is logged: the email is queued and will be sent; only cancelling it is lost."""
    table = app.get(ITEM_TABLE)
    if table is None or envelope.send_at is None:
        return
    try:
        await Schedules(table).record(envelope.id, envelope.send_at)
    except StoreError as exc:
        logger.warning("schedule not recorded: %s", exc, extra={"message_id": envelope.id})


async def _parts(schedules: Schedules, message_id: str) -> list[ScheduleRecord]:
    """The schedule records `message_id` names: its own, or those of a v3 request's parts."""
    record = await schedules.get(message_id)
    if record is not None:
        return [record]
    parts: list[ScheduleRecord] = []
    while len(parts) < MAX_PARTS:
        part = await schedules.get(part_id(message_id, len(parts)))
        if part is None:
            break
        parts.append(part)
    return parts


async def cancel_schedule(request: web.Request) -> web.Response:
    table = request.app.get(ITEM_TABLE)
    if table is None:
        return error_response(501, SCHEDULES_OFF)
    schedules = Schedules(table)
    message_id = request.match_info["messageId"]
    parts = await _parts(schedules, message_id)
    if not parts:
        return error_response(404, f"No scheduled email with messageId {message_id!r}")
    now = time.time()
    due = [part.message_id for part in parts if part.state != CANCELLED and part.send_at <= now]
    if due:
        return error_response(409, f"Already due, so no longer cancellable: {', '.join(due)}")
    store = request.app.get(DELIVERY_STORE)
    records = await store.get_many([p.message_id for p in parts]) if store is not None else {}
    taken = [f"{i} ({r.state.value})" for i, r in records.items() if r.state is not FAILED]
    if taken:
        return error_response(409, f"Already tried, so no longer cancellable: {', '.join(taken)}")
    await asyncio.gather(*(schedules.cancel(part) for part in parts))
    if store is not None:  # so that GET /email/{id} says what became of it
        await store.put_many(
            [cancelled_record(part.message_id, now, part.send_at) for part in parts]
        )
    ids = [part.message_id for part in parts]
    return web.json_response({"messageId": message_id, "state": CANCELLED, "cancelled": ids})


def add_schedule_routes(app: web.Application) -> None:
    app.router.add_delete("/email/{messageId}/schedule", cancel_schedule, name="cancel-schedule")
