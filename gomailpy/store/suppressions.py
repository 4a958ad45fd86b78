"""One suppression list for every provider: addresses gomailpy no longer sends to.

The rules (`rule_for`), whichever provider reported the event:
- a hard bounce for a bad address (gomailpy.bounce_reasons: userunknown, hostunknown,
  hasmoved, notaccept, suppressed; or no reason where the provider judged it permanent), a
  complaint or an unsubscribe suppresses the address at once;
- soft bounces (full mailbox, transient trouble) suppress it only once
  `suppression.soft_bounce_limit` of them (distinct events) arrived within
  `suppression.soft_bounce_window_s` (Postal's rule: 18 within a week);
- a refusal of the *sender or the message* (a `blocked` event, or any bounce whose reason is a
  block, spam content, policy, DMARC, rate limits, ...) never suppresses, nor counts: the
  recipient's mailbox is fine; an auto-reply is no bounce at all;
- an operator adds (`manual`) and removes addresses (`gomail suppression`, `/suppressions`).
A suppression keeps its kind, reason and provider and when it was first and last seen. Removing
an address forgets its soft bounces too.

The pipeline reads the list just before sending, a whole batch's recipients at once
(`lookup`: one store call per 100 addresses), and drops suppressed recipients
(pipeline.prepare.suppress).

Unsubscribe groups (gomailpy.bulk.groups, SendGrid's `asm`): an `unsubscribed` event naming a
group (`raw.asm_group_id`, `group_of`) suppresses the address for that group only, an entry
with `group` set, kept apart from the global list; `lookup_grouped` reads those, and the
pipeline drops a recipient for an email of that group only (pipeline.prepare.suppress). Global
entries stay as they were.

Addresses are compared in lower case: providers treat them so, and a bounce reported as
`Bob@Example.org` must suppress `bob@example.org`.

Two implementations: `MemorySuppressionStore` here (one process) and `DynamoSuppressionStore`
(`gomailpy.store.suppressions_dynamodb`, shared by every node: `sup#<address>` items on the delivery
store's table).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from gomailpy.bounce_reasons import Category, category_of, classify
from gomailpy.config.feedback import SuppressionSettings
from gomailpy.events import Event, EventType, Subtype, epoch, iso

LOOKUP_BATCH = 100  # addresses per store call (DynamoDB's BatchGetItem limit)
MAX_REASON = 300
Clock = Callable[[], float]


class SuppressionKind(StrEnum):
    HARD_BOUNCE = "hard-bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    SOFT_BOUNCES = "soft-bounces"  # too many soft bounces within the window
    MANUAL = "manual"  # added by an operator


SOFT = "soft"  # `rule_for`'s answer for a soft bounce: counts toward the limit


def address_key(address: str) -> str:
    return address.strip().lower()


@dataclass(frozen=True, slots=True)
class Suppression:
    address: str
    kind: str  # a SuppressionKind value
    reason: str
    provider: str
    first_seen: str  # ISO 8601, UTC
    last_seen: str
    group: int | None = None  # an unsubscribe group's entry; None: suppressed for every email

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "address": self.address,
            "kind": self.kind,
            "reason": self.reason,
            "provider": self.provider,
            "firstSeen": self.first_seen,
            "lastSeen": self.last_seen,
        }
        if self.group is not None:
            shown["group"] = self.group
        return shown

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Suppression:
        return cls(
            address=address_key(str(data["address"])),
            kind=str(data.get("kind") or SuppressionKind.MANUAL.value),
            reason=str(data.get("reason") or "")[:MAX_REASON],
            provider=str(data.get("provider") or ""),
            first_seen=str(data.get("firstSeen") or data.get("lastSeen") or ""),
            last_seen=str(data.get("lastSeen") or data.get("firstSeen") or ""),
        )

    def describe(self) -> str:
        """Why mail to this address is not sent, in one line (dead letters, 422s, logs)."""
        at = f" at {self.provider}" if self.provider else ""
        because = f": {self.reason}" if self.reason else ""
        scope = f" for group {self.group}" if self.group is not None else ""
        return f"{self.address} is suppressed{scope} ({self.kind}{at}{because})"


def manual(address: str, reason: str, now: float, group: int | None = None) -> Suppression:
    """An operator's entry (for one unsubscribe group when `group` is set)."""
    return Suppression(
        address_key(address),
        SuppressionKind.MANUAL.value,
        reason[:MAX_REASON],
        "",
        iso(now),
        iso(now),
        group,
    )


def group_of(event: Event) -> int | None:
    """The unsubscribe group an `unsubscribed` event is about (`raw.asm_group_id`, SendGrid's
    field and gomailpy.bulk.hits'); None: a global unsubscribe, or another event."""
    if event.type is not EventType.UNSUBSCRIBED:
        return None
    value = event.raw.get("asm_group_id")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**32:
        return value
    return None


def rule_for(event: Event) -> SuppressionKind | str | None:
    """What `event` does to its recipient's entry: a kind that suppresses now, SOFT (counts
    toward the soft-bounce limit), or None (nothing)."""
    if not event.recipient:
        return None
    if event.type is EventType.BOUNCED:
        category = bounce_category(event)
        if category is Category.REFUSED:
            return None  # about the sender or the message: the address is fine
        if event.subtype == Subtype.HARD.value and category in (
            Category.ADDRESS,
            Category.UNDEFINED,
        ):
            return SuppressionKind.HARD_BOUNCE
        return SOFT
    if event.type is EventType.COMPLAINED:
        return SuppressionKind.COMPLAINT
    if event.type is EventType.UNSUBSCRIBED:
        return SuppressionKind.UNSUBSCRIBE
    return None


def bounce_category(event: Event) -> Category:
    """What a bounce is about: its reason's category, else (an event of an older version, or
    one whose reason is free text, as the SMTP provider's RCPT refusals) what its server's words
    say; `undefined` when neither says."""
    return category_of(event.reason) or classify(event.mta_response, event.status).category


def reason_of(event: Event) -> str:
    parts = [p for p in (event.subtype, event.reason, event.mta_response) if p]
    return "; ".join(parts)[:MAX_REASON] or event.type.value


def from_event(event: Event, kind: str, held: Suppression | None) -> Suppression:
    """The entry after `event` suppressed its recipient (first seen kept from `held`)."""
    assert event.recipient is not None
    first = held.first_seen if held is not None and held.first_seen < event.at else event.at
    last = held.last_seen if held is not None and held.last_seen > event.at else event.at
    return Suppression(
        address_key(event.recipient),
        str(kind),
        reason_of(event),
        event.provider,
        first,
        last,
        group_of(event),
    )


class SuppressionStore(Protocol):
    calls: int  # store round trips made by `lookup` (the pipeline's cost per email)

    async def lookup(self, addresses: Sequence[str]) -> dict[str, Suppression]:
        """The suppressed ones among `addresses`, by lower-cased address; one store call per
        LOOKUP_BATCH addresses."""
        ...

    async def apply(self, events: Sequence[Event]) -> list[Suppression]:
        """Apply the rules to `events` (idempotent: the same event again changes nothing that
        matters); return the entries they made or refreshed."""
        ...

    async def lookup_grouped(
        self, pairs: Sequence[tuple[int, str]]
    ) -> dict[tuple[int, str], Suppression]:
        """The (group, lower-cased address) pairs among `pairs` suppressed for their group."""
        ...

    async def get(self, address: str, group: int | None = None) -> Suppression | None: ...

    async def put(self, entry: Suppression) -> None: ...

    async def remove(self, address: str, group: int | None = None) -> bool:
        """Forget an address (and its soft bounces), or its entry of `group`; False if it was
        not suppressed."""
        ...

    async def page(
        self, cursor: str | None = None, limit: int = 100
    ) -> tuple[list[Suppression], str | None]:
        """Up to `limit` entries after `cursor` (an address), and the cursor of the next page."""
        ...


class MemorySuppressionStore:
    """The suppression list of one process (tests, a single-process deployment)."""

    def __init__(self, settings: SuppressionSettings, *, clock: Clock = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._entries: dict[str, Suppression] = {}
        self._grouped: dict[tuple[int, str], Suppression] = {}
        self._soft: dict[str, dict[str, float]] = {}  # address -> soft bounce event id -> time
        self.calls = 0

    async def lookup(self, addresses: Sequence[str]) -> dict[str, Suppression]:
        keys = sorted({address_key(a) for a in addresses})
        self.calls += -(-len(keys) // LOOKUP_BATCH)
        return {k: self._entries[k] for k in keys if k in self._entries}

    async def apply(self, events: Sequence[Event]) -> list[Suppression]:
        changed: list[Suppression] = []
        window = self._settings.soft_bounce_window_s
        for event in events:
            rule = rule_for(event)
            if rule is None or event.recipient is None:
                continue
            address = address_key(event.recipient)
            group = group_of(event)
            if group is not None:
                entry = from_event(event, str(rule), self._grouped.get((group, address)))
                self._grouped[(group, address)] = entry
                changed.append(entry)
                continue
            held = self._entries.get(address)
            if rule == SOFT:
                soft = self._soft.setdefault(address, {})
                soft[event.id] = epoch(event.at)
                horizon = self._clock() - window
                for old in [i for i, at in soft.items() if at < horizon]:
                    del soft[old]
                if held is not None and held.kind != SuppressionKind.SOFT_BOUNCES.value:
                    continue  # already suppressed for a stronger reason
                if len(soft) < self._settings.soft_bounce_limit:
                    continue
                rule = SuppressionKind.SOFT_BOUNCES
            entry = from_event(event, str(rule), held)
            self._entries[address] = entry
            changed.append(entry)
        return changed

    async def lookup_grouped(
        self, pairs: Sequence[tuple[int, str]]
    ) -> dict[tuple[int, str], Suppression]:
        keys = sorted({(g, address_key(a)) for g, a in pairs})
        self.calls += -(-len(keys) // LOOKUP_BATCH)
        return {k: self._grouped[k] for k in keys if k in self._grouped}

    async def get(self, address: str, group: int | None = None) -> Suppression | None:
        if group is not None:
            return self._grouped.get((group, address_key(address)))
        return self._entries.get(address_key(address))

    async def put(self, entry: Suppression) -> None:
        if entry.group is not None:
            self._grouped[(entry.group, address_key(entry.address))] = entry
            return
        self._entries[address_key(entry.address)] = entry

    async def remove(self, address: str, group: int | None = None) -> bool:
        key = address_key(address)
        if group is not None:
            return self._grouped.pop((group, key), None) is not None
        self._soft.pop(key, None)
        return self._entries.pop(key, None) is not None

    async def page(
        self, cursor: str | None = None, limit: int = 100
    ) -> tuple[list[Suppression], str | None]:
        keys = sorted(k for k in self._entries if cursor is None or k > cursor)
        taken = keys[:limit]
        return [self._entries[k] for k in taken], taken[-1] if len(keys) > limit else None
