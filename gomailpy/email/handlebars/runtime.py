"""Rendering a parse tree (gomailpy.email.handlebars.parser) over template data, within a budget.

A context is a value of the data; `../` walks out to the context the enclosing block had
(pushed only where a block changes the context, as Handlebars does), `@index`, `@key`,
`@first`, `@last` and `@root` are the data variables of `{{#each}}` and of the whole. Every
node rendered, helper called, item iterated and list printed is a step; `Limits` bounds the
steps, the time they take and the characters output, and going past one raises
`TemplateLimitError`: a template cannot hold up a node or fill its memory, whatever its data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from gomailpy.email.handlebars.helpers import CONDITION_CALLS, call_value
from gomailpy.email.handlebars.parser import (
    MAX_NESTING,
    Block,
    Call,
    Expr,
    Literal,
    Output,
    Path,
    Program,
    Text,
)
from gomailpy.email.handlebars.values import child, escape, is_empty, scalar_text, truthy
from gomailpy.errors import TemplateError, TemplateLimitError

CLOCK_EVERY = 1000  # steps between two looks at the clock


@dataclass(frozen=True, slots=True)
class Limits:
    """What one rendering (one `Budget`: every part of a template) may cost. Defaults:
    2 Mi characters of output (far over any email's), 250,000 steps (a receipt's loop of a
    thousand rows takes tens of thousands), 0.5 s."""

    max_output_chars: int = 2 * 1024 * 1024
    max_steps: int = 250_000
    max_seconds: float = 0.5


class Budget:
    """The steps, characters and time one rendering has left."""

    __slots__ = ("_clock", "_deadline", "_next_look", "chars", "limits", "steps")

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.steps = 0
        self.chars = 0
        self._clock = clock
        self._deadline = clock() + limits.max_seconds
        self._next_look = CLOCK_EVERY

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > self.limits.max_steps:
            raise TemplateLimitError(
                f"rendering takes more than {self.limits.max_steps} steps"
                " (loops over too much data, or loops inside loops)"
            )
        if self.steps >= self._next_look:
            self._next_look = self.steps + CLOCK_EVERY
            if self._clock() > self._deadline:
                raise TemplateLimitError(f"rendering takes more than {self.limits.max_seconds:g} s")

    def spend_chars(self, count: int) -> None:
        self.chars += count
        if self.chars > self.limits.max_output_chars:
            raise TemplateLimitError(
                f"the output would be over {self.limits.max_output_chars} characters"
            )


@dataclass(frozen=True, slots=True)
class Scope:
    context: Any
    parent: Scope | None  # the context of the enclosing block: ../
    data: dict[str, Any]  # the data variables: root, index, key, first, last

    def enter(self, context: Any, data: dict[str, Any] | None = None) -> Scope:
        parent = self if context is not self.context else self.parent
        return Scope(context, parent, self.data if data is None else data)


def render(program: Program, data: Any, *, escape_html: bool, budget: Budget | None = None) -> str:
    """`program` rendered over `data`; `{{x}}` HTML-escaped when `escape_html`. Raises
    `TemplateLimitError` past the budget (default: `Budget(Limits())`; share one to bound
    several renderings together), `TemplateError` for a call of no helper."""
    renderer = _Renderer(budget or Budget(Limits()), escape_html)
    try:
        renderer.program(program, Scope(data, None, {"root": data}))
    except RecursionError:  # not reached within MAX_NESTING; kept as the template's error
        raise TemplateLimitError("the template nests too deeply to render") from None
    return "".join(renderer.out)


class _Renderer:
    def __init__(self, budget: Budget, escape_html: bool) -> None:
        self.budget = budget
        self.escape_html = escape_html
        self.out: list[str] = []

    def emit(self, text: str) -> None:
        self.budget.spend_chars(len(text))
        self.out.append(text)

    def program(self, program: Program, scope: Scope) -> None:
        for node in program:
            self.budget.step()
            if isinstance(node, Text):
                self.emit(node.value)
            elif isinstance(node, Output):
                text = self.text(self.value(node.call, scope))
                self.emit(escape(text) if node.escape and self.escape_html else text)
            else:
                self.block(node, scope)

    def block(self, block: Block, scope: Scope) -> None:
        for branch in block.branches:
            scopes = self.choose(branch.call, scope)
            if scopes is not None:
                for inner in scopes:
                    self.budget.step()
                    self.program(branch.program, inner)
                return
        self.program(block.inverse, scope)

    def choose(self, call: Call, scope: Scope) -> Iterable[Scope] | None:
        """The scopes to render a block's program in (once each), or None for its inverse."""
        assert isinstance(call.name, Path)  # the parser allows no other block name
        helper = call.name.helper
        args = [self.evaluate(param, scope) for param in call.params]
        if helper == "if":
            return (scope,) if truthy(args[0]) else None
        if helper == "unless":
            return None if truthy(args[0]) else (scope,)
        if helper == "with":
            return None if is_empty(args[0]) else (scope.enter(args[0]),)
        if helper == "each":
            return _each(args[0], scope)
        if helper in CONDITION_CALLS:
            self.budget.step()
            return (scope,) if CONDITION_CALLS[helper](args) else None
        if call.params:
            raise _no_helper(call)
        value = self.resolve(call.name, scope)  # a section: {{#person}}…{{/person}}
        if value is True:
            return (scope,)
        if value is None or value is False:
            return None
        if isinstance(value, list):
            return _each(value, scope)
        return (scope.enter(value),)

    def value(self, call: Call, scope: Scope) -> Any:
        """What an output tag or a subexpression gives: a helper's value, or a lookup."""
        name = call.name
        if isinstance(name, Literal):
            return name.value
        if name.helper is not None:
            args = [self.evaluate(param, scope) for param in call.params]
            found, result = call_value(name.helper, args)
            if found:
                self.budget.step()
                return result
        if call.params:
            raise _no_helper(call)
        return self.resolve(name, scope)

    def evaluate(self, expr: Expr, scope: Scope) -> Any:
        if isinstance(expr, Literal):
            return expr.value
        if isinstance(expr, Path):
            return self.resolve(expr, scope)
        return self.value(expr, scope)

    def resolve(self, path: Path, scope: Scope) -> Any:
        """A path's value: keys and indexes of the data, and nothing else (values.child)."""
        parts = path.parts
        if path.data:
            value = scope.data.get(parts[0])
            parts = parts[1:]
        else:
            here: Scope | None = scope
            for _ in range(path.up):
                here = here.parent if here is not None else None
            if here is None:
                return None
            value = here.context
        for key in parts:
            value = child(value, key)
            if value is None:
                return None
        return value

    def text(self, value: Any, depth: int = 0) -> str:
        """A value as JavaScript prints it: lists joined with ",", dicts as [object Object],
        null and what is not template data as nothing."""
        text = scalar_text(value)
        if text is not None:
            return text
        if isinstance(value, list):
            if depth >= MAX_NESTING:
                raise TemplateLimitError("a list nested too deeply to print")
            self.budget.step(1 + len(value))
            return ",".join(self.text(item, depth + 1) for item in value)
        return "[object Object]" if isinstance(value, dict) else ""


def _each(value: Any, scope: Scope) -> Iterator[Scope] | None:
    """The scopes of `{{#each}}` over a list or a dict, or None (the inverse) if there are
    none; anything else has no items."""
    if not isinstance(value, list | dict) or not value:
        return None
    return _items(value, scope)


def _items(value: list[Any] | dict[str, Any], scope: Scope) -> Iterator[Scope]:
    last = len(value) - 1
    pairs: Iterable[tuple[Any, Any]] = (
        value.items() if isinstance(value, dict) else enumerate(value)
    )
    for index, (key, item) in enumerate(pairs):
        data = {**scope.data, "index": index, "key": key, "first": index == 0}
        data["last"] = index == last
        yield scope.enter(item, data)


def _no_helper(call: Call) -> TemplateError:
    name = call.name.original if isinstance(call.name, Path) else repr(call.name.value)
    return TemplateError(f"{{{{{name} …}}}}: there is no helper {name!r} (line {call.line})")
