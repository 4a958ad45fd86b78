"""MkDocs hooks (mkdocs.yml `hooks:`): the pages that are generated from the code at build time,
so they cannot drift from it, and links that work both on GitHub and on the site.

Generated pages (never written to docs/, so there is nothing to keep in step by hand):
- `reference/configuration.md`: every settings key (dotted path, type, constraints, default,
  environment variable, description), walked from the settings model named by SETTINGS_MODEL;
  descriptions come from `Field(description=...)`, else from the comments beside or above the
  field in its class, and each section's docstring;
- `reference/http-api.md`: the OpenAPI description the API serves at GET /openapi.json (from
  OPENAPI_BUILDER), rendered as static Markdown: no JavaScript, nothing fetched;
- `index.md` from the repository's README.md, and `benchmarks-in-detail.md` from bench/README.md.

Links: the Markdown under docs/ links repository files the way GitHub resolves them
(`../pipeline/sending/lease.py`, `../bench/README.md`). On the site, a link to a README that is a
page here goes to that page; a link to any other repository file goes to `repo_url` when mkdocs.yml
sets one, else becomes plain text naming the file. A link to a file that does not exist is left
alone, so `mkdocs build --strict` fails on it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import json
import re
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, SecretStr

# What the generated pages are built from: "module:attribute". Modules may move; only these change.
SETTINGS_MODEL = "gomailpy.config.settings:Settings"
OPENAPI_BUILDER = "api.schema.openapi:build_openapi"

ROOT = Path(__file__).resolve().parent.parent
DOCS = "docs"
CONFIGURATION_PAGE = "reference/configuration.md"
HTTP_API_PAGE = "reference/http-api.md"
# Repository Markdown that becomes a page of the site: repository path -> page (under docs/).
INCLUDED = {"README.md": "index.md", "bench/README.md": "benchmarks-in-detail.md"}


def load(target: str) -> Any:
    """The object named "module:attribute"."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


# -- text ----------------------------------------------------------------------------------------

_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def _outside_code(text: str, change: Callable[[str], str]) -> str:
    """`text` with `change` applied to everything outside its code spans."""
    parts, last = [], 0
    for match in _CODE_SPAN.finditer(text):
        parts += [change(text[last : match.start()]), match.group(0)]
        last = match.end()
    return "".join([*parts, change(text[last:])])


def inline(text: str) -> str:
    """Prose from the code, safe inside Markdown: no HTML, no emphasis, on one line."""

    def escape(part: str) -> str:
        part = part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return re.sub(r"([*_\[\]|])", r"\\\1", part)

    return _outside_code(" ".join(text.split()), escape)


def cell(text: str) -> str:
    """`inline` text for a table cell: a pipe inside a code span would end the cell too."""
    return _outside_code(inline(text), lambda part: part).replace("`|`", "`\\|`")


def code(value: str) -> str:
    fence = "``" if "`" in value else "`"
    return f"{fence}{value}{fence}"


# -- the configuration reference -----------------------------------------------------------------


def _comments_of_class(source: str) -> dict[str, str]:
    """Each field's comments in a class's source: those ending its line (and lines continuing
    them, starting in lower case) or, else, the block of comment lines right above it."""
    klass = next(node for node in ast.parse(source).body if isinstance(node, ast.ClassDef))
    lines = source.splitlines()
    whole: dict[int, str] = {}  # line number -> comment that is the whole line
    trailing: dict[int, str] = {}  # line number -> comment after code
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, column = token.start
            text = token.string.lstrip("#").strip()
            if lines[row - 1][:column].strip():
                trailing[row] = text
            else:
                whole[row] = text
    claimed: set[int] = set()
    found: dict[str, str] = {}
    for node in klass.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        end = node.end_lineno or node.lineno
        after = [trailing[row] for row in range(node.lineno, end + 1) if row in trailing]
        row = end + 1
        while after and row in whole and whole[row][:1].islower():
            after.append(whole[row])
            claimed.add(row)
            row += 1
        above: list[str] = []
        row = node.lineno - 1
        while row in whole and row not in claimed:
            above.insert(0, whole[row])
            row -= 1
        text = " ".join(after or above)
        if text:
            found[node.target.id] = text
    return found


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """The comments of a model's fields, inherited ones included (the nearest class wins)."""
    found: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)):
            continue
        if klass.__module__.split(".")[0] in {"pydantic", "pydantic_settings"}:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        found.update(_comments_of_class(source))
    return found


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """The type inside Annotated[...], with the constraints found on the way."""
    constraints: list[Any] = []
    while typing.get_origin(annotation) is typing.Annotated:
        annotation, *metadata = typing.get_args(annotation)
        for item in metadata:
            constraints += getattr(item, "metadata", None) or [item]
    return annotation, constraints


def _optional(annotation: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) for `X | None`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(annotation)):
            return args[0], True
    return annotation, False


def _model_of(annotation: Any) -> type[BaseModel] | None:
    annotation, _ = _unwrap(annotation)
    annotation, _ = _optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _item_model_of(annotation: Any) -> type[BaseModel] | None:
    """The model of a `list[Model]` field's items."""
    annotation, _ = _optional(_unwrap(annotation)[0])
    if typing.get_origin(annotation) in (list, tuple, set, frozenset):
        args = typing.get_args(annotation)
        return _model_of(args[0]) if args else None
    return None


_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def _constraint_text(constraints: list[Any]) -> list[str]:
    texts = []
    for item in constraints:
        for name, sign in _BOUNDS.items():
            if getattr(item, name, None) is not None:
                texts.append(f"{sign} {getattr(item, name)}")
        for name, word in (("min_length", "at least"), ("max_length", "at most")):
            if getattr(item, name, None) is not None:
                texts.append(f"{word} {getattr(item, name)} long")
    return texts


def type_text(annotation: Any, metadata: list[Any] | None = None) -> str:
    """A type as a reader of the YAML file thinks of it, e.g. `list of text`, `integer (≥ 1)`;
    `metadata`: the constraints pydantic took off the annotation (`FieldInfo.metadata`)."""
    annotation, constraints = _unwrap(annotation)
    constraints = [*(metadata or []), *constraints]
    inner, optional = _optional(annotation)
    if optional:
        return f"{type_text(inner, constraints)} or null"
    origin, args = typing.get_origin(inner), typing.get_args(inner)
    if origin is typing.Literal:
        text = " or ".join(code(json.dumps(arg)) for arg in args)
    elif origin in (typing.Union, types.UnionType):
        text = " or ".join(type_text(arg) for arg in args)
    elif origin in (list, tuple, set, frozenset):
        item = type_text(args[0]) if args else ""
        text = "list of mappings" if item == "mapping" else f"list of {item}" if item else "list"
    elif origin is dict:
        text = f"mapping of {type_text(args[0])} to {type_text(args[1])}" if args else "mapping"
    elif inner is SecretStr:
        text = "secret"
    elif isinstance(inner, type) and issubclass(inner, BaseModel):
        text = "mapping"
    elif isinstance(inner, type):
        text = {"str": "text", "int": "integer", "float": "number", "bool": "boolean"}.get(
            inner.__name__, inner.__name__
        )
    else:
        text = str(inner).replace("typing.", "")
    bounds = _constraint_text(constraints)
    return f"{text} ({', '.join(bounds)})" if bounds else text


def default_text(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        return "(set)"
    if isinstance(value, BaseModel):
        value = value.model_dump()
    return code(json.dumps(value, ensure_ascii=False, default=str))


def env_var(model: type[BaseModel], path: tuple[str, ...]) -> str:
    config = getattr(model, "model_config", {})
    prefix = config.get("env_prefix") or "GOMAILPY_"
    nesting = config.get("env_nested_delimiter") or "__"
    return prefix + nesting.join(part.upper() for part in path)


def _docstring(model: type[BaseModel]) -> str:
    own = model.__dict__.get("__doc__")
    return inspect.cleandoc(own) if isinstance(own, str) else ""


def _key_anchor(path: tuple[str, ...]) -> str:
    return "-".join(path).replace("[]", "-items")


def _section(
    root: type[BaseModel],
    model: type[BaseModel],
    path: tuple[str, ...],
    in_list: bool,
    kind: str | None = None,
) -> Iterator[str]:
    """`kind`: the item is one member of a union discriminated on `kind` (its own heading)."""
    dotted = ".".join(path)
    level = "#" * min(len(path) + 1, 4)
    if kind is None:
        yield f"{level} `{dotted}` {{#{_key_anchor(path)}}}"
    else:
        yield f"{level} `{dotted}` of kind `{kind}` {{#{_key_anchor(path)}-{kind}}}"
    yield ""
    doc = _docstring(model)
    if doc:
        yield doc
        yield ""
    if in_list and kind is not None:
        yield f"An item of the list `{dotted[:-2]}` with `kind: {kind}` has these keys:"
        yield ""
    elif in_list:
        yield f"Each item of the list `{dotted[:-2]}` has these keys:"
        yield ""
    comments = field_comments(model)
    rows, subsections = [], []
    for name, field in model.model_fields.items():
        key = (*path, name)
        nested, items = _model_of(field.annotation), _item_model_of(field.annotation)
        if nested is not None and not in_list:
            subsections.append((nested, key, False))
            continue
        description = cell(field.description or comments.get(name, ""))
        if _unwrap(_optional(_unwrap(field.annotation)[0])[0])[0] is SecretStr:
            description = f"Secret: read from the environment only. {description}".strip()
        if items is not None:
            item_path = (*path, f"{name}[]")
            subsections.append((items, item_path, True))
            link = f"[`{'.'.join(item_path)}`](#{_key_anchor(item_path)})"
            description = f"{description.rstrip('.')}. " if description else ""
            description += f"Each item: see {link}."
        where = code(".".join(key))
        if not in_list:
            where += f"<br>{code(env_var(root, key))}"
        kind = cell(type_text(field.annotation, field.metadata))
        rows.append(f"| {where} | {kind} | {cell(default_text(field))} | {description} |")
    if rows:
        yield "| key | type | default | description |"
        yield "|---|---|---|---|"
        yield from rows
        yield ""
    for nested, key, nested_in_list in subsections:
        yield from _section(root, nested, key, nested_in_list)


def configuration_reference(model: type[BaseModel] | None = None) -> str:
    """The configuration reference page, in Markdown, from the settings model."""
    model = load(SETTINGS_MODEL) if model is None else model
    assert model is not None
    lines = [
        "# Configuration reference",
        "",
        f"Generated when the site is built, from the settings model (`{SETTINGS_MODEL}`): every"
        " key the YAML file and the environment may set, its type, its default and what it does."
        " How the file and the environment combine, and the secrets:"
        " [Configuration](../configuration.md).",
        "",
        f"Every key can be set in the environment as `{env_var(model, ('section', 'key'))}`"
        " (shown under each key); lists and mappings as YAML or JSON, `null` unsets a key."
        " Keys of list items (`…[]`) are set with their whole list.",
        "",
    ]
    doc = _docstring(model)
    if doc:
        lines += [doc, ""]
    top = [name for name, field in model.model_fields.items() if _model_of(field.annotation)]
    lines += ["Sections: " + ", ".join(f"[`{name}`](#{name})" for name in top) + ".", ""]
    for name, field in model.model_fields.items():
        nested = _model_of(field.annotation)
        kinds = _list_kinds(nested)
        if nested is not None and kinds:
            lines += list(_kinds_section(model, nested, name, kinds))
        elif nested is not None:
            lines += list(_section(model, nested, (name,), False))
        else:
            lines += list(_section_for_leaf(model, name, field))
    return "\n".join(lines).rstrip() + "\n"


def _list_kinds(model: type[BaseModel] | None) -> dict[str, type[BaseModel]]:
    """A root model holding a list of a union discriminated on `kind`: kind -> member model."""
    if model is None or "root" not in model.model_fields:
        return {}
    items = _unwrap(model.model_fields["root"].annotation)[0]
    args = typing.get_args(items) if typing.get_origin(items) is list else ()
    members = typing.get_args(_unwrap(args[0])[0]) if args else ()
    kinds = {}
    for member in members:
        if isinstance(member, type) and issubclass(member, BaseModel):
            kinds[str(member.model_fields["kind"].default)] = member
    return kinds


def _kinds_section(
    root: type[BaseModel], model: type[BaseModel], name: str, kinds: dict[str, type[BaseModel]]
) -> Iterator[str]:
    yield f"## `{name}` {{#{name}}}"
    yield ""
    doc = _docstring(model)
    if doc:
        yield doc
        yield ""
    yield (
        f"A list; its items' `kind` says which keys they have ({', '.join(kinds)}). Environment:"
        f" {code(env_var(root, (name,)))} (the whole list) or"
        f" {code(env_var(root, (name, '<NAME>', '<KEY>')))} (one key of the item of that name)."
    )
    yield ""
    for kind, member in kinds.items():
        yield from _section(root, member, (f"{name}[]",), True, kind=kind)


def _section_for_leaf(root: type[BaseModel], name: str, field: Any) -> Iterator[str]:
    description = field.description or field_comments(root).get(name, "")
    yield f"## `{name}` {{#{name}}}"
    yield ""
    yield (
        f"{cell(type_text(field.annotation, field.metadata))}, default {cell(default_text(field))},"
        f" environment {code(env_var(root, (name,)))}. {inline(description)}"
    )
    yield ""


# -- the HTTP API reference (OpenAPI) ------------------------------------------------------------

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_SCHEMA_PREFIX = "#/components/schemas/"
_KEYWORDS = (
    ("default", "default"),
    ("minimum", "minimum"),
    ("maximum", "maximum"),
    ("minLength", "min length"),
    ("maxLength", "max length"),
    ("minItems", "min items"),
    ("maxItems", "max items"),
    ("pattern", "pattern"),
)


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def schema_type(schema: dict[str, Any]) -> str:
    """A schema in a few words, with links to the named schemas."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(_SCHEMA_PREFIX)
        return f"[{name}](#schema-{_anchor(name)})"
    if "const" in schema:
        return code(json.dumps(schema["const"]))
    if "enum" in schema:
        return "one of " + ", ".join(code(json.dumps(value)) for value in schema["enum"])
    for combined, word in (("anyOf", " or "), ("oneOf", " or "), ("allOf", " and ")):
        if combined in schema:
            return word.join(schema_type(part) for part in schema[combined])
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(schema_type({**schema, "type": one}) for one in kind)
    if kind == "array":
        return "array of " + schema_type(schema.get("items", {}))
    extra = schema.get("additionalProperties")
    if kind == "object" and isinstance(extra, dict) and not schema.get("properties"):
        return "object of " + schema_type(extra)
    return code(kind) + (f" ({schema['format']})" if schema.get("format") else "")


def _schema_notes(schema: dict[str, Any]) -> str:
    notes = [f"{word} {code(json.dumps(schema[key]))}" for key, word in _KEYWORDS if key in schema]
    return f" ({', '.join(notes)})" if notes else ""


def schema_lines(schema: dict[str, Any], indent: int = 0, depth: int = 0) -> list[str]:
    """The properties of an object schema as a nested list (four spaces a level)."""
    pad = " " * indent
    lines: list[str] = []
    target = schema
    if target.get("type") == "array" and isinstance(target.get("items"), dict):
        target = target["items"]
    required = set(target.get("required", []))
    for name, prop in (target.get("properties") or {}).items():
        words = [schema_type(prop) + _schema_notes(prop)]
        if name in required:
            words.append("**required**")
        about = " — ".join(
            inline(text) for text in (prop.get("title"), prop.get("description")) if text
        )
        line = f"{pad}- {code(name)}: {', '.join(words)}"
        lines.append(f"{line}. {about}" if about else line)
        nested = prop
        if nested.get("type") == "array" and isinstance(nested.get("items"), dict):
            nested = nested["items"]
        if not nested.get("properties") and isinstance(nested.get("additionalProperties"), dict):
            nested = nested["additionalProperties"]  # a mapping: the shape of each value
        if nested.get("properties") and depth < 4:
            lines += schema_lines(nested, indent + 4, depth + 1)
    if target.get("additionalProperties") is False and target.get("properties"):
        lines.append(f"{pad}- no other properties")
    return lines


def _content_lines(content: dict[str, Any]) -> list[str]:
    lines = []
    for media, body in content.items():
        schema = body.get("schema", {})
        lines.append(f"- {code(media)}: {schema_type(schema)}")
        lines += schema_lines(schema, indent=4)
    return lines


def _operation(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    title = f"{method.upper()} {path}"
    lines = [f"### `{title}` {{#{_anchor(title)}}}", ""]
    for key in ("summary", "description"):
        if operation.get(key):
            lines += [inline(operation[key]), ""]
    parameters = operation.get("parameters", [])
    if parameters:
        lines += ["**Parameters**", ""]
        for parameter in parameters:
            need = "required" if parameter.get("required") else "optional"
            words = f"{parameter.get('in')}, {need}, {schema_type(parameter.get('schema', {}))}"
            about = inline(parameter.get("description", ""))
            lines.append(f"- {code(parameter['name'])} ({words}){': ' + about if about else ''}")
        lines.append("")
    body = operation.get("requestBody")
    if body:
        need = "required" if body.get("required") else "optional"
        lines += [f"**Request body** ({need})", ""]
        if body.get("description"):
            lines += [inline(body["description"]), ""]
        lines += [*_content_lines(body.get("content", {})), ""]
    lines += ["**Responses**", ""]
    for status, response in operation.get("responses", {}).items():
        lines.append(f"- **{status}**: {inline(response.get('description', ''))}")
        for name, header in (response.get("headers") or {}).items():
            about = inline(header.get("description", ""))
            lines.append(f"    - header {code(name)}{': ' + about if about else ''}")
        for media, content in (response.get("content") or {}).items():
            schema = content.get("schema", {})
            lines.append(f"    - {code(media)}: {schema_type(schema)}")
            lines += schema_lines(schema, indent=8)
    lines.append("")
    return lines


def openapi_reference(document: dict[str, Any] | None = None) -> str:
    """The HTTP API reference page, in Markdown, from the OpenAPI document the API serves."""
    document = load(OPENAPI_BUILDER)() if document is None else document
    assert document is not None
    info = document.get("info", {})
    lines = [
        "# HTTP API reference",
        "",
        f"Generated when the site is built from the OpenAPI {document.get('openapi', '')}"
        f" document the API serves at `GET /openapi.json` (`{OPENAPI_BUILDER}`), so it says"
        " what the code answers. (The served document also lists the web form's files.)"
        " The guide to it: [The API](../api.md).",
        "",
    ]
    if info.get("description"):
        lines += [
            f"**{inline(info.get('title', ''))}** (version {info.get('version', '')}):"
            f" {inline(info['description'])}",
            "",
        ]
    lines += ["| method | path | summary |", "|---|---|---|"]
    operations = [
        (path, method, item[method])
        for path, item in document.get("paths", {}).items()
        for method in _METHODS
        if method in item
    ]
    for path, method, operation in operations:
        title = f"{method.upper()} {path}"
        lines.append(
            f"| [{method.upper()}](#{_anchor(title)}) | {code(path)}"
            f" | {cell(operation.get('summary', ''))} |"
        )
    lines.append("")
    current = None
    for path, method, operation in operations:
        if path != current:
            lines += [f"## `{path}`", ""]
            current = path
        lines += _operation(path, method, operation)
    schemas = document.get("components", {}).get("schemas", {})
    if schemas:
        lines += ["## Schemas", ""]
        for name, schema in schemas.items():
            lines += [f"### {name} {{#schema-{_anchor(name)}}}", ""]
            if schema.get("description"):
                lines += [inline(schema["description"]), ""]
            lines += [f"{schema_type({**schema, 'title': None})}{_schema_notes(schema)}", ""]
            lines += [*schema_lines(schema), ""]
    return "\n".join(lines).rstrip() + "\n"


# -- links ---------------------------------------------------------------------------------------

_LINK = re.compile(r"(?<!\\)(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^()\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def rewrite_links(markdown: str, source: str, page: str, repo_url: str | None = None) -> str:
    """Links in `markdown` (the repository file `source`, built as the page `page` under docs/)
    made to work on the site: see the module's docstring."""
    source_dir = PurePosixPath(source).parent
    page_dir = PurePosixPath(page).parent
    pages = {**INCLUDED}

    def target(match: re.Match[str]) -> str:
        bang, text, url = match.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", url, re.I):
            return match.group(0)
        path, hash_, anchor = url.partition("#")
        resolved = _normalise(source_dir / path)
        if resolved is None:
            return match.group(0)
        if resolved in pages:
            new = _relative(PurePosixPath(pages[resolved]), page_dir)
        elif resolved.startswith(f"{DOCS}/") and not resolved.endswith(".py"):
            new = _relative(PurePosixPath(resolved.removeprefix(f"{DOCS}/")), page_dir)
        elif not (ROOT / resolved).exists():
            return match.group(0)  # left for mkdocs to report
        elif repo_url:
            return f"{bang}[{text}]({repo_url.rstrip('/')}/blob/main/{resolved}{hash_}{anchor})"
        else:
            plain = text if resolved in text else f"{text} ({code(resolved)})"
            return "" if bang else plain
        return f"{bang}[{text}]({new}{hash_}{anchor})"

    out, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if _FENCE.match(line):
            fenced = not fenced
        out.append(line if fenced else _LINK.sub(target, line))
    return "".join(out)


def _normalise(path: PurePosixPath) -> str | None:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def _relative(target: PurePosixPath, start: PurePosixPath) -> str:
    up = len(start.parts) if str(start) != "." else 0
    return "/".join([".."] * up + list(target.parts))


# -- MkDocs events -------------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    generated = {
        CONFIGURATION_PAGE: configuration_reference(),
        HTTP_API_PAGE: openapi_reference(),
    }
    for source, page in INCLUDED.items():
        generated[page] = (ROOT / source).read_text(encoding="utf-8")
    for page, content in generated.items():
        existing = files.get_file_from_path(page)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, page, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    name = page.file.src_uri
    sources = {page_name: source for source, page_name in INCLUDED.items()}
    source = sources.get(name, f"{DOCS}/{name}")
    return rewrite_links(markdown, source, name, config.get("repo_url"))
