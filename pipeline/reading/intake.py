"""Intake: turn received messages into items ready to send, and plan what becomes of the rest.

    items, plan = await intake.take(messages, report)   # plan: for settlement.apply

Each message goes through three steps:
- decode (gomailpy.queues.claim_check.decode_message): an envelope, or a reference to one in S3. A
  body that is neither is unreadable: dead-lettered.
- look its record up in the delivery store (gomailpy.store.deliveries): one batched read for the
  whole batch. Already sent (a node died, or its delete failed, after the send): deleted without
  sending again. The same email already in this node's hands (it was queued twice): released
  until that send is over. Another node's open intent (`sending`: that node may be frozen with
  a send the provider accepted, or dead; gomailpy.store.deliveries.intents): held, released until
  its lease end plus `pipeline.in_doubt_grace_s`; past that, sent *in doubt*. The store
  unreachable, or status off: sent anyway (the old at-least-once behaviour, rather than
  stopping the mail).
- load a reference from S3 (gomailpy.queues.claim_check), after the look-up so that only the node
  that sends pays for it. S3 failing: released for a retry. The object gone or unreadable:
  dead-lettered.

Just before the sends start, `intend` writes the intents of what is about to go (one batched
write, like the outcomes after it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence

from gomailpy import metrics
from gomailpy.config.settings import Settings
from gomailpy.email.envelope import Envelope
from gomailpy.errors import ClaimCheckError, EnvelopeError, StoreError
from gomailpy.queues.claim_check import ClaimCheck, ReferenceEnvelope, decode_message
from gomailpy.queues.deadletter import FailureKind
from gomailpy.queues.sqs import ReceivedMessage
from gomailpy.store.deliveries import (
    DeliveryRecord,
    DeliveryState,
    DeliveryStore,
    Verdict,
    after_attempt,
    decide,
    intent_record,
)
from pipeline.sending.retry import configured_retry_delay_s
from pipeline.sending.settlement import Item, IterationReport, Plan, write_records

log = logging.getLogger("gomailpy.pipeline")

Body = Envelope | ReferenceEnvelope
MAX_HOLD_S = 43200  # SQS's longest visibility timeout


class Intake:
    def __init__(
        self,
        settings: Settings,
        *,
        status: DeliveryStore | None = None,
        claim_check: ClaimCheck | None = None,
        node_id: str | None = None,
    ) -> None:
        self._settings = settings
        self._status = status
        self._claim_check = claim_check
        self.node_id = node_id or uuid.uuid4().hex[:12]  # this process, in its intents
        grace_s = settings.pipeline.in_doubt_grace_s
        self.grace_s = settings.queues.visibility_timeout_s if grace_s is None else grace_s
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
        in_doubt: set[str] = set()
        for message, body in decoded:
            extra = {"message_id": body.id}
            record = records.get(body.id)
            decision = decide(record, node=self.node_id, now=taken_at, grace_s=self.grace_s)
            if decision.verdict is Verdict.DELETE:
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
            elif decision.verdict is Verdict.HOLD:
                delay = min(math.ceil(decision.hold_s), MAX_HOLD_S)
                plan.release(message, delay)
                report.held += 1
                log.info(
                    "email %s: node %s said it was sending it and has not said how that ended;"
                    " held, back in %d s",
                    body.id,
                    decision.node,
                    delay,
                    extra=extra,
                )
            else:
                if decision.verdict is Verdict.SEND_IN_DOUBT:
                    in_doubt.add(body.id)
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
                items.append(
                    Item(message, result, reference, record, taken_at, body.id in in_doubt)
                )
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

    async def intend(
        self, items: Sequence[Item], lease_until: Callable[[ReceivedMessage], float | None]
    ) -> None:
        """Record that this node is about to send `items` (one batched write), each with its
        lease's end (epoch s; None: the lease is gone, the send will not start). A failed write
        is logged and the sends go ahead (at-least-once, as with status off)."""
        now = time.time()
        intents: list[tuple[Item, DeliveryRecord]] = []
        for item in items:
            until = lease_until(item.message)
            if until is None:
                continue
            if item.in_doubt:
                message_id = item.envelope.id
                metrics.SENDS_IN_DOUBT.inc()
                log.warning(
                    "email %s: sending in doubt: another node said it was sending it and never"
                    " said how that ended (it died, or stalled past %g s); it may arrive twice",
                    message_id,
                    self.grace_s,
                    extra={"message_id": message_id},
                )
            if self._status is None:
                continue
            record = intent_record(
                item.record,
                item.envelope.id,
                queued_at=item.envelope.created_at.timestamp(),
                node=self.node_id,
                attempt=item.message.receive_count,
                lease_until=until,
                now=now,
                in_doubt=item.in_doubt,
            )
            if record is not None:
                intents.append((item, record))
        if self._status is None or not intents:
            return
        try:
            await self._status.put_many([record for _, record in intents])
        except StoreError as exc:
            # Fail open, as for reads: without its intent a stall here may mean a second send.
            log.warning("could not record %d intent(s) (%s); sending anyway", len(intents), exc)
            return
        for item, record in intents:
            item.record = record
            item.intended = True

    async def _read(self, message_ids: list[str]) -> dict[str, DeliveryRecord]:
        if self._status is None or not message_ids:
            return {}
        try:
            return await self._status.get_many(message_ids)
        except StoreError as exc:
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

