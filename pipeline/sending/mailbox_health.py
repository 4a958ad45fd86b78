"""Health per mailbox provider: how each sending provider fares at each recipient domain group,
and which (provider, group) pairs to leave out. Pure, no I/O, time passed in.

    health = MailboxHealth(settings.steering.domains, ["ses", "sendgrid", "smtp"])
    health.observe("smtp", "ann@gmail.com", Signal.BLOCKED, now)   # events, send results
    health.exclusions(now)        # {"google": {"smtp"}}: the splitter keeps google's mail off smtp
    health.probes_due(now)        # {"google": {"smtp"}}: one email of the group may try it again

A recipient domain belongs to a **group**, its mailbox provider where it is well known (GROUPS:
gmail.com and googlemail.com are `google`; hotmail.*, outlook.com and live.com `microsoft`…),
otherwise the domain itself. Per (provider, group), over the last `window_s`, the outcomes
count: delivered (autoresponded too), deferred, bounced, blocked. A pair is **bad** once it has
at least `min_events` outcomes and blocked + deferred make at least `max_bad_share` of them
(bounces are about addresses, not the sender: they count in the sample only).

A bad pair is **excluded** only while another provider is neither excluded at that group nor
bad there (no outcomes at all is not bad): never every provider of a group, since then nothing
would change. After `probe_after_s`, the pair is due for a **probe**: one email of the group
goes through it (`probe_sent`). The probe's own outcome decides: delivered ends the exclusion;
blocked or deferred starts another `probe_after_s`; nothing bad within `probe_wait_s` ends it
too (a relay that only reports failures never says "delivered"). An exclusion that ends starts
the pair's counts afresh.

Every call that can change an exclusion returns the `Change`s, for the caller to log and export
(pipeline.sending.domain_steering). Provider names are whatever strings the caller uses.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from gomailpy.bounce_reasons import Category, classify
from gomailpy.config.steering import DomainSteeringSettings
from gomailpy.events import Event, EventType

# Well-known mailbox providers: their domains -> the group's name. A domain ending in one of
# _FAMILIES' prefixes plus a country suffix ("hotmail.co.uk", "yahoo.fr") is in that group too.
GROUPS: dict[str, str] = {
    **dict.fromkeys(("gmail.com", "googlemail.com"), "google"),
    **dict.fromkeys(
        ("outlook.com", "hotmail.com", "live.com", "msn.com", "windowslive.com", "passport.com"),
        "microsoft",
    ),
    **dict.fromkeys(
        ("yahoo.com", "ymail.com", "rocketmail.com", "aol.com", "aim.com", "verizon.net"),
        "yahoo",
    ),
    **dict.fromkeys(("icloud.com", "me.com", "mac.com"), "apple"),
    **dict.fromkeys(("gmx.net", "gmx.de", "gmx.com", "gmx.at", "gmx.ch", "web.de"), "gmx"),
    **dict.fromkeys(("mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru"), "mail.ru"),
    **dict.fromkeys(("yandex.ru", "yandex.com", "ya.ru", "narod.ru"), "yandex"),
    **dict.fromkeys(("proton.me", "protonmail.com", "pm.me"), "proton"),
    **dict.fromkeys(("zoho.com", "zohomail.com"), "zoho"),
}
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("hotmail.", "microsoft"),
    ("outlook.", "microsoft"),
    ("live.", "microsoft"),
    ("yahoo.", "yahoo"),
    ("aol.", "yahoo"),
    ("yandex.", "yandex"),
)


def domain_of(address: str) -> str:
    """The domain of an address, lower case, without a trailing dot ("" for none)."""
    return address.rpartition("@")[2].strip().rstrip(".>").lower()


def group_of(domain: str) -> str:
    """The group of a recipient domain: its well-known mailbox provider, else the domain."""
    domain = domain.lower().rstrip(".")
    known = GROUPS.get(domain)
    if known is not None:
        return known
    for prefix, group in _FAMILIES:
        # the family's name and a country suffix: hotmail.co.uk, yahoo.fr (not hotmail.example.org)
        if domain.startswith(prefix) and len(domain) - len(prefix) <= 6:
            return group
    return domain


def recipient_group(address: str) -> str:
    return group_of(domain_of(address))


class Signal(StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    BLOCKED = "blocked"


BAD = frozenset({Signal.DEFERRED, Signal.BLOCKED})
_EVENT_SIGNALS = {
    EventType.DELIVERED: Signal.DELIVERED,
    EventType.AUTORESPONDED: Signal.DELIVERED,
    EventType.DEFERRED: Signal.DEFERRED,
    EventType.BOUNCED: Signal.BOUNCED,
    EventType.BLOCKED: Signal.BLOCKED,
}


def signal_of_event(event: Event) -> Signal | None:
    """What an event says about its provider at its recipient's domain (None: nothing)."""
    return _EVENT_SIGNALS.get(event.type)


def signal_of_refusal(code: int, text: str) -> Signal:
    """What a recipient refused at RCPT time says: blocked when the reason is about the sender
    or the message (gomailpy.bounce_reasons: policy, blocklist, spam…), deferred for
    any other 4xx, bounced for any other 5xx."""
    found = classify(f"{code} {text}")
    if found.category is Category.REFUSED:
        return Signal.BLOCKED
    return Signal.DEFERRED if 400 <= code < 500 else Signal.BOUNCED


@dataclass(frozen=True, slots=True)
class Counts:
    delivered: int = 0
    deferred: int = 0
    bounced: int = 0
    blocked: int = 0

    @property
    def total(self) -> int:
        return self.delivered + self.deferred + self.bounced + self.blocked

    @property
    def bad_share(self) -> float:
        return (self.deferred + self.blocked) / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class Change:
    """An exclusion that started (`excluded` True) or ended, and why."""

    provider: str
    group: str
    excluded: bool
    why: str


@dataclass
class Exclusion:
    provider: str
    group: str
    since: float
    why: str
    probe_at: float  # when one email may try the pair again
    probe_id: str | None = None  # the probe's message id, once sent
    probe_sent_at: float | None = None

    def to_json(self, now: float) -> dict[str, object]:
        return {
            "provider": self.provider,
            "domain": self.group,
            "why": self.why,
            "excluded_s": round(now - self.since, 1),  # for how long so far
            "probe_in_s": round(max(0.0, self.probe_at - now), 1),
            "probing": self.probe_id is not None,  # a probe was sent: its outcome decides
        }


class MailboxHealth:
    """Outcomes per (provider, group) and the exclusions they drive; see the module docstring."""

    def __init__(self, settings: DomainSteeringSettings, providers: Iterable[str]) -> None:
        self.settings = settings
        self.providers = list(providers)
        self._seen: dict[tuple[str, str], deque[tuple[float, Signal]]] = {}
        self.excluded_pairs: dict[tuple[str, str], Exclusion] = {}

    # -- counting ---------------------------------------------------------------------------

    def _trim(self, marks: deque[tuple[float, Signal]], now: float) -> None:
        horizon = now - self.settings.window_s
        while marks and marks[0][0] < horizon:
            marks.popleft()

    def counts(self, provider: str, group: str, now: float) -> Counts:
        marks = self._seen.get((provider, group))
        if not marks:
            return Counts()
        self._trim(marks, now)
        tally = {signal: 0 for signal in Signal}
        for _, signal in marks:
            tally[signal] += 1
        return Counts(**{signal.value: n for signal, n in tally.items()})

    def bad(self, provider: str, group: str, now: float) -> bool:
        counts = self.counts(provider, group, now)
        return (
            counts.total >= self.settings.min_events
            and counts.bad_share >= self.settings.max_bad_share
        )

    def observe(
        self,
        provider: str,
        recipient: str,
        signal: Signal,
        now: float,
        message_id: str | None = None,
    ) -> list[Change]:
        """Count one outcome of `provider` for `recipient`; the exclusions it starts or ends."""
        group = recipient_group(recipient)
        if not group:
            return []
        key = (provider, group)
        marks = self._seen.get(key)
        if marks is None:
            marks = self._seen[key] = deque(maxlen=self.settings.max_events_per_pair)
        marks.append((now, signal))
        exclusion = self.excluded_pairs.get(key)
        if exclusion is not None:
            if message_id is not None and message_id == exclusion.probe_id:
                return self._judge_probe(exclusion, signal, now)
            return []
        if self.settings.enabled:
            return self._consider(provider, group, now)
        return []

    def _consider(self, provider: str, group: str, now: float) -> list[Change]:
        if not self.bad(provider, group, now):
            return []
        others = [
            name
            for name in self.providers
            if name != provider
            and (name, group) not in self.excluded_pairs
            and not self.bad(name, group, now)
        ]
        if not others:  # every provider is bad there: moving the mail changes nothing
            return []
        counts = self.counts(provider, group, now)
        why = (
            f"{counts.blocked} blocked and {counts.deferred} deferred of its last"
            f" {counts.total} outcomes there ({counts.bad_share:.0%});"
            f" {', '.join(others)} {'is' if len(others) == 1 else 'are'} not"
        )
        self.excluded_pairs[(provider, group)] = Exclusion(
            provider, group, now, why, now + self.settings.probe_after_s
        )
        return [Change(provider, group, True, why)]

    # -- probes -----------------------------------------------------------------------------

    def _judge_probe(self, exclusion: Exclusion, signal: Signal, now: float) -> list[Change]:
        if signal is Signal.DELIVERED:
            return [self._end(exclusion, "its probe was delivered")]
        if signal in BAD:  # still refused: try again later
            exclusion.probe_at = now + self.settings.probe_after_s
            exclusion.probe_id = exclusion.probe_sent_at = None
        return []  # a bounce is about the address: wait for the probe's time to run out

    def _end(self, exclusion: Exclusion, why: str) -> Change:
        key = (exclusion.provider, exclusion.group)
        del self.excluded_pairs[key]
        self._seen.pop(key, None)  # its counts start afresh
        return Change(exclusion.provider, exclusion.group, False, why)

    def probes_due(self, now: float) -> dict[str, set[str]]:
        """group -> the providers excluded there whose probe is due (none sent yet)."""
        due: dict[str, set[str]] = {}
        for exclusion in self.excluded_pairs.values():
            if exclusion.probe_id is None and now >= exclusion.probe_at:
                due.setdefault(exclusion.group, set()).add(exclusion.provider)
        return due

    def probe_sent(self, provider: str, group: str, message_id: str, now: float) -> None:
        """One email of `group` went through the excluded `provider` as its probe."""
        exclusion = self.excluded_pairs.get((provider, group))
        if exclusion is not None and exclusion.probe_id is None:
            exclusion.probe_id, exclusion.probe_sent_at = message_id, now

    # -- what the splitter uses -------------------------------------------------------------

    def exclusions(self, now: float) -> dict[str, set[str]]:
        """group -> the providers excluded there (a pair due for a probe too: the splitter
        lets one email through with `probes_due`)."""
        excluded: dict[str, set[str]] = {}
        for provider, group in self.excluded_pairs:
            excluded.setdefault(group, set()).add(provider)
        return excluded

    def excluded(self, provider: str, group: str, now: float) -> bool:
        """Whether `group`'s mail is kept off `provider` now (a due probe aside)."""
        return (provider, group) in self.excluded_pairs

    def evaluate(self, now: float) -> list[Change]:
        """End the exclusions whose probe got no block or deferral within `probe_wait_s`;
        forget pairs with nothing left in the window."""
        changes = []
        for exclusion in list(self.excluded_pairs.values()):
            sent = exclusion.probe_sent_at
            if sent is not None and now - sent >= self.settings.probe_wait_s:
                wait = self.settings.probe_wait_s
                changes.append(self._end(exclusion, f"no refusal of its probe in {wait:g} s"))
        for key, marks in list(self._seen.items()):
            self._trim(marks, now)
            if not marks and key not in self.excluded_pairs:
                del self._seen[key]
        return changes

    def snapshot(self, now: float) -> list[dict[str, object]]:
        """The exclusions, for /status and the operator page."""
        return [e.to_json(now) for e in self.excluded_pairs.values()]
