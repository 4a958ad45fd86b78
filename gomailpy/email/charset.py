"""Which characters a queue message can carry.

SQS accepts #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF and refuses a message
holding anything else (InvalidMessageContents). The envelope is JSON, which escapes the other C0
controls (U+0001 travels as the six characters \\u0001), so of the characters a request can hold
only surrogates, U+FFFE and U+FFFF would reach SQS raw. The API refuses those at validation (422,
naming the field) instead of offering every queue a message each must refuse.
"""

from __future__ import annotations

import re
from typing import Any

_UNQUEUEABLE = re.compile("[\ud800-\udfff\ufffe\uffff]")


def first_unqueueable(value: Any) -> str | None:
    """The first character a queue cannot carry anywhere in a decoded JSON `value` (object keys
    included), or None."""
    if isinstance(value, str):
        found = _UNQUEUEABLE.search(value)
        return found.group() if found else None
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list):
        for item in value:
            if (char := first_unqueueable(item)) is not None:
                return char
    return None
