"""SendGrid's `formatDate` helper: `{{formatDate timeStamp dateFormat [timezoneOffset]}}`.

The time is epoch (a number, or a string of digits: milliseconds from 1e11 up, which is 1973
in milliseconds and the year 5138 in seconds, else seconds) or ISO 8601 ("2020-01-01T23:00:00Z",
"2020-01-01"; RFC 2822 dates are read too); one without a zone is UTC. The format is written with
SendGrid's tokens (moment.js's): YYYY YY, MMMM MMM MM M, DD D, dddd ddd, HH H hh h, mm m, ss s,
A a, ZZ Z; `[text]` is kept as written and any other character as it is. Without a format, the
time is printed in ISO 8601 with milliseconds. The offset ("-0800", "-08:00", "+05:30", or a
number: hours below 16, else minutes) moves the time from UTC, which is the default. A time
that cannot be read prints as nothing, as in SendGrid.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from gomailpy.email.handlebars.values import is_number

MAX_FORMAT_CHARS = 256  # a longer format is not a date format
MAX_TIME_CHARS = 64
MILLISECONDS_FROM = 1e11
MONTHS = (
    "January February March April May June July August September October November December"
).split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_TOKENS = re.compile(r"\[[^\]]*\]|YYYY|YY|MMMM|MMM|MM|M|DD|D|dddd|ddd|HH|H|hh|h|mm|m|ss|s|A|a|ZZ|Z")
_EPOCH = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,9})?")
_OFFSET = re.compile(r"([+-])([0-9]{1,2}):?([0-9]{2})?")


def format_date(value: Any, fmt: Any = None, offset: Any = None) -> str:
    """`value` as `fmt` says, in the zone of `offset` (UTC without one); "" if unreadable."""
    moment = parse_time(value)
    if moment is None:
        return ""
    try:
        local = moment.astimezone(parse_offset(offset) or UTC)
    except OverflowError:  # the first or last day there is, moved past it
        return ""
    if fmt is None or fmt == "":
        return _iso(local)
    if not isinstance(fmt, str) or len(fmt) > MAX_FORMAT_CHARS:
        return ""
    return _TOKENS.sub(lambda match: _token(match.group(0), local), fmt)


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from epoch or an ISO 8601 / RFC 2822 string, or None."""
    if is_number(value):
        return _from_epoch(float(value))
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > MAX_TIME_CHARS:
        return None
    if _EPOCH.fullmatch(text):
        return _from_epoch(float(text))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _from_epoch(number: float) -> datetime | None:
    if not math.isfinite(number):
        return None
    seconds = number / 1000 if abs(number) >= MILLISECONDS_FROM else number
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def parse_offset(offset: Any) -> timezone | None:
    """The zone of "-0800", "-08:00", "Z" or a number (hours below 16, else minutes)."""
    minutes: float
    if is_number(offset):
        if not math.isfinite(offset):
            return None
        minutes = offset * 60 if abs(offset) < 16 else offset
    elif isinstance(offset, str):
        text = offset.strip()
        if text == "Z":
            return UTC
        found = _OFFSET.fullmatch(text)
        if found is None:
            return None
        sign = -1 if found.group(1) == "-" else 1
        minutes = sign * (int(found.group(2)) * 60 + int(found.group(3) or 0))
    else:
        return None
    if abs(minutes) >= 24 * 60:
        return None
    return timezone(timedelta(minutes=round(minutes)))


def _zone(moment: datetime, colon: bool) -> str:
    delta = moment.utcoffset() or timedelta()
    minutes = round(delta.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{minutes:02d}"


def _iso(moment: datetime) -> str:
    zone = "Z" if not moment.utcoffset() else _zone(moment, colon=True)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}{zone}"
    )


def _token(token: str, moment: datetime) -> str:
    if token.startswith("["):
        return token[1:-1]
    hour12 = moment.hour % 12 or 12
    if token == "YYYY":
        return f"{moment.year:04d}"
    if token == "YY":
        return f"{moment.year % 100:02d}"
    if token.startswith("M"):
        return _month(token, moment.month)
    if token == "DD":
        return f"{moment.day:02d}"
    if token == "D":
        return str(moment.day)
    if token.startswith("ddd"):
        day = DAYS[moment.weekday()]
        return day if token == "dddd" else day[:3]
    if token in ("HH", "H"):
        return f"{moment.hour:0{len(token)}d}"
    if token in ("hh", "h"):
        return f"{hour12:0{len(token)}d}"
    if token in ("mm", "m"):
        return f"{moment.minute:0{len(token)}d}"
    if token in ("ss", "s"):
        return f"{moment.second:0{len(token)}d}"
    if token in ("A", "a"):
        meridiem = "AM" if moment.hour < 12 else "PM"
        return meridiem if token == "A" else meridiem.lower()
    return _zone(moment, colon=token == "Z")


def _month(token: str, month: int) -> str:
    if token == "MMMM":
        return MONTHS[month - 1]
    if token == "MMM":
        return MONTHS[month - 1][:3]
    return f"{month:02d}" if token == "MM" else str(month)
