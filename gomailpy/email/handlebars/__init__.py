"""Handlebars as SendGrid's dynamic templates write it, read by an interpreter of our own.

    program = parse("<p>Hi {{insert name \"default=there\"}}</p>")   # TemplateSyntaxError
    html = render(program, {"name": "Ada"}, escape_html=True)        # TemplateLimitError

Why our own: a template is written by whoever holds an API key, and rendered on every pipeline
node, so its language must be unable to do anything but read the data it is given. pybars3,
which gomailpy used before, compiles a template to Python source and runs it; a path segment
in brackets was pasted into that source unescaped, so a stored template could run any Python
on every node. Here nothing is compiled, evaluated or executed: the source is split into
tokens (lexer), read into a tree of plain nodes (parser), and the tree is walked over plain
data (runtime), where a path can only name a dict's key or a list's index (values) and a
helper is one of a fixed table of functions of plain values (helpers, dates). Nesting
(`MAX_NESTING`) and size (`MAX_TAGS`, `MAX_ATOMS`) are bounded when a template is stored;
output, steps and time when it is rendered (`Limits`).

The dialect: `{{x}}` (HTML-escaped when asked), `{{{x}}}` and `{{& x}}` (raw), paths `a.b.c`,
`a.[b c]`, `list.0`, `list.length`, `this`, `../`, `@root`; `#if`/`else if`/`else`, `#unless`,
`#each` over lists and dicts (`@index`, `@key`, `@first`, `@last`), `#with`, sections
(`{{#x}}…{{/x}}`) and inverted sections (`{{^x}}`); `{{! }}` and `{{!-- --}}` comments; `~`
whitespace control and standalone lines; `\\{{` for a literal `{{`; subexpressions; and the
helpers SendGrid documents (gomailpy.email.handlebars.helpers). Refused when parsed: partials,
decorators, raw blocks, hash arguments and block parameters, none of which SendGrid offers.
"""

from gomailpy.email.handlebars.parser import MAX_ATOMS, MAX_NESTING, MAX_TAGS, Program, parse
from gomailpy.email.handlebars.runtime import Budget, Limits, render

__all__ = [
    "MAX_ATOMS",
    "MAX_NESTING",
    "MAX_TAGS",
    "Budget",
    "Limits",
    "Program",
    "parse",
    "render",
]
