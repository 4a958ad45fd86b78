"""The delivery store for one process (API and pipeline in the same process, tests)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from gomailpy.config.settings import StatusSettings
from gomailpy.store.deliveries.base import Clock, DeliveryRecord, DeliveryState, IdempotencyRecord
from gomailpy.store.deliveries.records import failed_record, queued_record


class MemoryDeliveryStore:
    """The store for one process (API and pipeline in the same process, tests). No awaits inside
    an update, so every update is atomic on the event loop, like a conditional write."""

    def __init__(self, settings: StatusSettings, *, clock: Clock = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._records: dict[str, DeliveryRecord] = {}
        self._keys: dict[str, tuple[IdempotencyRecord, float]] = {}

    def _live(self, message_id: str) -> DeliveryRecord | None:
        record = self._records.get(message_id)
        if record is not None and record.expires_at < self._clock():
            del self._records[message_id]
            return None
        return record

    async def get(self, message_id: str) -> DeliveryRecord | None:
        record = self._live(message_id)
        if record is None:
            return None
        return dataclasses.replace(record, timeline=[dict(e) for e in record.timeline])

    async def get_many(self, message_ids: Sequence[str]) -> dict[str, DeliveryRecord]:
        found = {message_id: await self.get(message_id) for message_id in set(message_ids)}
        return {message_id: record for message_id, record in found.items() if record is not None}

    async def put_many(self, records: Sequence[DeliveryRecord]) -> None:
        expires_at = self._clock() + self._settings.ttl_s
        for record in records:
            self._records[record.message_id] = dataclasses.replace(
                record, timeline=[dict(e) for e in record.timeline], expires_at=expires_at
            )

    async def record_queued(self, message_id: str, at: float | None = None) -> None:
        if self._live(message_id) is None:
            await self.put_many([queued_record(message_id, self._clock(), at)])

    async def mark_failed(self, message_id: str, reason: str) -> None:
        previous = self._live(message_id)
        if previous is not None and previous.state is DeliveryState.SENT:
            return
        record = failed_record(previous, message_id, reason, self._clock())
        if record is not None:
            await self.put_many([record])

    async def reserve_key(
        self, key: str, body_hash: str, message_id: str
    ) -> IdempotencyRecord | None:
        now = self._clock()
        held = self._keys.get(key)
        if held is not None and held[1] >= now:
            return held[0]
        record = IdempotencyRecord(key, body_hash, message_id, None)
        self._keys[key] = (record, now + self._settings.idempotency_window_s)
        return None

    async def complete_key(self, key: str, response: str) -> None:
        held = self._keys.get(key)
        if held is not None:
            record, expires = held
            self._keys[key] = (
                IdempotencyRecord(key, record.body_hash, record.message_id, response),
                expires,
            )

    async def release_key(self, key: str) -> None:
        held = self._keys.get(key)
        if held is not None and held[0].response is None:
            del self._keys[key]
