"""Real bounces no one here wrote, read by gomailpy.feedback.dsn (no I/O):

- flufl.bounce's corpus (tests/data/bounces/flufl/, ~20 MTAs): every address its own detectors
  expect is found, each with a reason of the taxonomy and a subtype (deferred for the temporary
  ones);
- a handful of real Gmail, Yahoo, Outlook, Microsoft 365, Exim and qmail bounces
  (tests/data/bounces/real/, from Sisimai's corpus) read as Sisimai reads them: recipient,
  reason, hard or soft;
- hostile input: MIME too deep or too wide, and a detector that raises, give an unknown event,
  never a crash or a wait.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from gomailpy.bounce_reasons import Reason
from gomailpy.events import Event, EventType
from gomailpy.feedback.dsn import read_message

DATA = Path(__file__).parent / "data" / "bounces"
FLUFL = DATA / "flufl"
EXPECTED: dict[str, dict[str, Any]] = json.loads((FLUFL / "expected.json").read_text())
WITH_ADDRESSES = sorted(name for name, entry in EXPECTED.items() if entry["addresses"])
REASONS = {reason.value for reason in Reason}


def test_the_corpus_is_whole() -> None:
    # flufl.bounce's own count: 111 messages its detectors find addresses in.
    assert len(WITH_ADDRESSES) == 111
    assert all((FLUFL / name).is_file() for name in EXPECTED)


@pytest.mark.parametrize("name", WITH_ADDRESSES)
def test_every_address_flufl_expects_is_read_with_a_reason(name: str) -> None:
    entry = EXPECTED[name]
    events = read_message((FLUFL / name).read_bytes())
    by_address = {(e.recipient or "").lower(): e for e in events}
    for address in entry["addresses"]:
        event = by_address.get(address.lower())
        assert event is not None, f"{address} not read from {name}: {_show(events)}"
        assert event.reason in REASONS, _show([event])
        if entry["temporary"]:
            assert event.type is EventType.DEFERRED, _show([event])
        else:
            assert event.type in (EventType.BOUNCED, EventType.BLOCKED), _show([event])
            assert event.subtype in ("hard", "soft"), _show([event])


def test_most_of_the_corpus_is_classified() -> None:
    # A floor, not a target: the reason is `undefined` only where the bounce says nothing more
    # than "could not be delivered" (see bench/bounces.py for the figures).
    events = [
        e
        for name in WITH_ADDRESSES
        for e in read_message((FLUFL / name).read_bytes())
        if e.type is not EventType.UNKNOWN
    ]
    classified = [e for e in events if e.reason != Reason.UNDEFINED.value]
    assert len(classified) / len(events) >= 0.7


def test_a_vacation_reply_in_the_corpus_is_autoresponded() -> None:
    [event] = read_message((FLUFL / "qmail_08.txt").read_bytes())
    assert (event.type, event.recipient) == (EventType.AUTORESPONDED, "contact@example.com")


# --- a handful of real bounces, as Sisimai reads them ------------------------------------------

REAL = [
    # file, recipient, event type, subtype, reason
    ("lhost-gmail-01.eml", "userunknown@example.jp", "bounced", "hard", "userunknown"),
    ("rhost-google-03.eml", "neko@example.co.jp", "blocked", "soft", "authfailure"),
    ("lhost-yahoo-01.eml", "kijitora@example.org", "bounced", "hard", "userunknown"),
    ("lhost-outlook-01.eml", "kijitora@example.jp", "bounced", "soft", "mailboxfull"),
    ("rhost-microsoft-01.eml", "kijitora@example.com", "blocked", "soft", "blocked"),
    ("lhost-exim-01.eml", "kijitora@example.ed.jp", "blocked", "soft", "securityerror"),
    ("lhost-exim-02.eml", "kijitora@example.jp", "bounced", "hard", "userunknown"),
    ("lhost-exim-02.eml", "sabatora@example.jp", "bounced", "hard", "userunknown"),
    ("lhost-qmail-02.eml", "userunknown@example.jp", "bounced", "hard", "userunknown"),
    ("lhost-qmail-02.eml", "filtered@example.jp", "bounced", "hard", "userunknown"),
]


@pytest.mark.parametrize(("name", "recipient", "kind", "subtype", "reason"), REAL)
def test_real_bounces_read_as_sisimai_reads_them(
    name: str, recipient: str, kind: str, subtype: str, reason: str
) -> None:
    events = read_message((DATA / "real" / name).read_bytes())
    [event] = [e for e in events if e.recipient == recipient]
    assert (event.type.value, event.subtype, event.reason) == (kind, subtype, reason)
    assert event.status and event.mta_response


# --- hostile input --------------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    head = b"From: MAILER-DAEMON@example.net\r\nSubject: Undelivered Mail\r\n"
    opening = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (n, n)
        for n in range(depth)
    )
    body = b"Content-Type: text/plain\r\n\r\n<user@example.com>: user unknown\r\n"
    closing = b"".join(b"--b%d--\r\n" % n for n in reversed(range(depth)))
    return head + opening + body + closing


def _wide(parts: int) -> bytes:
    head = b"From: MAILER-DAEMON@example.net\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
    each = b"".join(
        b"--B\r\nContent-Type: text/plain\r\n\r\n<u%d@example.com>: user unknown\r\n" % n
        for n in range(parts)
    )
    return head + each + b"--B--\r\n"


@pytest.mark.parametrize("data", [_nested(3000), _wide(5000)], ids=["deep", "wide"])
def test_mime_too_deep_or_too_wide_is_kept_unread_at_once(data: bytes) -> None:
    started = time.monotonic()
    [event] = read_message(data)
    assert event.type is EventType.UNKNOWN
    assert "too deeply or split into too many parts" in (event.reason or "")
    assert time.monotonic() - started < 2.0


def test_a_detector_that_raises_gives_an_unknown_event(monkeypatch: pytest.MonkeyPatch) -> None:
    import flufl.bounce

    def explode(message: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(flufl.bounce, "all_failures", explode)
    [event] = read_message((FLUFL / "qmail_03.txt").read_bytes())
    assert event.type is EventType.UNKNOWN


def _show(events: list[Event]) -> str:
    return "; ".join(
        f"{e.recipient} {e.type.value}/{e.subtype} {e.reason} {e.status}" for e in events
    )
