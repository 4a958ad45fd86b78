"""Handlebars source → tokens: runs of text, and one token per `{{…}}` tag with what is inside it
already split into atoms (names, separators, literals, parentheses). Whitespace control (`{{~`,
`~}}`) and Handlebars' standalone lines (a block tag alone on its line takes the line with it)
are applied to the text here, so the parser sees text as it will be output.

Anything outside the dialect (partials, raw blocks, decorators, hash arguments, block
parameters) is refused with `TemplateSyntaxError` naming the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from gomailpy.errors import TemplateSyntaxError


class Kind(Enum):
    TEXT = "text"
    COMMENT = "comment"  # {{! … }} and {{!-- … --}}
    OUTPUT = "output"  # {{x}}: escaped in HTML
    RAW = "raw"  # {{{x}}} and {{& x}}
    OPEN = "open"  # {{#x}}
    OPEN_INVERTED = "open_inverted"  # {{^x}}
    ELSE = "else"  # {{else}} and {{^}}
    ELSE_CHAIN = "else_chain"  # {{else if x}}
    CLOSE = "close"  # {{/x}}


class AtomKind(Enum):
    ID = "id"
    SEP = "sep"  # . or / between path segments
    DATA = "data"  # @ before a data variable
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    NULL = "null"  # null and undefined
    OPEN_PAREN = "("
    CLOSE_PAREN = ")"


@dataclass(frozen=True, slots=True)
class Atom:
    kind: AtomKind
    value: str
    bracketed: bool = False  # an ID written [like this]: always a plain key


@dataclass(slots=True)
class Token:
    kind: Kind
    line: int
    text: str = ""  # TEXT: what will be output (after whitespace control)
    original: str = ""  # TEXT: as written, for the standalone checks
    atoms: tuple[Atom, ...] = ()
    strip_left: bool = False  # {{~
    strip_right: bool = False  # ~}}


# Handlebars' ID: any run of characters but whitespace and !"#%&'()*+,./;<=>@[\]^`{|}~
_ID = re.compile(r"[^\s!\"#%-,./;->@\[-^`{-~]+")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?=[~}\s)])")
_KEYWORD = re.compile(r"(true|false|null|undefined)(?=[~}\s)])")
_ELSE = re.compile(r"\s*else(?=[\s~}])")
_AFTER_ID = frozenset("=~}./)| \t\r\n\f\v")  # what may follow an ID (Handlebars' LOOKAHEAD)
_BAD_IN_BRACKETS = re.compile(r"[\"'\\(){}\x00-\x1f\x7f]")
_STANDALONE_KINDS = frozenset(
    {Kind.COMMENT, Kind.OPEN, Kind.OPEN_INVERTED, Kind.ELSE, Kind.ELSE_CHAIN, Kind.CLOSE}
)
_PREV_LINE_BLANK = re.compile(r"\r?\n[ \t]*\Z")
_FIRST_BLANK = re.compile(r"[ \t]*\Z")
_NEXT_LINE_BLANK = re.compile(r"^[ \t]*\r?\n")
_LAST_BLANK = _FIRST_BLANK
_LINE_START = re.compile(r"^[ \t]*\r?\n?")
_CLOSERS = (("}}", False), ("~}}", True))
_TRIPLE_CLOSERS = (("}}}", False), ("}~}}", True), ("~}}}", True))
_LONG_COMMENT_END = re.compile(r"--(~?)}}")
_COMMENT_END = re.compile(r"(~?)}}")


def tokenize(source: str, max_tags: int, max_atoms: int) -> list[Token]:
    """The tokens of `source`, whitespace control and standalone lines applied; more than
    `max_tags` tags, or `max_atoms` atoms in all of them, is an error (found before reading
    the rest)."""
    tokens = _Scanner(source, max_tags, max_atoms).scan()
    _control_whitespace(tokens)
    return tokens


class _Scanner:
    def __init__(self, source: str, max_tags: int, max_atoms: int) -> None:
        self.source = source
        self.max_tags = max_tags
        self.max_atoms = max_atoms
        self.tags = 0
        self.atom_count = 0
        self.pos = 0
        self.tokens: list[Token] = []
        self._counted = (0, 1)  # line numbers are counted on from the last one asked for

    def line(self, pos: int | None = None) -> int:
        pos = self.pos if pos is None else pos
        counted_to, line = self._counted
        if pos < counted_to:
            return self.source.count("\n", 0, pos) + 1
        line += self.source.count("\n", counted_to, pos)
        self._counted = (pos, line)
        return line

    def fail(self, message: str, pos: int | None = None) -> TemplateSyntaxError:
        return TemplateSyntaxError(f"{message} (line {self.line(pos)})")

    def text(self, value: str) -> None:
        if value:
            self.tokens.append(Token(Kind.TEXT, self.line(), text=value, original=value))

    def scan(self) -> list[Token]:
        source = self.source
        while self.pos < len(source):
            start = source.find("{{", self.pos)
            if start < 0:
                self.text(source[self.pos :])
                break
            if start > 0 and source[start - 1] == "\\":
                if start > 1 and source[start - 2] == "\\":  # \\{{x}}: a backslash, then a tag
                    self.text(source[self.pos : start - 1])
                else:  # \{{x}}: the tag's text, as written, up to the next tag
                    self.text(source[self.pos : start - 1])
                    following = source.find("{{", start + 2)
                    end = len(source) if following < 0 else following
                    self.text(source[start:end])
                    self.pos = end
                    continue
            else:
                self.text(source[self.pos : start])
            self.pos = start
            self.tags += 1
            if self.tags > self.max_tags:
                raise self.fail(f"more than {self.max_tags} {{{{…}}}} tags")
            self.tokens.append(self.tag())
        return self.tokens

    def tag(self) -> Token:
        source, start = self.source, self.pos
        line = self.line()
        pos = start + 2
        if source.startswith("{{", start + 2):
            raise self.fail("raw blocks ({{{{…}}}}) are not supported")
        strip_left = source.startswith("~", pos)
        pos += strip_left
        opener = source[pos : pos + 1]
        if opener == "!":
            return self.comment(pos, line, strip_left)
        if opener == ">" or source.startswith("#>", pos):
            raise self.fail("partials ({{> name}}) are not supported")
        if opener == "*" or source.startswith("#*", pos):
            raise self.fail("decorators ({{* …}}) are not supported")
        kind, triple = Kind.OUTPUT, False
        if opener == "{":
            kind, triple, pos = Kind.RAW, True, pos + 1
        elif opener == "&":
            kind, pos = Kind.RAW, pos + 1
        elif opener == "#":
            kind, pos = Kind.OPEN, pos + 1
        elif opener == "/":
            kind, pos = Kind.CLOSE, pos + 1
        elif opener == "^":
            kind, pos = Kind.OPEN_INVERTED, pos + 1
        else:
            found = _ELSE.match(source, pos)
            if found:
                kind, pos = Kind.ELSE_CHAIN, found.end()
        self.pos = pos
        atoms, strip_right = self.atoms(triple, start)
        if not atoms:
            if kind is Kind.OPEN_INVERTED or kind is Kind.ELSE_CHAIN:
                kind = Kind.ELSE  # {{^}} and {{else}}
            else:
                raise self.fail("an empty tag", start)
        return Token(kind, line, atoms=tuple(atoms), strip_left=strip_left, strip_right=strip_right)

    def comment(self, pos: int, line: int, strip_left: bool) -> Token:
        source = self.source
        if source.startswith("!--", pos):
            found = _LONG_COMMENT_END.search(source, pos + 3)
        else:
            found = _COMMENT_END.search(source, pos + 1)
        if found is None:
            raise self.fail("a comment that is never closed", pos)
        self.pos = found.end()
        return Token(Kind.COMMENT, line, strip_left=strip_left, strip_right=bool(found.group(1)))

    def atoms(self, triple: bool, start: int) -> tuple[list[Atom], bool]:
        """The atoms up to the tag's end (`}}`, or `}}}` for a triple-stash); whether it ends
        with `~`."""
        source = self.source
        atoms: list[Atom] = []
        while True:
            spaced = self.pos
            while self.pos < len(source) and source[self.pos].isspace():
                self.pos += 1
            if self.pos >= len(source):
                raise self.fail("a tag that is never closed ('{{' without '}}')", start)
            end = self.end_of_tag(triple)
            if end is not None:
                self.pos, strip_right = end
                return atoms, strip_right
            self.atom_count += 1
            if self.atom_count > self.max_atoms:
                raise self.fail(f"more than {self.max_atoms} names and values in all the tags")
            previous = atoms[-1].kind if atoms else None
            glued = previous is AtomKind.ID and spaced == self.pos  # a. and a..b: not paths
            atoms.append(self.atom(previous is AtomKind.SEP, glued))

    def end_of_tag(self, triple: bool) -> tuple[int, bool] | None:
        """Where the tag ends and whether with `~`, if it ends here."""
        source, pos = self.source, self.pos
        closers = _TRIPLE_CLOSERS if triple else _CLOSERS
        for closer, strip in closers:
            if source.startswith(closer, pos):
                return pos + len(closer), strip
        if triple and (source.startswith("}}", pos) or source.startswith("~}}", pos)):
            raise self.fail("'{{{' must close with '}}}'")
        return None

    def atom(self, after_sep: bool, glued: bool) -> Atom:  # noqa: C901 -- one per kind
        source, pos = self.source, self.pos
        char = source[pos]
        if char in "\"'":
            return self.string(char)
        if char == "[":
            close = source.find("]", pos + 1)
            if close < 0:
                raise self.fail("a '[' path segment that is never closed with ']'")
            segment = source[pos + 1 : close]
            if _BAD_IN_BRACKETS.search(segment):
                raise self.fail(
                    "a [bracketed] path segment may not hold quotes, backslashes, parentheses,"
                    " braces or control characters"
                )
            self.pos = close + 1
            self.expect_end_of_name(f"[{segment}]")
            return Atom(AtomKind.ID, segment, bracketed=True)
        if char in "()":
            self.pos += 1
            return Atom(AtomKind.OPEN_PAREN if char == "(" else AtomKind.CLOSE_PAREN, char)
        if char == "@":
            self.pos += 1
            return Atom(AtomKind.DATA, "@")
        if source.startswith("..", pos):
            if glued:
                raise self.fail("unexpected '..' after a name ('..' only starts a path)")
            self.pos += 2
            return Atom(AtomKind.ID, "..")
        if char == "." and not glued and (pos + 1 >= len(source) or source[pos + 1] in _AFTER_ID):
            self.pos += 1
            return Atom(AtomKind.ID, ".")
        if char in "./":
            self.pos += 1
            return Atom(AtomKind.SEP, char)
        if char == "=":
            raise self.fail("hash arguments (name=value) are not supported")
        if char == "|":
            raise self.fail("block parameters (as |x|) are not supported")
        for pattern, kind in ((_NUMBER, AtomKind.NUMBER), (_KEYWORD, None)):
            found = None if after_sep else pattern.match(source, pos)  # a.0, a.true: keys
            if found:
                self.pos = found.end()
                word = found.group(0)
                if kind is None:
                    kind = AtomKind.BOOLEAN if word in ("true", "false") else AtomKind.NULL
                return Atom(kind, word)
        found = _ID.match(source, pos)
        if found is None:
            raise self.fail(f"unexpected {char!r} in a tag")
        self.pos = found.end()
        self.expect_end_of_name(found.group(0))
        return Atom(AtomKind.ID, found.group(0))

    def expect_end_of_name(self, name: str) -> None:
        source, pos = self.source, self.pos
        if pos < len(source) and source[pos] not in _AFTER_ID:
            raise self.fail(f"unexpected {source[pos]!r} after {name!r}")

    def string(self, quote: str) -> Atom:
        source, pos = self.source, self.pos + 1
        chunks: list[str] = []
        while True:
            close = source.find(quote, pos)
            if close < 0:
                raise self.fail("a string that is never closed")
            if source[close - 1] == "\\":  # \" inside "…" is a quote
                chunks.append(source[pos : close - 1] + quote)
                pos = close + 1
                continue
            chunks.append(source[pos:close])
            self.pos = close + 1
            return Atom(AtomKind.STRING, "".join(chunks))


def _control_whitespace(tokens: list[Token]) -> None:
    """Apply `~` (strip all whitespace on that side) and standalone lines (a block, else, close
    or comment tag alone on its line removes the line's indent and its line break), as
    Handlebars does; checks read each text as written, edits change what is output."""
    last = len(tokens) - 1
    for index, token in enumerate(tokens):
        if token.kind is Kind.TEXT:
            continue
        before = tokens[index - 1] if index > 0 else None
        after = tokens[index + 1] if index < last else None
        if token.strip_left and before is not None and before.kind is Kind.TEXT:
            before.text = before.text.rstrip()
        if token.strip_right and after is not None and after.kind is Kind.TEXT:
            after.text = after.text.lstrip()
        if token.kind not in _STANDALONE_KINDS:
            continue
        if _blank_before(before, index) and _blank_after(after, index + 1 == last):
            if before is not None and before.kind is Kind.TEXT:
                before.text = before.text.rstrip(" \t")
            if after is not None and after.kind is Kind.TEXT:
                after.text = _LINE_START.sub("", after.text, count=1)


def _blank_before(before: Token | None, index: int) -> bool:
    if before is None:
        return True  # the template's first tag
    if before.kind is not Kind.TEXT:
        return False
    if _PREV_LINE_BLANK.search(before.original):
        return True
    return index == 1 and bool(_FIRST_BLANK.match(before.original))


def _blank_after(after: Token | None, after_is_last: bool) -> bool:
    if after is None:
        return True  # the template's last tag
    if after.kind is not Kind.TEXT:
        return False
    if _NEXT_LINE_BLANK.match(after.original):
        return True
    return after_is_last and bool(_LAST_BLANK.match(after.original))
