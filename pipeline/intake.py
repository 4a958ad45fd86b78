"""Intake: turn received messages into items ready to send, and plan what becomes of the rest.

    items, plan = await intake.take(messages, report)   # plan: for settlement.apply

Each message goes through three steps:
- decode (gomailpy.claim_check.decode_message): an envelope, or a reference to one in S3. A body
  that is neither is unreadable: dead-lettered.
- claim it in the delivery store (gomailpy.deliveries), by messageId. Already sent (a node died,
  or its delete failed, after the send): deleted without sending again. Another node is sending
  it and its lease is running: released until the lease ends. The store unreachable: sent
  anyway (the old at-least-once behaviour, rather than stopping the mail).
- load a reference from S3 (gomailpy.claim_check), after the claim so that only the node that
  sends pays for it. S3 failing: released for a retry. The object gone or unreadable:
  dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence

from gomailpy.claim_check import ClaimCheck, ReferenceEnvelope, decode_message
from gomailpy.deadletter import FailureKind
from gomailpy.deliveries import Claim, ClaimResult, DeliveryStore
from gomailpy.envelope import Envelope
from gomailpy.errors import ClaimCheckError, DeliveryStoreError, EnvelopeError
from gomailpy.queue import ReceivedMessage
from gomailpy.settings import Settings
from pipeline.retry import configured_retry_delay_s
from pipeline.settlement import Item, IterationReport, Plan, record_status

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
        claims = await asyncio.gather(*(self._claim(m, body.id) for m, body in decoded))
        claimed: list[tuple[ReceivedMessage, Body]] = []
        for (message, body), claim in zip(decoded, claims, strict=True):
            extra = {"message_id": body.id}
            if claim.claim is Claim.ALREADY_SENT:
                plan.delete(message, body if isinstance(body, ReferenceEnvelope) else None)
                report.already_sent += 1
                log.warning(
                    "email %s was already sent: deleting its message without sending again",
                    body.id,
                    extra=extra,
                )
            elif claim.claim is Claim.BUSY:
                delay = max(1, math.ceil(claim.retry_in_s))
                plan.release(message, delay)
                report.retried += 1
                log.info(
                    "email %s is being sent by another node; back in %d s",
                    body.id,
                    delay,
                    extra=extra,
                )
            else:
                claimed.append((message, body))
        loaded = await asyncio.gather(*(self._load(body) for _, body in claimed))
        items: list[Item] = []
        for (message, body), result in zip(claimed, loaded, strict=True):
            if isinstance(result, Envelope):
                reference = body if isinstance(body, ReferenceEnvelope) else None
                items.append(Item(message, result, reference))
            elif isinstance(result, ClaimCheckError) and not result.missing:
                await self._retry_load(message, body.id, result, plan, report)
            else:
                if self._status is not None:
                    await record_status(body.id, self._status.mark_failed(body.id, str(result)))
                plan.dead_letter(message, FailureKind.UNREADABLE, str(result), message_id=body.id)
        return items, plan

    async def _claim(self, message: ReceivedMessage, message_id: str) -> ClaimResult:
        if self._status is None:
            return ClaimResult(Claim.CLAIMED)
        try:
            return await self._status.claim(
                message_id,
                attempt=message.receive_count,
                lease_s=self._settings.queues.visibility_timeout_s,
            )
        except DeliveryStoreError as exc:
            # Fail open: an unreachable delivery store must not stop the mail. The price is the
            # old at-least-once behaviour for this message.
            log.warning(
                "could not claim email %s (%s); sending anyway",
                message_id,
                exc,
                extra={"message_id": message_id},
            )
            return ClaimResult(Claim.CLAIMED)

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

    async def _retry_load(
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
        if self._status is not None:
            await record_status(
                message_id,
                self._status.mark_retrying(message_id, message.receive_count, str(error)),
            )
