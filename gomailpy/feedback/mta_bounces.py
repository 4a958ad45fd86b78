"""Bounces in the formats MTAs wrote before (and beside) RFC 3464: qmail, Exim, Yahoo, Postfix's
and Sendmail's prose, Exchange and GroupWise NDRs, ... read with flufl.bounce (GNU Mailman's bounce
detectors), plus the words next to each address so that the classifier can say why.

    failures = read_failures(message, data)   # [Failure(address, permanent, diagnostic), ...]

flufl.bounce finds *who* bounced (`all_failures`: temporary and permanent sets of addresses) but
not why. The why is in the prose next to the address: the paragraph that names it (qmail's
"<a@b>:\\nRemote host said: 550 5.1.1 ... user unknown\\nGiving up"), else the next one, else
(for a bounce about one address) the whole notification. The returned original (message/rfc822,
text/rfc822-headers, or what follows "Below this line is a copy of the message") is never read
for it: it holds the address too, in its To.

flufl.bounce is handed a bounded message: at most `MAX_SCAN_BYTES` of it and `MAX_PARTS` MIME
parts (its detectors walk every line of every part), and whatever it raises is caught here: one
odd message is an `unknown` event, never a crash.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser

import flufl.bounce

from gomailpy.bounce_reasons import Classification, Reason, classify

log = logging.getLogger("gomailpy.events")

MAX_SCAN_BYTES = 256 * 1024  # of a message handed to flufl.bounce (a bounce is rarely 20 KiB)
MAX_PARTS = 100  # MIME parts; more is no bounce any MTA writes
MAX_DIAGNOSTIC = 600  # characters of prose kept as an event's diagnostic
_NOTIFICATION_TEXT = 16 * 1024  # characters of the notification read for the prose

# Where a returned copy of the original starts inside a plain-text bounce: a separator line
# ("----- Original message -----", "------ This is a copy of the message ...") or qmail's line.
_COPY_MARKERS = re.compile(
    r"^[ \t]*(?:(?:-{2,}|={2,}|\*{2,}|\|-{2,})[ \t]*[^\n]{0,40}?(?:"
    r"original message|copy of the message|message header|returned message|message text|"
    r"unsent message|message body|header of the original|headers of the original"
    r")|below this line is a copy of the message|original message follows)",
    re.I | re.M,
)
_BLANK = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True, slots=True)
class Failure:
    address: str
    permanent: bool
    diagnostic: str | None  # the words next to the address (whitespace collapsed)
    found: Classification  # why, as those words say


def read_failures(
    message: Message, data: bytes, *, failure: bool = False, ours: Sequence[str] = ()
) -> list[Failure]:
    """The failures flufl.bounce finds in `message` (parsed from `data`), each with the prose
    that names it; [] for none, for a message too large or too many parts to scan, or when a
    detector fails on it (logged). When flufl.bounce finds none in a message whose sender or
    subject say it is a delivery `failure`, the addresses its notification sets apart (a line
    of its own, or "<address>:" opening one, as qmail, Yahoo and Exim write them) are, except
    `ours` (the report's own sender and recipients)."""
    scanned = message
    if len(data) > MAX_SCAN_BYTES:
        scanned = BytesParser(policy=policy.compat32).parsebytes(data[:MAX_SCAN_BYTES])
    if _count_parts(scanned, MAX_PARTS + 1) > MAX_PARTS:
        return []
    try:
        temporary, permanent = flufl.bounce.all_failures(scanned)
    except Exception as exc:  # a detector meeting a shape it never expected
        log.info("flufl.bounce could not read a report: %s: %s", type(exc).__name__, exc)
        return []
    text = notification_text(scanned)
    found: list[tuple[str, bool]] = [(_text(a), True) for a in sorted(permanent)]
    found += [(_text(a), False) for a in sorted(temporary) if a not in permanent]
    if not found and failure:
        found = [(a, not _STILL_TRYING.search(text)) for a in set_apart(text, ours)]
    addresses = [a for a, _ in found if "@" in a]
    subject = " ".join(str(scanned.get("Subject", "")).split())
    failures = []
    for address, is_permanent in found:
        if "@" not in address:
            continue
        others = [a for a in addresses if a.lower() != address.lower()]
        windows = diagnostic_windows(text, address, others)
        if not others:  # about this address alone: the whole text, then the subject, may say
            windows += [_squeeze(text) or "", subject]
        diagnostic, why = _first_classified([w for w in windows if w])
        failures.append(Failure(address, is_permanent, diagnostic, why))
    return failures


_SET_APART = re.compile(
    r"^[ \t]*(?:[*>-][ \t]*)?<?([^\s<>@:;,\"()\[\]]+@[^\s<>@:;,\"()\[\]]+?)>?[ \t]*(?::.*)?$",
    re.M,
)
_STILL_TRYING = re.compile(
    r"will (?:continue|keep) (?:to )?(?:try|retry)|still (?:being )?(?:tr|retr)|"
    r"not yet been delivered|delivery (?:has been |is )?delayed|will be retried",
    re.I,
)
MAX_SET_APART = 20  # addresses read from prose; more is a list, not a bounce


def set_apart(text: str, ours: Sequence[str] = ()) -> list[str]:
    """The addresses a bounce's prose sets apart, in order: alone on a line (maybe in <>, after a
    bullet), or opening one as "<address>: reason"; never one of `ours`."""
    excluded = {a.lower() for a in ours}
    found: list[str] = []
    for match in _SET_APART.finditer(text):
        address = match.group(1).strip(".")
        local, _, domain = address.rpartition("@")
        if not local or "." not in domain or address.lower() in excluded:
            continue
        if address.lower() not in (a.lower() for a in found):
            found.append(address)
    return found[:MAX_SET_APART]


def _text(address: bytes) -> str:
    return address.decode("utf-8", "replace").strip().strip("<>").strip()


def _first_classified(windows: list[str]) -> tuple[str | None, Classification]:
    """The first window whose words give a reason, else the first window (undefined)."""
    for window in windows:
        found = classify(window)
        if found.reason is not Reason.UNDEFINED:
            return window[:MAX_DIAGNOSTIC], found
    first = windows[0][:MAX_DIAGNOSTIC] if windows else None
    return first, classify(first)


def _count_parts(message: Message, limit: int) -> int:
    count, stack = 0, [message]
    while stack and count < limit:
        part = stack.pop()
        count += 1
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(p for p in payload if isinstance(p, Message))
    return count


def notification_text(message: Message) -> str:
    """The text a person would read in the bounce: its text parts outside any returned message,
    up to where a returned copy starts."""
    texts: list[str] = []
    stack, seen = [message], 0
    while stack and seen <= MAX_PARTS:
        part = stack.pop(0)
        seen += 1
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global", "text/rfc822-headers"):
            continue  # the original: its To names the address too
        payload = part.get_payload()
        if isinstance(payload, list):
            stack[:0] = [p for p in payload if isinstance(p, Message)]
            continue
        if part.get_content_maintype() not in ("text", "message") and part is not message:
            continue
        texts.append(_decoded_text(part))
    text = "\n\n".join(t for t in texts if t.strip())[:_NOTIFICATION_TEXT]
    copy = _COPY_MARKERS.search(text)
    text = text[: copy.start()] if copy else text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decoded_text(part: Message) -> str:
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = raw.decode(charset, "replace")
    except LookupError:
        text = raw.decode("utf-8", "replace")
    if part.get_content_subtype() == "html":
        text = re.sub(r"<[^>]{0,2000}>", " ", re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", text))
    return text


def diagnostic_windows(text: str, address: str, others: Sequence[str] = ()) -> list[str]:
    """The prose about `address` in `text`, narrowest first: the paragraph (lines up to a blank
    one) from the line that names it, then with the next paragraph and the one after (the
    reason often follows a bare "<address>:" line), never reaching into a paragraph that names
    one of the `others` addresses of the same bounce."""
    at = text.lower().find(address.lower())
    if at < 0:
        return []
    start = text.rfind("\n", 0, at) + 1
    paragraphs = _BLANK.split(text[start:], maxsplit=3)[:3]
    windows = [paragraphs[0]]
    for paragraph in paragraphs[1:]:
        lowered = paragraph.lower()
        if any(other.lower() in lowered for other in others):
            break
        windows.append(f"{windows[-1]}\n{paragraph}")
    return [w for w in (_squeeze(w) for w in windows) if w]


def _squeeze(text: str) -> str | None:
    squeezed = " ".join(text.split())
    return squeezed[:MAX_DIAGNOSTIC] or None
