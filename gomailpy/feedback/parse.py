"""Read one body from the events queue into events, whichever source put it there.

    events = parse_report(message.body)   # raises EventFormatError when nothing can read it

The shapes (see the events contract in the README):
- SES: the SNS envelope `{"Type": "Notification", "TopicArn", "Message": "<json>", ...}`, read by
  `gomailpy.feedback.ses.parse_sns`;
- SendGrid: `{"source": "sendgrid", "receivedAt", "events": [...]}`, read by
  `gomailpy.feedback.sendgrid.parse_sendgrid`;
- Mailgun: `{"source": "mailgun", "receivedAt", "instance", "events": [<event-data>, ...]}`, read
  by `gomailpy.feedback.mailgun.parse_mailgun`;
- SMTP relay bounces: `{"source": "smtp", "receivedAt", "mailFrom", "rcptTo", "message"}`, read by
  `gomailpy.feedback.dsn.parse_bounce`;
- gomailpy's own: `{"source": "gomailpy", "events": [<Event.to_json()>, ...]}` (replays, tools).

Each source's parser is imported when its first report arrives, so one source's parser never
stands in the way of another's. Whatever a parser raises on a body it cannot read becomes an
`EventFormatError` with the source in its reason: the consumer dead-letters the body, never
loses it and never stops on it.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

from gomailpy.errors import EventFormatError
from gomailpy.events import Event

MAX_REASON = 300  # characters of a parser's complaint kept as the dead letter's reason


def parse_report(body: str) -> list[Event]:
    """The events in one events-queue body; [] for a report that carries none (SNS's
    validation message). Raises EventFormatError saying why a body cannot be read."""
    try:
        data: Any = json.loads(body)
    except ValueError as exc:
        raise EventFormatError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EventFormatError("not a JSON object")
    if "TopicArn" in data or "Type" in data:
        parse_sns = _parser("ses", "parse_sns")
        return _guarded("ses", lambda: parse_sns(data))
    source = data.get("source")
    if source == "sendgrid":
        events = data.get("events")
        if not isinstance(events, list):
            raise EventFormatError("sendgrid: `events` is not a list")
        parse = _parser("sendgrid", "parse_sendgrid")
        instance = data.get("instance")  # the instance's webhook route took them (api.views.events)
        if isinstance(instance, str):
            of_instance = _parser("sendgrid", "parse_sendgrid_of")
            return _guarded("sendgrid", lambda: of_instance(events, instance=instance))
        return _guarded("sendgrid", lambda: parse(events))
    if source == "mailgun":
        events = data.get("events")
        if not isinstance(events, list):
            raise EventFormatError("mailgun: `events` is not a list")
        parse = _parser("mailgun", "parse_mailgun")
        named = data.get("instance")  # the instance's webhook route took them (api.views.events)
        instance = named if isinstance(named, str) else None
        return _guarded("mailgun", lambda: parse(events, instance=instance))
    if source == "smtp":
        parse = _parser("dsn", "parse_bounce")
        return _guarded("smtp", lambda: parse(data))
    if source == "gomailpy":
        return _guarded("gomailpy", lambda: [Event.from_json(e) for e in data["events"]])
    raise EventFormatError(
        f"unknown report: neither an SNS envelope nor a source of sendgrid, mailgun, smtp or"
        f" gomailpy"
        f" (keys: {', '.join(sorted(map(str, data))[:8])})"
    )


def _parser(module: str, function: str) -> Callable[..., list[Event]]:
    try:
        found: Callable[..., list[Event]] = getattr(
            importlib.import_module(f"gomailpy.feedback.{module}"), function
        )
    except (ImportError, AttributeError) as exc:
        raise EventFormatError(f"no parser for {module} reports in this version: {exc}") from None
    return found


def _guarded(source: str, parse: Callable[[], list[Event]]) -> list[Event]:
    try:
        events = parse()
    except EventFormatError as exc:
        raise EventFormatError(f"{source}: {exc}"[:MAX_REASON]) from None
    except Exception as exc:  # a parser meeting a shape it never expected
        raise EventFormatError(f"{source}: {type(exc).__name__}: {exc}"[:MAX_REASON]) from None
    if not isinstance(events, list) or not all(isinstance(e, Event) for e in events):
        raise EventFormatError(f"{source}: the parser returned no list of events")
    return events
