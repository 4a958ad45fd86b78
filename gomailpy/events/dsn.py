"""Reports an SMTP relay mails back, read into events: DSNs (RFC 3464) and complaints (ARF).

    events = parse_bounce({"source": "smtp", "receivedAt": 1764300000.0,
                           "mailFrom": "", "rcptTo": ["bounces+<id>@bounces.example.com"],
                           "message": "<the whole message, base64>"})

The bounce listener (gomailpy.bounces) puts what it receives on the events queue in that shape.

- A DSN is `multipart/report; report-type=delivery-status` whose `message/delivery-status` part
  holds one block of fields per recipient. Per recipient (Original-Recipient, else
  Final-Recipient): Action `failed` with Status 5.x.x → bounced/hard, 4.x.x → bounced/soft
  (`bounce_subtype`: X.2.2 mailbox full and X.2.3/X.3.4 message too large are soft at any
  class, the address is fine); `delayed` → deferred; `delivered`, `relayed`, `expanded` → delivered.
- A complaint is `multipart/report; report-type=feedback-report` (RFC 5965): complained, for
  Original-Rcpt-To, else the To of the returned message. Feedback-Type `not-spam` is no
  complaint: kept as unknown.
- Which email: the message id in the VERP address the report was sent to (gomailpy.verp), else
  the `X-Gomailpy-Id` or `Message-ID: <id@gomailpy>` header of the returned message.
- Anything else — an auto-reply, a bounce in prose, a report missing its fields — is one
  `unknown` event that keeps the message (base64, up to `MAX_KEPT_BYTES`) for inspection.
- Only a body that is no email at all (not base64, no header fields) raises EventFormatError.

Event ids are `stable_id(<the report's Message-ID, else a hash of it>, <recipient>)`, so the
same report queued twice is recorded once. An event's `at` is when the listener received the
report (`receivedAt`); the report's own Date is `raw["reportedAt"]`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.utils import parsedate_to_datetime
from typing import Any

from gomailpy.errors import EventFormatError
from gomailpy.events import Event, EventType, Subtype, iso, stable_id
from gomailpy.mime import MESSAGE_ID_DOMAIN
from gomailpy.verp import message_id_from

PROVIDER = "smtp"
MAX_KEPT_BYTES = 64 * 1024  # of an unreadable report kept in its event's raw
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_NOT_ABOUT_THE_ADDRESS = frozenset({("2", "2"), ("2", "3"), ("3", "4")})  # full, too large
_OUR_MESSAGE_ID = re.compile(rf"<([^<>@\s]+)@{re.escape(MESSAGE_ID_DOMAIN)}>")
_DELIVERED_ACTIONS = frozenset({"delivered", "relayed", "expanded"})
_NOT_COMPLAINTS = frozenset({"not-spam"})


def parse_bounce(report: dict[str, Any]) -> list[Event]:
    """The events in one report the bounce listener queued (see the module docstring)."""
    message, data = _read_message(report)
    context = _Context(report, message, data)
    content_type = message.get_content_type()
    report_type = str(message.get_param("report-type", "") or "").lower()
    if content_type == "multipart/report" and report_type == "delivery-status":
        events = _delivery_status(context)
    elif content_type == "multipart/report" and report_type == "feedback-report":
        events = _feedback_report(context)
    else:
        events = []
    return events or [context.unknown(f"not a report this version reads ({content_type})")]


def _read_message(report: dict[str, Any]) -> tuple[Message, bytes]:
    if not isinstance(report, dict) or not isinstance(report.get("message"), str):
        raise EventFormatError("smtp report without a `message` (base64 text)")
    try:
        data = base64.b64decode(report["message"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EventFormatError(f"`message` is not base64: {exc}") from None
    # compat32: header values stay text. The structured parser of policy.default raises on
    # some malformed headers (IndexError deep in CPython), and a report must never fail so.
    message = BytesParser(policy=policy.compat32).parsebytes(data)
    if not data.strip() or not message.keys():
        raise EventFormatError("`message` is not an email: it has no header fields")
    return message, data


class _Context:
    """What every event of one report shares: its email, its id, its time, its raw."""

    def __init__(self, report: dict[str, Any], message: Message, data: bytes) -> None:
        self.report = report
        self.message = message
        self.data = data
        self.report_id = _text(message.get("Message-ID")) or hashlib.sha256(data).hexdigest()
        self.original = _returned_headers(message)
        self.message_id = _message_id(report, self.original)
        # When the listener received it: our clock, to the microsecond, so a report sorts after
        # the send it is about; the report's own Date (whole seconds, the relay's clock) is kept
        # in raw.
        self.reported_at = _date(message.get("Date"))
        received_at = _number(report.get("receivedAt"))
        self.at = iso(received_at) if received_at > 0 else self.reported_at or iso(0)

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
            raw={"reportId": self.report_id, "fields": fields, **self._envelope()},
            **extra,
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


def _delivery_status(context: _Context) -> list[Event]:
    blocks = _field_blocks(
        context.message, ("message/delivery-status", "message/global-delivery-status")
    )
    if len(blocks) < 2:
        return [context.unknown("a delivery-status report without per-recipient fields")]
    per_message, recipients = blocks[0], blocks[1:]
    events = []
    for fields in recipients:
        recipient = _address(fields.get("original-recipient")) or _address(
            fields.get("final-recipient")
        )
        action = fields.get("action", "").lower()
        status = _STATUS.search(fields.get("status", "")) or _STATUS.search(
            fields.get("diagnostic-code", "")
        )
        kind, subtype = _classify(action, status)
        if kind is None or recipient is None:
            what = f"action {action or '?'}, status {fields.get('status', '?')}"
            events.append(context.unknown(f"DSN block not understood ({what})", recipient))
            continue
        diagnostic = fields.get("diagnostic-code")
        events.append(
            context.event(
                recipient,
                kind,
                {**{f"message.{k}": v for k, v in per_message.items()}, **fields},
                subtype=subtype,
                reason=f"DSN {action} {status.group(0) if status else ''}".strip(),
                mta_response=diagnostic.partition(";")[2].strip() if diagnostic else None,
            )
        )
    return events


def bounce_subtype(status: str, code: int | None = None) -> str:
    """hard or soft for a refusal's enhanced status ("5.1.1", or a reply text starting with
    one) or, without one, its SMTP `code`: 5.x.x is hard unless it is about the message rather
    than the address (X.2.2 mailbox full, X.2.3 and X.3.4 too large; 552 without a status)."""
    found = _STATUS.search(status)
    if found is None:
        hard = code is not None and 500 <= code < 600 and code != 552
    else:
        klass, subject, detail = found.groups()
        hard = klass == "5" and (subject, detail) not in _NOT_ABOUT_THE_ADDRESS
    return Subtype.HARD.value if hard else Subtype.SOFT.value


def _classify(action: str, status: re.Match[str] | None) -> tuple[EventType | None, str | None]:
    if action == "failed":
        if status is None:
            return None, None
        return EventType.BOUNCED, bounce_subtype(status.group(0))
    if action == "delayed":
        return EventType.DEFERRED, None
    if action in _DELIVERED_ACTIONS:
        return EventType.DELIVERED, None
    return None, None


def _feedback_report(context: _Context) -> list[Event]:
    blocks = _field_blocks(context.message, ("message/feedback-report",))
    if not blocks:
        return [context.unknown("a feedback report without its feedback-report part")]
    fields = blocks[0]
    feedback = fields.get("feedback-type", "").lower()
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


def _field_blocks(message: Message, content_types: tuple[str, ...]) -> list[_Fields]:
    """The blocks of fields of the first part of one of `content_types`: the per-message block
    first. The parser splits message/delivery-status into blocks itself; other types (global
    DSNs, feedback reports) are one parsed "message" whose body holds the blocks after it."""
    part = next((p for p in message.walk() if p.get_content_type() in content_types), None)
    if part is None:
        return []
    payload = part.get_payload()
    texts: list[str] = []
    if isinstance(payload, list):
        for block in payload:
            if not isinstance(block, Message):
                continue
            texts.append(_headers_text(block))
            body = block.get_payload()
            if isinstance(body, str) and body.strip():
                texts.extend(re.split(r"\r?\n\s*\r?\n", body))
    elif isinstance(payload, str):
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else payload
        texts.extend(re.split(r"\r?\n\s*\r?\n", text))
    blocks = []
    for text in texts:
        fields = _Fields()
        for name, value in HeaderParser(policy=policy.compat32).parsestr(text.strip()).items():
            fields.add(name, _text(value) or "")
        if fields:
            blocks.append(fields)
    return blocks


def _headers_text(block: Message) -> str:
    return "\n".join(f"{name}: {_text(value) or ''}" for name, value in block.items())


def _returned_headers(message: Message) -> Message | None:
    """The headers of the message a report returns (message/rfc822 or text/rfc822-headers)."""
    for part in message.walk():
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


def _address(value: str | None) -> str | None:
    """The address of a report field `rfc822; user@example.org` (or a bare address)."""
    if not value:
        return None
    address = value.partition(";")[2] if ";" in value else value
    address = address.strip().strip("<>").strip()
    return address if "@" in address else None


def _addresses(values: list[Any]) -> list[str]:
    from email.utils import getaddresses

    return [address for _, address in getaddresses([str(v) for v in values]) if "@" in address]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return " ".join(str(value).split()) or None


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
