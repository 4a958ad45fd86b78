"""The delivery store for one process (API and pipeline in the same process, tests)."""

from __future__ import annotations

import dataclasses
import time

from gomailpy.deliveries.base import (
    MAX_REASON,
    Claim,
    ClaimResult,
    Clock,
    DeliveryRecord,
    DeliveryState,
    IdempotencyRecord,
    iso_time,
    timeline_entry,
)
from gomailpy.settings import StatusSettings


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

    def _upsert(self, message_id: str, now: float) -> DeliveryRecord:
        record = self._live(message_id)
        if record is None:
            record = self._records[message_id] = DeliveryRecord(
                message_id, DeliveryState.QUEUED, iso_time(now), iso_time(now)
            )
        record.updated_at = iso_time(now)
        record.expires_at = now + self._settings.ttl_s
        return record

    async def record_queued(self, message_id: str, at: float | None = None) -> None:
        now = self._clock()
        fresh = self._live(message_id) is None
        record = self._upsert(message_id, now)
        when = now if at is None else at
        if fresh:
            record.created_at = iso_time(when)
        record.timeline.insert(0, timeline_entry(DeliveryState.QUEUED, when))

    async def claim(self, message_id: str, *, attempt: int, lease_s: float) -> ClaimResult:
        now = self._clock()
        record = self._live(message_id)
        if record is not None:
            if record.state is DeliveryState.SENT:
                return ClaimResult(Claim.ALREADY_SENT)
            if record.state is DeliveryState.SENDING and record.lease_until >= now:
                return ClaimResult(Claim.BUSY, record.lease_until - now)
        record = self._upsert(message_id, now)
        record.state = DeliveryState.SENDING
        record.attempt = attempt
        record.lease_until = now + lease_s
        record.timeline.append(timeline_entry(DeliveryState.SENDING, now, attempt=attempt))
        return ClaimResult(Claim.CLAIMED)

    async def mark_sent(self, message_id: str, provider: str, provider_message_id: str) -> None:
        now = self._clock()
        record = self._upsert(message_id, now)
        record.state = DeliveryState.SENT
        record.provider, record.provider_message_id = provider, provider_message_id
        record.reason = None
        record.lease_until = 0.0
        record.timeline.append(
            timeline_entry(
                DeliveryState.SENT, now, provider=provider, providerMessageId=provider_message_id
            )
        )

    async def _mark(
        self, message_id: str, state: DeliveryState, reason: str, attempt: int | None
    ) -> None:
        now = self._clock()
        existing = self._live(message_id)
        if existing is not None and existing.state is DeliveryState.SENT:
            return  # a late outcome never undoes a send
        record = self._upsert(message_id, now)
        record.state = state
        record.reason = reason[:MAX_REASON]
        record.lease_until = 0.0
        if attempt is not None:
            record.attempt = attempt
        record.timeline.append(timeline_entry(state, now, attempt=attempt, reason=record.reason))

    async def mark_retrying(self, message_id: str, attempt: int, reason: str) -> None:
        await self._mark(message_id, DeliveryState.RETRYING, reason, attempt)

    async def mark_failed(self, message_id: str, reason: str) -> None:
        await self._mark(message_id, DeliveryState.FAILED, reason, None)

    async def get(self, message_id: str) -> DeliveryRecord | None:
        record = self._live(message_id)
        if record is None:
            return None
        return dataclasses.replace(record, timeline=[dict(e) for e in record.timeline])

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
