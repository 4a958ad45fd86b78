"""Reports an SMTP relay mails back, read into events: DSNs (RFC 3464), complaints (ARF, RFC
5965), the bounces of MTAs that write no DSN, and auto-replies.

    events = parse_bounce({"source": "smtp", "receivedAt": 1764300000.0,
                           "mailFrom": "", "rcptTo": ["bounces+<id>@bounces.example.com"],
                           "message": "<the whole message, base64>"})
    events = read_message(data)           # the same for a message's bytes (`gomail bounces read`)

The bounce listener (gomailpy.listeners.bounces) puts what it receives on the events queue in that
shape. Readers are tried in order; the first that finds anything gives the events:

1. **DSN**: any `message/delivery-status` (or `message/global-delivery-status`) part, whatever
   the `report-type` says or whether it is there at all (multipart/mixed DSNs are common). Its
   fields are read leniently, as MTAs write them: base64 or quoted-printable parts, 8bit text,
   folded or repeated fields, blocks not separated by blank lines, several recipients;
   Original-Recipient (the address we sent to) before Final-Recipient, with or without
   `rfc822;` or angle brackets, then X-Actual-Recipient. Action `failed` (also `failure`,
   `error`, "failed (comment)") is classified by reason (gomailpy.bounce_reasons):
   bounced/hard for a bad address, blocked for a refusal of the sender or message, else
   bounced/soft; `delayed` → deferred; `delivered`, `relayed`, `expanded` → delivered. Without
   an Action the Status class says it (5 → failed, 4 → delayed, 2 → delivered).
2. **ARF complaint** (RFC 5965), any `message/feedback-report` part: complained, for
   Original-Rcpt-To, else the To of the returned message. Feedback-Type `not-spam` and
   `auth-failure` (a DMARC/SPF failure report: about the sender) are no complaint: unknown.
3. **Auto-reply** (RFC 3834 and its older variants, gomailpy.feedback.autoreply): one
   `autoresponded` event for its sender. Never a bounce.
4. **Other MTAs' bounces** (qmail, Exim, Yahoo, Exchange, prose, ..., gomailpy.feedback.mta_bounces
   with flufl.bounce): permanent failures classified like DSNs, temporary ones deferred.
5. An out-of-office whose only sign is its own words (after 4 found no failure): autoresponded.

Anything else — a report missing its fields, a message no reader knows — is one `unknown` event
that keeps the message (base64, up to `MAX_KEPT_BYTES`) for inspection. Only a body that is no
email at all (not base64, no header fields) raises EventFormatError. A message nested deeper or
split into more parts than any report (`MAX_PARTS`) is kept as unknown unread.

Which email: the message id in the VERP address the report was sent to (gomailpy.email.verp), else
the `X-Gomailpy-Id` or `Message-ID: <id@gomailpy>` header of the returned message.

Event ids are `stable_id(<the report's Message-ID, else a hash of it>, <recipient>)`, so the
same report queued twice is recorded once. An event's `at` is when the listener received the
report (`receivedAt`); the report's own Date is `raw["reportedAt"]`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import quopri
import re
from collections.abc import Iterator
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

from gomailpy.bounce_reasons import Classification, Reason, classify, find_code, outcome
from gomailpy.email.mime import MESSAGE_ID_DOMAIN
from gomailpy.email.verp import instance_from, message_id_from
from gomailpy.errors import EventFormatError
from gomailpy.events import Event, EventType, iso, stable_id
from gomailpy.feedback.autoreply import auto_reply_signal, looks_like_failure
from gomailpy.feedback.mta_bounces import diagnostic_windows, notification_text, read_failures

PROVIDER = "smtp"
MAX_KEPT_BYTES = 64 * 1024  # of an unreadable report kept in its event's raw
MAX_READ_BYTES = 1024 * 1024  # of a message parsed at all (the listener queues less)
MAX_PARTS = 100  # MIME parts walked; a deeper or wider message is kept unread
_MAX_BOUNDARIES = 64  # declared in the raw bytes: past this, the MIME tree is not built
_MAX_FIELD = 2000  # characters of one report field kept
_OUR_MESSAGE_ID = re.compile(rf"<([^<>@\s]+)@{re.escape(MESSAGE_ID_DOMAIN)}>")
_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_ARF_TYPES = ("message/feedback-report",)
_NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure"})
_ACTIONS = (
    ("fail", "failed"),
    ("error", "failed"),  # OpenSMTPD
    ("delay", "delayed"),
    ("deliver", "delivered"),
    ("relay", "relayed"),
    ("expand", "expanded"),
)
_STATUS_ACTIONS = {"5": "failed", "4": "delayed", "2": "delivered"}
_DELIVERED_ACTIONS = frozenset({"delivered", "relayed", "expanded"})
_PER_MESSAGE_FIELDS = frozenset(
    {"reporting-mta", "dsn-gateway", "received-from-mta", "arrival-date", "original-envelope-id"}
)
_RECIPIENT_FIELDS = ("original-recipient", "final-recipient", "x-actual-recipient")
_PER_RECIPIENT_HINTS = frozenset({"action", "status", "diagnostic-code", "remote-mta"})
_FIELD_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
_ADDRESS = re.compile(r"[^\s<>;:\"(),\[\]]+@[^\s<>;:\"(),\[\]]+")


def parse_bounce(report: dict[str, Any]) -> list[Event]:
    """The events in one report the bounce listener queued (see the module docstring)."""
    message, data = _read_message(report)
    return _read(_Context(report, message, data))


def read_message(data: bytes, *, received_at: float = 0.0) -> list[Event]:
    """The events in one message's bytes, as `parse_bounce` reads it from the events queue;
    EventFormatError for bytes that are no email."""
    report = {
        "source": "smtp",
        "receivedAt": received_at,
        "mailFrom": "",
        "rcptTo": [],
        "message": base64.b64encode(data).decode("ascii"),
    }
    return parse_bounce(report)


def _read(context: _Context) -> list[Event]:
    if context.unparsed:
        return [context.unknown("MIME nested too deeply or split into too many parts to read")]
    for reader in (_delivery_status, _feedback_report, _auto_reply, _other_formats):
        events = reader(context)
        if events:
            return events
    return [context.unknown(context.why or f"not a report this version reads ({context.kind})")]


def _read_message(report: dict[str, Any]) -> tuple[Message, bytes]:
    if not isinstance(report, dict) or not isinstance(report.get("message"), str):
        raise EventFormatError("smtp report without a `message` (base64 text)")
    try:
        data = base64.b64decode(report["message"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EventFormatError(f"`message` is not base64: {exc}") from None
    # compat32: header values stay text. The structured parser of policy.default raises on
    # some malformed headers (IndexError deep in CPython), and a report must never fail so.
    message = _parse(data[:MAX_READ_BYTES])
    if not data.strip() or not message.keys():
        raise EventFormatError("`message` is not an email: it has no header fields")
    return message, data


def _parse(data: bytes) -> Message:
    """The message, or only its headers (marked `_gomailpy_unparsed`) when its MIME tree is
    deeper or wider than any report's: the email package recurses once per level."""
    if data.lower().count(b"boundary=") <= _MAX_BOUNDARIES:
        try:
            return BytesParser(policy=policy.compat32).parsebytes(data)
        except RecursionError:
            pass
    headers = BytesParser(policy=policy.compat32).parsebytes(data, headersonly=True)
    headers.set_payload("")
    headers._gomailpy_unparsed = True  # type: ignore[attr-defined]
    return headers


class _Context:
    """What every event of one report shares: its email, its id, its time, its raw."""

    def __init__(self, report: dict[str, Any], message: Message, data: bytes) -> None:
        self.report = report
        self.message = message
        self.data = data
        self.unparsed = bool(getattr(message, "_gomailpy_unparsed", False))
        self.kind = message.get_content_type()
        self.why: str | None = None  # what the readers found amiss, for the unknown event
        self.parts = [] if self.unparsed else list(_walk(message))
        self.unparsed = self.unparsed or len(self.parts) > MAX_PARTS
        self.report_id = _text(message.get("Message-ID")) or hashlib.sha256(data).hexdigest()
        self.original = _returned_headers(self.parts)
        self.message_id = _message_id(report, self.original)
        self.instance = _instance(report)  # the relay that sent it, from the VERP address
        # When the listener received it: our clock, to the microsecond, so a report sorts after
        # the send it is about; the report's own Date (whole seconds, the relay's clock) is kept
        # in raw.
        self.reported_at = _date(message.get("Date"))
        received_at = _number(report.get("receivedAt"))
        self.at = iso(received_at) if received_at > 0 else self.reported_at or iso(0)

    def part(self, content_types: tuple[str, ...]) -> Message | None:
        return next((p for p in self.parts if p.get_content_type() in content_types), None)

    def event(
        self, recipient: str | None, kind: EventType, fields: dict[str, str], **extra: Any
    ) -> Event:
        return Event(
            id=stable_id(self.report_id, (recipient or "").lower()),
            message_id=self.message_id,
            recipient=recipient,
            provider=PROVIDER,
            type=kind,
            at=self.at,
            instance=self.instance,
            raw={"reportId": self.report_id, "fields": fields, **self._envelope()},
            **extra,
        )

    def failure(
        self,
        recipient: str,
        found: Classification,
        fields: dict[str, str],
        diagnostic: str | None,
        *,
        final: bool,
    ) -> Event:
        """The event of a recipient the report says failed (`final`) or is still tried."""
        if final:
            kind, subtype = outcome(found)
        else:
            kind, subtype = EventType.DEFERRED, None
        return self.event(
            recipient,
            kind,
            fields,
            subtype=subtype,
            reason=found.reason.value,
            status=found.status,
            mta_response=diagnostic,
        )

    def unknown(self, reason: str, recipient: str | None = None) -> Event:
        kept = self.data[:MAX_KEPT_BYTES]
        return Event(
            id=stable_id(self.report_id, (recipient or "").lower(), "unknown"),
            message_id=self.message_id,
            recipient=recipient,
            provider=PROVIDER,
            type=EventType.UNKNOWN,
            at=self.at,
            instance=self.instance,
            reason=reason,
            raw={
                "reportId": self.report_id,
                "message": base64.b64encode(kept).decode("ascii"),
                "truncated": len(kept) < len(self.data),
                "subject": _decoded(self.message.get("Subject")),
                **self._envelope(),
            },
        )

    def _envelope(self) -> dict[str, Any]:
        return {
            "reportedAt": self.reported_at,
            "mailFrom": self.report.get("mailFrom"),
            "rcptTo": self.report.get("rcptTo"),
            "receivedAt": self.report.get("receivedAt"),
        }


def _walk(message: Message) -> Iterator[Message]:
    """Every part, depth first, at most MAX_PARTS + 1 of them (Message.walk recurses without
    end): one more than MAX_PARTS says the message has too many to read."""
    stack, count = [message], 0
    while stack and count <= MAX_PARTS:
        part = stack.pop()
        count += 1
        yield part
        payload = part.get_payload()
        if isinstance(payload, list) and part.get_content_type() not in _DSN_TYPES:
            stack.extend(reversed([p for p in payload if isinstance(p, Message)]))


# --- DSNs ----------------------------------------------------------------------------------------


def _delivery_status(context: _Context) -> list[Event]:
    part = context.part(_DSN_TYPES)
    if part is None:
        if _report_type(context.message) == "delivery-status":
            context.why = "a delivery-status report without per-recipient fields"
        return []
    per_message, recipients = _records(_part_text(part))
    if not recipients:
        context.why = "a delivery-status report without per-recipient fields"
        return []
    events: list[Event] = []
    named = [_recipient(fields) for fields in recipients]
    seen: set[str] = set()
    for fields, recipient in zip(recipients, named, strict=True):
        if recipient is not None and recipient.lower() in seen:
            continue  # the same recipient twice (some MTAs repeat a block per attempt)
        seen.add((recipient or "").lower())
        action = _action(fields)
        status = fields.get("status", "")
        diagnostic = _diagnostic(fields.get("diagnostic-code"))
        if recipient is None or action is None:
            what = f"action {fields.get('action') or '?'}, status {status or '?'}"
            events.append(context.unknown(f"DSN block not understood ({what})", recipient))
            continue
        raw_fields = {**{f"message.{k}": v for k, v in per_message.items()}, **fields}
        if action in _DELIVERED_ACTIONS:
            events.append(context.event(recipient, EventType.DELIVERED, raw_fields))
            continue
        found = classify(diagnostic, status)
        if found.reason is Reason.UNDEFINED and not diagnostic:
            # Only the Status: the text of the notification beside it may say why.
            others = [a for a in named if a is not None and a.lower() != recipient.lower()]
            found = _classified_by_notification(context, recipient, status, others) or found
        final = action == "failed"
        events.append(context.failure(recipient, found, raw_fields, diagnostic, final=final))
    if all(e.type is EventType.UNKNOWN for e in events):
        # No recipient read (an x400 Final-Recipient, a mangled Action): other readers may.
        context.why = events[0].reason if events else context.why
        return []
    return events


def _recipient(fields: _Fields) -> str | None:
    """Original-Recipient (the address we sent to), else Final-, else X-Actual-Recipient."""
    return next((a for f in _RECIPIENT_FIELDS if (a := _address(fields.get(f))) is not None), None)


def _classified_by_notification(
    context: _Context, recipient: str, status: str, others: list[str]
) -> Classification | None:
    text = notification_text(context.message)
    for near in diagnostic_windows(text, recipient, others):
        found = classify(near, status)
        if found.reason is not Reason.UNDEFINED:
            return found
    return None


def _action(fields: _Fields) -> str | None:
    """The Action, read leniently ("failed (bad address)", "Failure", "error"); without one,
    what the Status class (else the reply code) says."""
    value = fields.get("action", "").strip().lower()
    if value:
        return next((name for prefix, name in _ACTIONS if value.startswith(prefix)), None)
    found = classify(fields.get("diagnostic-code"), fields.get("status"))
    klass = found.status[0] if found.status else str(found.code or "")[:1]
    return _STATUS_ACTIONS.get(klass)


def _diagnostic(value: str | None) -> str | None:
    """A Diagnostic-Code without its type: `smtp; 550 5.1.1 ...` → `550 5.1.1 ...`."""
    if not value:
        return None
    kind, semicolon, rest = value.partition(";")
    if semicolon and re.fullmatch(r"\s*[A-Za-z][A-Za-z0-9-]*\s*", kind):
        value = rest
    return value.strip() or None


class _Fields(dict[str, str]):
    """One block of report fields, names lower-cased; a repeated field keeps every value."""

    def __init__(self) -> None:
        super().__init__()
        self._all: dict[str, list[str]] = {}

    def add(self, name: str, value: str) -> None:
        key = name.strip().lower()
        self._all.setdefault(key, []).append(value)
        self.setdefault(key, value)

    def get_all(self, name: str) -> list[str]:
        return self._all.get(name, [])


def _part_text(part: Message) -> str:
    """The text of a report part, transfer encoding undone. The email package splits
    message/delivery-status into blocks of fields itself (it does not decode it first), other
    types stay one string."""
    payload = part.get_payload()
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if isinstance(payload, list):
        texts = []
        for block in payload:
            if not isinstance(block, Message):
                continue
            lines = [f"{name}: {value}" for name, value in block.items()]
            body = block.get_payload()
            if isinstance(body, str) and body.strip():
                lines.append(body)
            texts.append("\n".join(lines))
        text = "\n\n".join(texts)
        raw = text.encode("utf-8", "surrogateescape")
        if encoding == "base64":
            try:
                raw = base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", raw))
            except (binascii.Error, ValueError):
                pass
        elif encoding == "quoted-printable":
            raw = quopri.decodestring(raw)
        return _clean(raw.decode("utf-8", "surrogateescape"))
    decoded = part.get_payload(decode=True)
    if isinstance(decoded, bytes):
        return _clean(decoded.decode("utf-8", "replace"))
    return _clean(payload) if isinstance(payload, str) else ""


def _field_lines(text: str) -> Iterator[tuple[str, str] | None]:
    """(name, value) for each field of `text`, folded lines unfolded; None at each blank line."""
    name: str | None = None
    value: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line[:1] in (" ", "\t") and name is not None and line.strip():
            value.append(line.strip())
            continue
        if name is not None:
            yield name, " ".join(value)[:_MAX_FIELD]
            name = None
        if not line.strip():
            yield None
            continue
        field = _FIELD_LINE.match(line)
        if field is not None:
            name, value = field.group(1).lower(), [field.group(2).strip()]
    if name is not None:
        yield name, " ".join(value)[:_MAX_FIELD]


def _records(text: str) -> tuple[_Fields, list[_Fields]]:
    """The per-message fields and one record per recipient, however the blocks are laid out:
    a record starts at a blank line after one that named a recipient, or where a recipient
    field repeats within a block."""
    per_message = _Fields()
    records: list[_Fields] = []
    current = _Fields()  # the record being read; a recipient of its own or not yet

    def close() -> None:
        nonlocal current
        if any(f in current for f in _RECIPIENT_FIELDS):
            records.append(current)
        elif records and any(f in current for f in _PER_RECIPIENT_HINTS):
            # Per-recipient fields in a block of their own: they belong to the last recipient.
            for key, values in current._all.items():
                for value in values:
                    if key not in records[-1]:
                        records[-1].add(key, value)
        else:
            for key, values in current._all.items():
                for value in values:
                    per_message.add(key, value)
        current = _Fields()

    for line in _field_lines(text):
        if line is None:
            close()
            continue
        name, value = line
        if name in _PER_MESSAGE_FIELDS and not any(f in current for f in _RECIPIENT_FIELDS):
            per_message.add(name, value)
            continue
        if name in _RECIPIENT_FIELDS and name in current:
            close()  # a second recipient in the same block
        current.add(name, value)
    close()
    return per_message, records


def _address(value: str | None) -> str | None:
    """The address of a recipient field: `rfc822; user@example.org`, `RFC822; <u@x>`,
    `<u@x>`, a bare address; None for one of another type (x400, a local name)."""
    if not value:
        return None
    kind, semicolon, rest = value.partition(";")
    text = rest if semicolon else kind
    found = _ADDRESS.search(text)
    if found is None:
        return None
    address = found.group(0).strip(".'")
    local, _, domain = address.rpartition("@")
    return address if local and domain else None


# --- complaints ---------------------------------------------------------------------------------


def _feedback_report(context: _Context) -> list[Event]:
    part = context.part(_ARF_TYPES)
    if part is None:
        if _report_type(context.message) == "feedback-report":
            context.why = "a feedback report without its feedback-report part"
        return []
    fields = _Fields()
    for line in _field_lines(_part_text(part)):
        if line is not None:
            fields.add(*line)
    feedback = fields.get("feedback-type", "").strip().lower()
    recipients = [
        address
        for value in fields.get_all("original-rcpt-to")
        if (address := _address(value)) is not None
    ]
    if not recipients and context.original is not None:
        recipients = [a for a in _addresses(context.original.get_all("To") or []) if a]
    if feedback in _NOT_COMPLAINTS or not feedback:
        return [context.unknown(f"feedback report of type {feedback or '?'}")]
    reason = f"ARF {feedback}"
    return [
        context.event(recipient, EventType.COMPLAINED, dict(fields), reason=reason)
        for recipient in recipients
    ] or [context.unknown(f"{reason}: names no recipient")]


# --- auto-replies and other formats -------------------------------------------------------------


def _sender(context: _Context) -> str | None:
    address = parseaddr(_text(context.message.get("From")) or "")[1]
    return address if "@" in address else None


def _auto_reply(context: _Context, *, body: bool = False) -> list[Event]:
    message = context.message
    sender = _sender(context)

    def header(name: str) -> str | None:
        value = message.get(name)
        return None if value is None else str(value)

    text = notification_text(message) if body else None
    signal = auto_reply_signal(header, sender, _decoded(message.get("Subject")), text)
    if signal is None or sender is None:
        return []
    fields = {"signal": signal, "from": sender}
    return [context.event(sender, EventType.AUTORESPONDED, fields, reason="autoreply")]


def _other_formats(context: _Context) -> list[Event]:
    events = []
    sender, subject = _sender(context), _decoded(context.message.get("Subject"))
    ours = [a for a in (sender, *_addresses(context.message.get_all("To") or [])) if a]
    rcpt_to = context.report.get("rcptTo")
    ours += [a for a in (rcpt_to if isinstance(rcpt_to, list) else []) if isinstance(a, str)]
    failures = read_failures(
        context.message,
        context.data[:MAX_READ_BYTES],
        failure=looks_like_failure(sender, subject),
        ours=ours,
    )
    for failure in failures:
        found = failure.found
        fields = {"reader": "flufl.bounce", "permanent": str(failure.permanent).lower()}
        events.append(
            context.failure(
                failure.address, found, fields, failure.diagnostic, final=failure.permanent
            )
        )
    if events:
        return events
    if not looks_like_failure(sender, subject):
        return _auto_reply(context, body=True)
    return []


# --- the returned message, and helpers -----------------------------------------------------------


def _returned_headers(parts: list[Message]) -> Message | None:
    """The headers of the message a report returns (message/rfc822 or text/rfc822-headers)."""
    for part in parts:
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        elif kind in ("text/rfc822-headers", "text/global-headers"):
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return HeaderParser().parsestr(raw.decode("utf-8", "replace"))
    return None


def _instance(report: dict[str, Any]) -> str | None:
    rcpt_to = report.get("rcptTo")
    for address in rcpt_to if isinstance(rcpt_to, list) else []:
        if isinstance(address, str) and (found := instance_from(address)):
            return found
    return None


def _message_id(report: dict[str, Any], original: Message | None) -> str | None:
    rcpt_to = report.get("rcptTo")
    for address in rcpt_to if isinstance(rcpt_to, list) else []:
        if isinstance(address, str) and (found := message_id_from(address)):
            return found
    if original is None:
        return None
    ours = _text(original.get("X-Gomailpy-Id"))
    if ours:
        return ours
    match = _OUR_MESSAGE_ID.search(_text(original.get("Message-ID")) or "")
    return match.group(1) if match else None


def _report_type(message: Message) -> str:
    return str(message.get_param("report-type", "") or "").strip().lower()


def _addresses(values: list[Any]) -> list[str]:
    return [address for _, address in getaddresses([str(v) for v in values]) if "@" in address]


def _clean(text: str) -> str:
    """Text that encodes as UTF-8 (8bit bytes the parser kept as surrogates become U+FFFD)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return _clean(" ".join(str(value).split())) or None


def _decoded(value: Any) -> str | None:
    """A header's text with RFC 2047 encoded words decoded (as written when they are broken)."""
    try:
        return _text(make_header(decode_header(str(value)))) if value is not None else None
    except (ValueError, LookupError, UnicodeError):
        return _text(value)


def _date(value: Any) -> str | None:
    text = _text(value)
    if not text:
        return None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return iso(moment.timestamp())


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def bounce_subtype(status: str, code: int | None = None) -> str:
    """hard or soft for a refusal's reply text ("5.1.1 no such user", or any text) and SMTP
    `code`, by reason (gomailpy.bounce_reasons): hard only for a bad address."""
    text = f"{code} {status}" if code is not None and find_code(status) is None else status
    return outcome(classify(text))[1]
