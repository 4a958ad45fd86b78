"""Intake: turn received messages into items ready to send, and plan what becomes of the rest.

    items, plan = await intake.take(messages, report)   # plan: for settlement.apply

Each message goes through three steps:
- decode (gomailpy.claim_check.decode_message): an envelope, or a reference to one in S3. A body
  that is neither is unreadable: dead-lettered.
- look its record up in the delivery store (gomailpy.deliveries): one batched read for the whole
  batch. Already sent (a node died, or its delete failed, after the send): deleted without
  sending again. The same email already in this node's hands (it was queued twice): released
  until that send is over. The store unreachable: sent anyway (the old at-least-once
  behaviour, rather than stopping the mail). Another node cannot be sending it meanwhile: SQS
  gives a message to one node at a time, and a node's lease outlasts its sends (pipeline.lease).
- load a reference from S3 (gomailpy.claim_check), after the look-up so that only the node that
  sends pays for it. S3 failing: released for a retry. The object gone or unreadable:
  dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Sequence

from gomailpy.claim_check import ClaimCheck, ReferenceEnvelope, decode_message
from gomailpy.deadletter import FailureKind
from gomailpy.deliveries import DeliveryRecord, DeliveryState, DeliveryStore, after_attempt
from gomailpy.envelope import Envelope
from gomailpy.errors import ClaimCheckError, DeliveryStoreError, EnvelopeError
from gomailpy.queue import ReceivedMessage
from gomailpy.settings import Settings
from pipeline.retry import configured_retry_delay_s
from pipeline.settlement import Item, IterationReport, Plan, write_records

log = logging.getLogger("gomailpy.pipeline")

Body = Envelope | ReferenceEnvelope


class Intake:
    def __init__(
        self,
        settings: Settings,
        *,
        status: DeliveryStore | None = None,
        claim_check: ClaimCheck | None = None,
    ) -> None:
        self._settings = settings
        self._status = status
        self._claim_check = claim_check
        self._taken: dict[str, str] = {}  # email id -> receipt handle, while this node has it

    def done(self, messages: Iterable[ReceivedMessage]) -> None:
        """Forget the emails of a settled batch."""
        handles = {m.receipt_handle for m in messages}
        for message_id, handle in list(self._taken.items()):
            if handle in handles:
                del self._taken[message_id]

    async def take(
        self, messages: Sequence[ReceivedMessage], report: IterationReport
    ) -> tuple[list[Item], Plan]:
        """The items to send now, and a plan for every other message."""
        plan = Plan()
        decoded: list[tuple[ReceivedMessage, Body]] = []
        for message in messages:
            try:
                decoded.append((message, decode_message(message.body)))
            except EnvelopeError as exc:
                plan.dead_letter(message, FailureKind.UNREADABLE, str(exc))
        records = await self._read([body.id for _, body in decoded])
        taken_at = time.time()
        claimed: list[tuple[ReceivedMessage, Body]] = []
        previous: dict[str, DeliveryRecord | None] = {}
        for message, body in decoded:
            extra = {"message_id": body.id}
            record = records.get(body.id)
            if record is not None and record.state is DeliveryState.SENT:
                plan.delete(message, body if isinstance(body, ReferenceEnvelope) else None)
                report.already_sent += 1
                log.warning(
                    "email %s was already sent: deleting its message without sending again",
                    body.id,
                    extra=extra,
                )
            elif body.id in self._taken:
                delay = math.ceil(self._settings.pipeline.send_timeout_s) + 1
                plan.release(message, delay)
                report.retried += 1
                log.info("email %s is queued twice; back in %d s", body.id, delay, extra=extra)
            else:
                self._taken[body.id] = message.receipt_handle
                previous[body.id] = record
                claimed.append((message, body))
        loaded = await asyncio.gather(*(self._load(body) for _, body in claimed))
        items: list[Item] = []
        outcomes: list[DeliveryRecord | None] = []
        for (message, body), result in zip(claimed, loaded, strict=True):
            record = previous[body.id]
            if isinstance(result, Envelope):
                reference = body if isinstance(body, ReferenceEnvelope) else None
                items.append(Item(message, result, reference, record, taken_at))
                continue
            retry = isinstance(result, ClaimCheckError) and not result.missing
            outcomes.append(
                after_attempt(
                    record,
                    body.id,
                    queued_at=body.created_at.timestamp(),
                    state=DeliveryState.RETRYING if retry else DeliveryState.FAILED,
                    now=time.time(),
                    attempt=message.receive_count,
                    reason=str(result),
                )
            )
            if isinstance(result, ClaimCheckError) and retry:
                self._retry_load(message, body.id, result, plan, report)
            else:
                plan.dead_letter(message, FailureKind.UNREADABLE, str(result), message_id=body.id)
        if self._status is not None:
            await write_records(self._status, [r for r in outcomes if r is not None])
        return items, plan

    async def _read(self, message_ids: list[str]) -> dict[str, DeliveryRecord]:
        if self._status is None or not message_ids:
            return {}
        try:
            return await self._status.get_many(message_ids)
        except DeliveryStoreError as exc:
            # Fail open: an unreachable delivery store must not stop the mail. The price is the
            # old at-least-once behaviour for these messages.
            log.warning(
                "could not read %d delivery records (%s); sending anyway", len(message_ids), exc
            )
            return {}

    async def _load(self, body: Body) -> Envelope | Exception:
        if isinstance(body, Envelope):
            return body
        if self._claim_check is None:
            return EnvelopeError(
                "a claim-check reference, but this node has no claim_check.bucket configured"
            )
        try:
            return await self._claim_check.load(body)
        except (ClaimCheckError, EnvelopeError) as exc:
            return exc

    def _retry_load(
        self,
        message: ReceivedMessage,
        message_id: str,
        error: ClaimCheckError,
        plan: Plan,
        report: IterationReport,
    ) -> None:
        """S3 did not answer: the object is (probably) there, so try again later."""
        delay = configured_retry_delay_s(message.receive_count, self._settings.pipeline)
        plan.release(message, delay)
        report.retried += 1
        log.warning(
            "email %s: %s; retrying in %d s",
            message_id,
            error,
            delay,
            extra={"message_id": message_id},
        )

