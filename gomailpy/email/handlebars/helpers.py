"""The helpers a template may call: Handlebars' own (`if`, `unless`, `each`, `with`, `lookup`)
and those SendGrid's dynamic templates add, with SendGrid's meaning:

- `{{#equals a b}}…{{else}}…{{/equals}}`, `notEquals`: equal after coercion, so 3 equals "3"
  (a number and a numeric string compare as numbers; lists and dicts only equal themselves);
- `greaterThan a b`, `lessThan a b`: as numbers when both are numbers or numeric strings, else
  as strings when both are strings, else false;
- `and a b…`, `or a b…`: truthiness as `{{#if}}` sees it ("", 0, [], null and false are false);
- `length x`: the characters of a string or the items of a list, else 0;
- `insert name "default=Customer"`: the value, or the default when it is missing or "";
- `formatDate time format [offset]`: see gomailpy.email.handlebars.dates.

The conditions work as blocks and, as values (true/false), inline and in subexpressions:
`{{#if (equals a b)}}`. Every helper here takes plain values and returns one; none can reach
anything but the data it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gomailpy.email.handlebars.dates import format_date
from gomailpy.email.handlebars.values import as_number, is_number, lookup, scalar_text, truthy


@dataclass(frozen=True, slots=True)
class Arity:
    least: int
    most: int | None  # None: no limit

    def describe(self) -> str:
        if self.least == self.most:
            return f"{self.least} argument{'s' if self.least != 1 else ''}"
        if self.most is None:
            return f"{self.least} or more arguments"
        return f"{self.least} to {self.most} arguments"


ONE = Arity(1, 1)
TWO = Arity(2, 2)
# Blocks only: they choose what of the block to render, and with which context.
BLOCK_ONLY: dict[str, Arity] = {"if": ONE, "unless": ONE, "each": ONE, "with": ONE}


def equals(a: Any, b: Any) -> bool:
    if isinstance(a, list | dict) or isinstance(b, list | dict):
        return a is b
    if a is None or b is None:
        return a is None and b is None
    if is_number(a) and is_number(b):
        return bool(as_number(a) == as_number(b))
    if is_number(a) or is_number(b):
        number, other = (a, b) if is_number(a) else (b, a)
        if isinstance(other, str):
            return as_number(other) == as_number(number)
        return isinstance(other, bool) and as_number(number) == float(other)  # true is 1
    text = scalar_text(a)
    return text is not None and text == scalar_text(b)


def _order(a: Any, b: Any) -> int | None:
    """-1, 0 or 1 as `a` is below, at or above `b`; None when they do not compare."""
    x, y = as_number(a), as_number(b)
    if x is not None and y is not None:
        return (x > y) - (x < y)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    return None


def _and(args: Sequence[Any]) -> bool:
    return all(truthy(arg) for arg in args)


def _or(args: Sequence[Any]) -> bool:
    return any(truthy(arg) for arg in args)


def length(value: Any) -> int:
    return len(value) if isinstance(value, str | list) else 0


def insert(value: Any, default: Any = "") -> Any:
    if isinstance(default, str) and default.startswith("default="):
        default = default[len("default=") :]
    return default if value is None or value == "" else value


Condition = Callable[[Sequence[Any]], bool]
CONDITIONS: dict[str, Arity] = {
    "equals": TWO,
    "notEquals": TWO,
    "greaterThan": TWO,
    "lessThan": TWO,
    "and": Arity(1, None),
    "or": Arity(1, None),
}
CONDITION_CALLS: dict[str, Condition] = {
    "equals": lambda args: equals(args[0], args[1]),
    "notEquals": lambda args: not equals(args[0], args[1]),
    "greaterThan": lambda args: _order(args[0], args[1]) == 1,
    "lessThan": lambda args: _order(args[0], args[1]) == -1,
    "and": _and,
    "or": _or,
}
# Values only: inline ({{length x}}) and in subexpressions ((length x)).
VALUES: dict[str, Arity] = {
    "length": ONE,
    "insert": Arity(1, 2),
    "formatDate": Arity(1, 3),
    "lookup": TWO,
}
VALUE_CALLS: dict[str, Callable[[Sequence[Any]], Any]] = {
    "length": lambda args: length(args[0]),
    "insert": lambda args: insert(*args),
    "formatDate": lambda args: format_date(*args),
    "lookup": lambda args: lookup(args[0], args[1]),
}


def call_value(name: str, args: Sequence[Any]) -> tuple[bool, Any]:
    """(True, what helper `name` gives for `args`), or (False, None) if there is no such
    helper outside the blocks. The arguments' count was checked with the template."""
    if name in CONDITION_CALLS:
        return True, CONDITION_CALLS[name](args)
    if name in VALUE_CALLS:
        return True, VALUE_CALLS[name](args)
    return False, None
