"""Tokens → a parse tree of plain, immutable nodes (`Program`), with every check that needs no
data made here, when a template is stored: blocks closed in order and named alike, nesting at
most `MAX_NESTING` deep (blocks and subexpressions alike), helpers given as many arguments as
they take, paths that only look data up.

A block's `{{else if …}}` chain is kept flat (`Block.branches`), not as blocks nested in each
other's `{{else}}`, so a long chain costs no depth. `{{^x}}A{{else}}B{{/x}}` is stored as the
block `{{#x}}B{{else}}A{{/x}}`: the same output, one less kind of node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from gomailpy.email.handlebars.helpers import BLOCK_ONLY, CONDITIONS, VALUES, Arity
from gomailpy.email.handlebars.lexer import Atom, AtomKind, Kind, Token, tokenize
from gomailpy.errors import TemplateSyntaxError

MAX_NESTING = 32  # blocks inside blocks, or subexpressions inside subexpressions
MAX_TAGS = 20_000  # {{…}} in one template: a newsletter has hundreds
MAX_ATOMS = 60_000  # names, values, separators and parentheses in all its tags


@dataclass(frozen=True, slots=True)
class Path:
    """A lookup in the data: `parts` are dict keys (or list indexes) from the context `up`
    levels out (`../`), or from the data variables (`@index`, `@root`) when `data`."""

    parts: tuple[str, ...]
    original: str
    up: int = 0
    data: bool = False
    scoped: bool = False  # this, ./: the context itself or its keys, never a helper
    plain: bool = False  # one unbracketed name: a helper's, if a helper has it

    @property
    def helper(self) -> str | None:
        """The helper this path names, if it can name one (whether or not one exists)."""
        return self.parts[0] if self.plain else None


@dataclass(frozen=True, slots=True)
class Literal:
    value: str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Call:
    """`name params…`: a helper call, or (without params) maybe a plain lookup."""

    name: Path | Literal
    params: tuple[Expr, ...]
    line: int


Expr: TypeAlias = "Path | Literal | Call"


@dataclass(frozen=True, slots=True)
class Text:
    value: str


@dataclass(frozen=True, slots=True)
class Output:
    call: Call
    escape: bool  # {{x}}; False for {{{x}}} and {{& x}}


@dataclass(frozen=True, slots=True)
class Branch:
    call: Call
    program: Program


@dataclass(frozen=True, slots=True)
class Block:
    """The first branch whose helper accepts renders its program; none does: `inverse`."""

    branches: tuple[Branch, ...]
    inverse: Program
    line: int


Node: TypeAlias = "Text | Output | Block"
Program: TypeAlias = "tuple[Node, ...]"


def parse(source: str) -> Program:
    """The parse tree of `source`, or `TemplateSyntaxError` saying what is wrong and where."""
    root: list[Node] = []
    stack: list[_Open] = []
    target = root
    for token in tokenize(source, MAX_TAGS, MAX_ATOMS):
        kind = token.kind
        if kind is Kind.TEXT:
            if token.text:
                target.append(Text(token.text))
        elif kind is Kind.OUTPUT or kind is Kind.RAW:
            call = _call(token)
            _check_inline(call)
            target.append(Output(call, escape=kind is Kind.OUTPUT))
        elif kind is Kind.OPEN or kind is Kind.OPEN_INVERTED:
            if len(stack) >= MAX_NESTING:
                raise _fail(f"blocks nest more than {MAX_NESTING} deep", token.line)
            stack.append(_Open(token, _block_call(token)))
            target = stack[-1].current
        elif kind is Kind.ELSE or kind is Kind.ELSE_CHAIN:
            target = _else(stack, token)
        elif kind is Kind.CLOSE:
            block = _close(stack, token)
            target = stack[-1].current if stack else root
            target.append(block)
    if stack:
        top = stack[-1]
        raise _fail(f"{{{{#{top.name}}}}} is never closed with {{{{/{top.name}}}}}", top.line)
    return tuple(root)


@dataclass(eq=False)
class _Open:
    """A block being read: its branches so far, and its `{{else}}` part once met."""

    token: Token
    call: Call
    branches: list[tuple[Call, list[Node]]] = field(default_factory=list)
    otherwise: list[Node] | None = None

    def __post_init__(self) -> None:
        self.branches.append((self.call, []))

    @property
    def name(self) -> str:
        assert isinstance(self.call.name, Path)
        return self.call.name.original

    @property
    def line(self) -> int:
        return self.token.line

    @property
    def inverted(self) -> bool:
        return self.token.kind is Kind.OPEN_INVERTED

    @property
    def current(self) -> list[Node]:
        return self.otherwise if self.otherwise is not None else self.branches[-1][1]

    def finish(self) -> Block:
        otherwise = tuple(self.otherwise or ())
        if self.inverted:  # {{^x}}A{{else}}B{{/x}} is {{#x}}B{{else}}A{{/x}}
            ((call, nodes),) = self.branches
            return Block((Branch(call, otherwise),), tuple(nodes), self.line)
        branches = tuple(Branch(call, tuple(nodes)) for call, nodes in self.branches)
        return Block(branches, otherwise, self.line)


def _else(stack: list[_Open], token: Token) -> list[Node]:
    written = "{{else}}" if token.kind is Kind.ELSE else "{{else …}}"
    if not stack:
        raise _fail(f"{written} outside any block", token.line)
    top = stack[-1]
    if top.otherwise is not None:
        raise _fail(f"{written} after {{{{else}}}} in {{{{#{top.name}}}}}", token.line)
    if token.kind is Kind.ELSE:
        top.otherwise = []
    elif top.inverted:
        raise _fail(f"{{{{else …}}}} inside {{{{^{top.name}}}}}", token.line)
    else:
        top.branches.append((_block_call(token), []))
    return top.current


def _close(stack: list[_Open], token: Token) -> Block:
    closing = _call(token)
    if closing.params or not isinstance(closing.name, Path):
        raise _fail("a closing tag names its block and nothing else: {{/name}}", token.line)
    name = closing.name.original
    if not stack:
        raise _fail(f"{{{{/{name}}}}} closes no block", token.line)
    top = stack.pop()
    if name != top.name:
        raise _fail(
            f"{{{{/{name}}}}} does not close {{{{#{top.name}}}}} (opened on line {top.line})",
            token.line,
        )
    return top.finish()


def _fail(message: str, line: int) -> TemplateSyntaxError:
    return TemplateSyntaxError(f"{message} (line {line})")


def _call(token: Token) -> Call:
    cursor = _Cursor(token.atoms, token.line)
    call = cursor.call(0)
    if not cursor.done:
        raise _fail("unexpected ')'", token.line)
    return call


def _block_call(token: Token) -> Call:
    call = _call(token)
    if not isinstance(call.name, Path):
        raise _fail("a block is named by a helper or a path, not a literal", token.line)
    helper = call.name.helper
    if helper in VALUES:
        raise _fail(f"{helper} is not a block helper: write {{{{{helper} …}}}}", token.line)
    if helper in BLOCK_ONLY:
        _check_arity(helper, BLOCK_ONLY[helper], call)
    elif helper in CONDITIONS:
        _check_arity(helper, CONDITIONS[helper], call)
    _check_params(call)
    return call


def _check_inline(call: Call) -> None:
    """An output tag or a subexpression: a value, so no block-only helper."""
    if isinstance(call.name, Literal):
        if call.params:
            raise _fail("a literal takes no arguments", call.line)
        return
    helper = call.name.helper
    if helper in BLOCK_ONLY:
        raise _fail(
            f"{helper} needs a block: {{{{#{helper} …}}}}…{{{{/{helper}}}}}"
            f" (to print a value named {helper!r}, write {{{{this.{helper}}}}})",
            call.line,
        )
    arity = CONDITIONS.get(helper or "") or VALUES.get(helper or "")
    if helper is not None and arity is not None:
        _check_arity(helper, arity, call)
    _check_params(call)


def _check_params(call: Call) -> None:
    for param in call.params:
        if isinstance(param, Call):
            _check_inline(param)


def _check_arity(helper: str, arity: Arity, call: Call) -> None:
    count = len(call.params)
    if arity.least <= count and (arity.most is None or count <= arity.most):
        return
    raise _fail(f"{helper} takes {arity.describe()}, not {count}", call.line)


class _Cursor:
    """Reads one tag's atoms: `name param…`, each param a literal, a path or `(call)`."""

    def __init__(self, atoms: tuple[Atom, ...], line: int) -> None:
        self.atoms = atoms
        self.index = 0
        self.line = line

    @property
    def done(self) -> bool:
        return self.index >= len(self.atoms)

    def peek(self) -> Atom | None:
        return None if self.done else self.atoms[self.index]

    def next(self, wanted: str) -> Atom:
        if self.done:
            raise _fail(f"{wanted} expected before the tag ends", self.line)
        self.index += 1
        return self.atoms[self.index - 1]

    def call(self, depth: int) -> Call:
        name = self.operand(depth, subexpression=False)
        params: list[Expr] = []
        while (atom := self.peek()) is not None and atom.kind is not AtomKind.CLOSE_PAREN:
            params.append(self.operand(depth, subexpression=True))
        assert not isinstance(name, Call)
        return Call(name, tuple(params), self.line)

    def operand(self, depth: int, *, subexpression: bool) -> Expr:
        atom = self.next("a name")
        kind = atom.kind
        if kind is AtomKind.OPEN_PAREN:
            if not subexpression:
                raise _fail("a (subexpression) cannot name a helper", self.line)
            if depth + 1 > MAX_NESTING:
                raise _fail(f"subexpressions nest more than {MAX_NESTING} deep", self.line)
            call = self.call(depth + 1)
            if self.next("')'").kind is not AtomKind.CLOSE_PAREN:
                raise _fail("a '(' is never closed with ')'", self.line)
            if isinstance(call.name, Literal) and not call.params:
                return call.name
            return call  # checked with the tag's call (_check_params)
        if kind is AtomKind.STRING:
            return Literal(atom.value)
        if kind is AtomKind.NUMBER:
            return Literal(float(atom.value) if "." in atom.value else int(atom.value))
        if kind is AtomKind.BOOLEAN:
            return Literal(atom.value == "true")
        if kind is AtomKind.NULL:
            return Literal(None)
        if kind is AtomKind.ID or kind is AtomKind.DATA:
            return self.path(atom)
        raise _fail(f"unexpected {atom.value!r}", self.line)

    def path(self, first: Atom) -> Path:
        data = first.kind is AtomKind.DATA
        if data:
            first = self.next("a name after '@'")
            if first.kind is not AtomKind.ID:
                raise _fail("'@' must be followed by a name (@index, @root…)", self.line)
        segments = [first]
        separators: list[str] = []
        while (atom := self.peek()) is not None and atom.kind is AtomKind.SEP:
            separators.append(self.next("a separator").value)
            segment = self.next("a name after '.' or '/'")
            if segment.kind is not AtomKind.ID:
                raise _fail(f"a name expected after {separators[-1]!r}", self.line)
            segments.append(segment)
        original = ("@" if data else "") + _written(segments[0])
        for separator, segment in zip(separators, segments[1:], strict=True):
            original += separator + _written(segment)
        return self.meaning(segments, original, data)

    def meaning(self, segments: list[Atom], original: str, data: bool) -> Path:
        up, scoped, parts = 0, False, []
        for segment in segments:
            value = segment.value
            if segment.bracketed or value not in ("..", ".", "this"):
                parts.append(value)
            elif parts or data or scoped:
                raise _fail(f"invalid path {original}: {value!r} only at its start", self.line)
            elif value == "..":
                up += 1
            else:
                scoped = True
        if data and not parts:
            raise _fail(f"invalid path {original}", self.line)
        plain = not (data or scoped or up) and len(parts) == 1 and not segments[0].bracketed
        return Path(tuple(parts), original, up=up, data=data, scoped=scoped, plain=plain)


def _written(atom: Atom) -> str:
    return f"[{atom.value}]" if atom.bracketed else atom.value
