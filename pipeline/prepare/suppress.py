"""The last check before sending: drop the recipients on the suppression list.

    step = RecipientScreen(suppression, outcomes=outcomes, status=status)   # pipeline.steps
    items, plan = await step((items, plan), report)

For a whole batch at once, one read of the suppression list (`SuppressionStore.lookup`: one
store call per 100 distinct addresses, never one per recipient). Then, per email:
- no recipient suppressed: sent as it is;
- some suppressed: sent to the others only, each dropped recipient recorded as a
  `dropped/suppressed` event (its outcome in `GET /email/{id}`);
- every recipient suppressed: never sent. Settled like a provider's permanent refusal: recorded
  `failed` with the reason, copied to the dead-letter queue with it (`gomail dlq list` says why;
  a redrive after an operator removed the address sends it), then deleted.

Recipients keep their roles: an email whose every `to` recipient is suppressed goes out with no
`to` (its copies say `To: undisclosed-recipients:;`, gomailpy.email.mime; SendGrid's are built by
gomailpy.providers.sendgrid). A Bcc recipient is never made To: every other Bcc recipient's
copy would name it.

An email of an unsubscribe group (`Envelope.bulk.group`) also drops the recipients who left that
group (`SuppressionStore.lookup_grouped`, one more read per batch, only when the batch has such
emails); another group's email still goes to them.

The list unreachable: the batch is sent unchecked (a warning), as the claim fails open: a
suppression store outage must not stop the mail.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

from gomailpy import metrics
from gomailpy.email.models import Address
from gomailpy.errors import StoreError
from gomailpy.events import Event, EventType, Subtype, iso, stable_id
from gomailpy.queues.deadletter import FailureKind
from gomailpy.store.deliveries import DeliveryRecord, DeliveryState, DeliveryStore, after_attempt
from gomailpy.store.events import EventStore
from gomailpy.store.suppressions import Suppression, SuppressionStore, address_key
from pipeline.sending.settlement import Item, IterationReport, Plan, Taken, write_records

log = logging.getLogger("gomailpy.pipeline")

class RecipientScreen:
    """Drops suppressed recipients from a batch (see the module's docstring)."""

    def __init__(
        self,
        suppression: SuppressionStore,
        *,
        outcomes: EventStore | None = None,
        status: DeliveryStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.suppression = suppression
        self._outcomes = outcomes
        self._status = status
        self._clock = clock
        self.emails = 0  # emails checked, for the cost per email (`suppression.calls / emails`)

    async def __call__(self, taken: Taken, report: IterationReport) -> Taken:
        items, plan = taken
        if not items:
            return taken
        self.emails += len(items)
        addresses = [a.email for item in items for a in item.envelope.email.recipients]
        pairs = [
            (group, a.email)
            for item in items
            if (group := _group(item)) is not None
            for a in item.envelope.email.recipients
        ]
        try:
            suppressed = await self.suppression.lookup(addresses)
            grouped = await self.suppression.lookup_grouped(pairs) if pairs else {}
        except StoreError as exc:
            log.warning("suppression list not read (%s): sending %d unchecked", exc, len(items))
            return taken
        if not suppressed and not grouped:
            return taken
        kept: list[Item] = []
        dropped: list[Event] = []
        failed: list[DeliveryRecord | None] = []  # records of the emails never sent
        for item in items:
            hits = _hits(item, suppressed, grouped)
            blocked = [a for a in item.envelope.email.recipients if address_key(a.email) in hits]
            if not blocked:
                kept.append(item)
                continue
            entries = [hits[address_key(a.email)] for a in blocked]
            dropped += [self._dropped(item, a, e) for a, e in zip(blocked, entries, strict=True)]
            metrics.RECIPIENTS_SUPPRESSED.inc(len(blocked))
            if len(blocked) < len(item.envelope.email.recipients):
                kept.append(_without(item, hits))
            else:
                failed.append(self._refuse(item, entries, plan))
        if self._status is not None:
            await write_records(self._status, [r for r in failed if r is not None])
        if dropped and self._outcomes is not None:
            try:
                await self._outcomes.record(dropped)
            except StoreError as exc:
                log.warning("dropped recipients not recorded: %s", exc)
        return kept, plan

    def _dropped(self, item: Item, address: Address, entry: Suppression) -> Event:
        message_id = item.envelope.id
        return Event(
            id=stable_id(message_id, address_key(address.email), "dropped"),
            message_id=message_id,
            recipient=address.email,
            provider="gomailpy",
            type=EventType.DROPPED,
            subtype=Subtype.SUPPRESSED.value,
            reason=entry.describe(),
            at=iso(self._clock()),
        )

    def _refuse(
        self, item: Item, entries: Sequence[Suppression], plan: Plan
    ) -> DeliveryRecord | None:
        """Plan the email's dead letter; return its delivery record, now failed."""
        message_id = item.envelope.id
        reason = "every recipient is suppressed: " + "; ".join(e.describe() for e in entries)
        metrics.EMAILS_SUPPRESSED.inc()
        plan.dead_letter(
            item.message,
            FailureKind.PERMANENT,
            reason,
            provider="gomailpy",
            message_id=message_id,
            reference=item.reference,
        )
        now = self._clock()
        return after_attempt(
            item.record,
            message_id,
            queued_at=item.envelope.created_at.timestamp(),
            state=DeliveryState.FAILED,
            now=now,
            attempt=item.message.receive_count,
            sending_at=item.taken_at or now,
            provider="gomailpy",
            reason=reason,
        )


def _group(item: Item) -> int | None:
    bulk = item.envelope.bulk
    return bulk.group if bulk is not None else None


def _hits(
    item: Item,
    suppressed: dict[str, Suppression],
    grouped: dict[tuple[int, str], Suppression],
) -> dict[str, Suppression]:
    """The entries that stop `item` by address: global ones, and its group's."""
    group = _group(item)
    if group is None or not grouped:
        return suppressed
    mine = {a: e for (g, a), e in grouped.items() if g == group}
    return {**mine, **suppressed} if mine else suppressed


def _without(item: Item, suppressed: dict[str, Suppression]) -> Item:
    """The item with its suppressed recipients taken out of to, cc and bcc."""
    email = item.envelope.email

    def keep(addresses: list[Address]) -> list[Address]:
        return [a for a in addresses if address_key(a.email) not in suppressed]

    update = {"to": keep(email.to), "cc": keep(email.cc), "bcc": keep(email.bcc)}
    trimmed = email.model_copy(update=update)
    envelope = item.envelope.model_copy(update={"email": trimmed})
    return dataclasses.replace(item, envelope=envelope)
