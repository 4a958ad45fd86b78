"""Health per mailbox provider (pipeline.sending.mailbox_health) and the per-domain exclusion in the
splitter: tables, time as an argument, no I/O."""

from __future__ import annotations

import pytest

from gomailpy.config.steering import DomainSteeringSettings
from gomailpy.events import Event, EventType
from pipeline.sending.mailbox_health import (
    Change,
    MailboxHealth,
    Signal,
    group_of,
    signal_of_event,
    signal_of_refusal,
)
from pipeline.sending.splitter import avoid_excluded, suits

D, F, B, X = Signal.DELIVERED, Signal.DEFERRED, Signal.BOUNCED, Signal.BLOCKED
SETTINGS = DomainSteeringSettings(
    window_s=60, min_events=5, max_bad_share=0.5, probe_after_s=30, probe_wait_s=10
)
NAMES = ("ses", "sendgrid", "smtp")


@pytest.mark.parametrize(
    ("domain", "group"),
    [
        ("gmail.com", "google"),
        ("GoogleMail.com", "google"),
        ("hotmail.co.uk", "microsoft"),
        ("hotmail.fr", "microsoft"),
        ("outlook.com", "microsoft"),
        ("live.com", "microsoft"),
        ("msn.com", "microsoft"),
        ("yahoo.co.jp", "yahoo"),
        ("ymail.com", "yahoo"),
        ("aol.com", "yahoo"),
        ("icloud.com", "apple"),
        ("me.com", "apple"),
        ("web.de", "gmx"),
        ("gmx.net", "gmx"),
        ("mail.ru", "mail.ru"),
        ("yandex.ru", "yandex"),
        ("example.org", "example.org"),
        ("hotmail.example.org", "hotmail.example.org"),  # not Microsoft's
        ("blocked.example.net.", "blocked.example.net"),
    ],
)
def test_groups(domain: str, group: str) -> None:
    assert group_of(domain) == group


@pytest.mark.parametrize(
    ("code", "text", "signal"),
    [
        (550, "5.7.1 blocked by policy", X),
        (554, "5.7.1 Client host blocked using zen.spamhaus.org", X),
        (550, "5.7.26 unauthenticated email from x is not accepted due to DMARC", X),
        (451, "4.7.1 Greylisted, try again later", F),
        (421, "4.7.0 Too many connections from your IP", X),
        (450, "4.2.0 mailbox temporarily unavailable", F),
        (550, "5.1.1 no such user", B),
        (552, "5.2.2 mailbox full", B),
    ],
)
def test_what_a_refusal_at_rcpt_time_says(code: int, text: str, signal: Signal) -> None:
    assert signal_of_refusal(code, text) is signal


@pytest.mark.parametrize(
    ("kind", "signal"),
    [
        (EventType.DELIVERED, D),
        (EventType.AUTORESPONDED, D),
        (EventType.DEFERRED, F),
        (EventType.BOUNCED, B),
        (EventType.BLOCKED, X),
        (EventType.OPENED, None),
        (EventType.COMPLAINED, None),
    ],
)
def test_what_an_event_says(kind: EventType, signal: Signal | None) -> None:
    event = Event("e", "m", "a@gmail.com", "ses", kind, "2026-01-01T00:00:00Z")
    assert signal_of_event(event) is signal


def feed(health: MailboxHealth, provider: str, signals: str, now: float = 0.0) -> list[Change]:
    """One outcome a second from `now`: d delivered, f deferred, b bounced, x blocked."""
    by = {"d": D, "f": F, "b": B, "x": X}
    changes = []
    for n, letter in enumerate(signals):
        changes += health.observe(provider, f"r{n}@gmail.com", by[letter], now + n)
    return changes


@pytest.mark.parametrize(
    ("smtp", "others", "excluded"),
    [
        ("xxxxx", {}, True),  # 5 of 5 blocked, nobody else known: not bad elsewhere
        ("xxxx", {}, False),  # below the minimum sample
        ("xxddd", {}, False),  # 40 %
        ("xxfdd", {}, True),  # blocked + deferred: 60 %
        ("bbbxx", {}, False),  # bounces count in the sample, not as bad
        ("xxxxx", {"ses": "ddddd"}, True),
        ("xxxxx", {"ses": "xxxxx", "sendgrid": "ffffx"}, False),  # everyone is bad there
        ("xxxxx", {"ses": "xxxxx", "sendgrid": "ddd"}, True),  # sendgrid is not
        ("fffff", {"ses": "xxxxx", "sendgrid": "xxxxx"}, False),
    ],
)
def test_when_a_pair_is_excluded(smtp: str, others: dict[str, str], excluded: bool) -> None:
    health = MailboxHealth(SETTINGS, NAMES)
    for name, signals in others.items():
        feed(health, name, signals)
    feed(health, "smtp", smtp)
    assert health.excluded("smtp", "google", 10) is excluded
    assert ("smtp" in health.exclusions(10).get("google", set())) is excluded


def test_never_every_provider_of_a_group() -> None:
    health = MailboxHealth(SETTINGS, ("ses", "smtp"))
    [change] = feed(health, "smtp", "xxxxx")
    assert (change.provider, change.group, change.excluded) == ("smtp", "google", True)
    assert "ses is not" in change.why
    assert feed(health, "ses", "xxxxxx", 10) == []  # the only other one: it stays
    assert health.exclusions(20) == {"google": {"smtp"}}


def test_other_groups_are_unaffected() -> None:
    health = MailboxHealth(SETTINGS, NAMES)
    feed(health, "smtp", "xxxxx")
    assert health.excluded("smtp", "google", 5)
    assert not health.excluded("smtp", "example.org", 5)
    assert not health.excluded("ses", "google", 5)


def test_the_window_forgets() -> None:
    health = MailboxHealth(SETTINGS, NAMES)
    feed(health, "smtp", "xxxx", now=0)  # at 0..3 s
    assert feed(health, "smtp", "x", now=100) == []  # the first four are out of the window
    assert health.counts("smtp", "google", 100).blocked == 1
    health.evaluate(1000)
    assert health.counts("smtp", "google", 1000).total == 0


@pytest.mark.parametrize(
    ("verdict", "at", "ended"),
    [
        (D, 31, True),  # delivered: over
        (X, 31, False),  # refused again: another cooldown
        (F, 31, False),
        (B, 31, False),  # about the address: wait for the probe's time
        (None, 41, True),  # nothing bad within probe_wait_s: over
        (None, 39, False),
    ],
)
def test_a_probe_decides(verdict: Signal | None, at: float, ended: bool) -> None:
    health = MailboxHealth(SETTINGS, NAMES)
    feed(health, "smtp", "xxxxx")  # excluded at 4 s: a probe from 34 s
    assert health.probes_due(33) == {}
    assert health.probes_due(34) == {"google": {"smtp"}}
    health.probe_sent("smtp", "google", "probe-1", 30.5)
    assert health.probes_due(35) == {}  # one probe at a time
    changes = []
    if verdict is not None:
        changes += health.observe("smtp", "x@gmail.com", Signal.BLOCKED, 31, "other")  # not it
        changes += health.observe("smtp", "p@gmail.com", verdict, at, "probe-1")
    changes += health.evaluate(at)
    assert health.excluded("smtp", "google", at) is not ended
    assert [c.excluded for c in changes] == ([False] if ended else [])
    if ended:
        assert health.counts("smtp", "google", at).total == 0  # afresh
    elif verdict in (X, F):
        assert health.probes_due(at + 29) == {}
        assert health.probes_due(at + 30) == {"google": {"smtp"}}


def test_off_counts_but_never_excludes() -> None:
    health = MailboxHealth(SETTINGS.model_copy(update={"enabled": False}), NAMES)
    assert feed(health, "smtp", "xxxxxxx") == []
    assert health.counts("smtp", "google", 7).blocked == 7


# --- the splitter's per-domain exclusion --------------------------------------------------------

GROUPS = {
    "a": ["google"],
    "b": ["example.org"],
    "c": ["google", "google", "example.org"],
    "d": ["google", "example.org", "example.org"],
    "e": ["yahoo"],
}


@pytest.mark.parametrize(
    ("assignment", "excluded", "probing", "expected", "probes"),
    [
        # google's mail off smtp, in turn to the others; example.org's stays
        (
            {"smtp": ["a", "b", "a"], "ses": [], "sendgrid": []},
            {"google": {"smtp"}},
            {},
            {"smtp": ["b"], "ses": ["a"], "sendgrid": ["a"]},
            [],
        ),
        # several groups: the provider that may take the most recipients
        (
            {"smtp": ["c", "d"], "ses": []},
            {"google": {"smtp"}, "example.org": {"ses"}},
            {},
            {"smtp": ["d"], "ses": ["c"]},
            [],
        ),
        # nowhere better: it stays
        (
            {"smtp": ["a"], "ses": []},
            {"google": {"smtp", "ses"}},
            {},
            {"smtp": ["a"], "ses": []},
            [],
        ),
        # a probe due: one email of the group stays on the pair
        (
            {"smtp": ["a", "a", "e"], "ses": []},
            {"google": {"smtp"}},
            {"google": {"smtp"}},
            {"smtp": ["a", "e"], "ses": ["a"]},
            [("smtp", "google", "a")],
        ),
    ],
)
def test_avoid_excluded(
    assignment: dict[str, list[str]],
    excluded: dict[str, set[str]],
    probing: dict[str, set[str]],
    expected: dict[str, list[str]],
    probes: list[tuple[str, str, str]],
) -> None:
    moved, kept = avoid_excluded(
        assignment, list(assignment), GROUPS.__getitem__, excluded, probing
    )
    assert moved == expected
    assert kept == probes
    assert sorted(x for batch in moved.values() for x in batch) == sorted(
        x for batch in assignment.values() for x in batch
    )  # nothing lost, nothing doubled


def test_suits_counts_recipients() -> None:
    assert suits("smtp", ["google", "google", "x"], {"google": {"smtp"}}) == 1
