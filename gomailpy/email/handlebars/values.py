"""What template data means to a template: the only lookups there are (a dict's key, a list's
index, the length of a list or string), which values count as true, and a value's text.

Data is JSON's: dict, list, str, int, float, bool, None. Nothing here reads an attribute or
calls a method of a value, whatever its type: a value of any other type finds nothing, counts
as false and prints as nothing.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

MAX_INDEX_DIGITS = 9
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Handlebars' escapeExpression: the characters that could end an attribute or start a tag.
_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;", "`": "&#x60;",
     "=": "&#x3D;"}
)  # fmt: skip


def child(value: Any, key: str) -> Any:
    """`value[key]` for a dict, the item at index `key` (digits) or `length` for a list, a
    string's `length`; None for anything else."""
    if isinstance(value, dict):
        return value.get(key)
    if isinstance(value, list):
        if key == "length":
            return len(value)
        index = _index(key)
        return value[index] if index is not None and index < len(value) else None
    if isinstance(value, str) and key == "length":
        return len(value)
    return None


def lookup(value: Any, key: Any) -> Any:
    """Handlebars' `lookup` helper: `child` with a key that may be a number."""
    if isinstance(key, bool) or key is None:
        return None
    if isinstance(key, int):
        key = str(key)
    return child(value, key) if isinstance(key, str) else None


def _index(key: str) -> int | None:
    if key.isascii() and key.isdigit() and len(key) <= MAX_INDEX_DIGITS:
        return int(key)
    return None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def truthy(value: Any) -> bool:
    """As `{{#if}}` sees it (JavaScript's, and an empty list is false): None, false, 0, NaN,
    "" and [] are false; {} is true."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if is_number(value):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str | list):
        return len(value) > 0
    return isinstance(value, dict)


def is_empty(value: Any) -> bool:
    """Handlebars' isEmpty (`{{#with}}`, sections): as not `truthy`, except that 0 is there."""
    if is_number(value) and value == 0:
        return False
    return not truthy(value)


def as_number(value: Any) -> float | None:
    """A number, or a string that is one written out ("3", "-1.5e3"); else None."""
    if is_number(value):
        return _float(value)
    if isinstance(value, str):
        text = value.strip()
        if len(text) <= 400 and _NUMBER.fullmatch(text):
            return float(text)
    return None


def _float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an int past float's range
        return math.inf if value > 0 else -math.inf


def scalar_text(value: Any) -> str | None:
    """The text of a value that is not a list or a dict, as JavaScript prints it; None for a
    list, a dict or anything that is not template data."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _int_text(value)
    if isinstance(value, float):
        return number_text(value)
    return None


def _int_text(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # more digits than Python prints (sys.set_int_max_str_digits)
        return number_text(_float(value))


def number_text(value: float) -> str:
    """A float as JavaScript prints it: 3.0 → "3", 1e21 → "1e+21", 1e-7 → "1e-7"."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        if 1e-7 <= abs(value) < 1e21:
            return format(Decimal(text), "f")
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text


def escape(text: str) -> str:
    """`text` safe inside HTML elements and quoted attributes (Handlebars' escapeExpression)."""
    return text.translate(_ESCAPES)
