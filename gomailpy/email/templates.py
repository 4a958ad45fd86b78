"""Email templates: Handlebars (as SendGrid's dynamic templates) with a subject, an HTML and a
text part; kept on the status table by gomailpy.store.templates, so every node reads the same one.

    store = TemplateStore(table)                       # gomailpy.store.templates
    await store.put(Template(id="welcome", subject="Hi {{name}}", html="<p>{{name}}</p>"))
    parts = render(await store.get("welcome"), {"name": "Ada"})

`{{value}}` is HTML-escaped in the HTML part (`{{{value}}}` is not), as in Handlebars. The
subject and the text part are plain text, so data lands there as it was given. Rendering is the
pipeline's (pipeline.prepare.render), once per send attempt, so an edited template applies to every
email not yet sent. A template that does not parse or render raises `TemplateError` (its
`TemplateSyntaxError` and `TemplateLimitError` kinds, from gomailpy.errors): the email cannot
be sent and is failed for good, never retried.

The language is read by gomailpy.email.handlebars, an interpreter of our own that can only look up
keys of the data, never run code: anyone with an API key writes templates, and every pipeline
node renders them. pybars3, used before, compiled templates to Python and ran them, and a
bracketed path segment (`{{#each [a', open(...), u']}}`) went into that code unescaped. A
template stored then is safe now too: it is parsed afresh by the interpreter when rendered.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from gomailpy.email import handlebars
from gomailpy.email.parts import TEMPLATE_ID
from gomailpy.errors import TemplateError, TemplateLimitError, TemplateSyntaxError

__all__ = [
    "RenderedParts",
    "Template",
    "TemplateError",
    "TemplateLimitError",
    "TemplateSyntaxError",
    "check_template",
    "render",
]

log = logging.getLogger("gomailpy.templates")

MAX_PART_CHARS = 512 * 1024  # a part over this is not a template but a payload
MAX_SUBJECT_CHARS = 998
LIMITS = handlebars.Limits()  # per template rendered (all its parts): output, steps, time


@dataclass(frozen=True, slots=True)
class Template:
    id: str
    subject: str = ""
    html: str = ""
    text: str = ""
    updated_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject": self.subject,
            "html": self.html,
            "text": self.text,
            "updatedAt": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class RenderedParts:
    """A template's parts once rendered; None where the template has no such part."""

    subject: str | None
    html: str | None
    text: str | None


def check_template(template: Template) -> list[str]:
    """What is wrong with a template before storing it (empty: nothing). Every part must
    parse, so a typo (or a partial, or nesting past handlebars.MAX_NESTING) is refused when
    saved rather than found when mail fails."""
    problems: list[str] = []
    if not TEMPLATE_ID.fullmatch(template.id):
        problems.append("id: must be 1 to 128 letters, digits, '_', '.', ':' or '-'")
    if not (template.subject or template.html or template.text):
        problems.append("a template needs at least one of subject, html and text")
    if any(ch in template.subject for ch in "\r\n\x00"):
        problems.append("subject: must not contain line breaks")
    if len(template.subject) > MAX_SUBJECT_CHARS:
        problems.append(f"subject: at most {MAX_SUBJECT_CHARS} characters")
    for name in ("subject", "html", "text"):
        source = getattr(template, name)
        if len(source) > MAX_PART_CHARS:
            problems.append(f"{name}: at most {MAX_PART_CHARS} characters")
        elif source:
            try:
                _parse(source)
            except TemplateError as exc:
                problems.append(f"{name}: does not compile: {_first_line(exc)}")
            except Exception as exc:  # the parser's fault: refused all the same, never a 500
                log.exception("template %r: %s: the parser failed", template.id, name)
                problems.append(f"{name}: does not compile ({type(exc).__name__})")
    return problems


@functools.lru_cache(maxsize=256)
def _parse(source: str) -> handlebars.Program:
    # Keyed by the source itself, so an edited template is parsed afresh on every node.
    return handlebars.parse(source)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _render_part(
    template: Template, name: str, data: dict[str, Any], budget: handlebars.Budget
) -> str | None:
    source: str = getattr(template, name)
    if not source:
        return None
    if len(source) > MAX_PART_CHARS:  # stored before the limit, or not through check_template
        raise TemplateSyntaxError(
            f"template {template.id!r}: {name} is over {MAX_PART_CHARS} characters"
        )
    try:
        return handlebars.render(_parse(source), data, escape_html=name == "html", budget=budget)
    except TemplateError as exc:  # the same kind, saying which template and part
        raise type(exc)(
            f"template {template.id!r}: {name} failed to render: {_first_line(exc)}"
        ) from None
    except Exception as exc:  # the interpreter's fault: still this email's failure alone
        log.exception("template %r: %s: the interpreter failed", template.id, name)
        raise TemplateError(
            f"template {template.id!r}: {name} failed to render ({type(exc).__name__})"
        ) from None


def render(
    template: Template, data: dict[str, Any], limits: handlebars.Limits = LIMITS
) -> RenderedParts:
    """Render every part of `template` with `data`, or raise `TemplateError`
    (`TemplateLimitError` when the parts together go past `limits`)."""
    budget = handlebars.Budget(limits)
    subject = _render_part(template, "subject", data, budget)
    if subject is not None:
        subject = " ".join(subject.split())  # a header: no line breaks, whatever the data held
    return RenderedParts(
        subject=subject,
        html=_render_part(template, "html", data, budget),
        text=_render_part(template, "text", data, budget),
    )
