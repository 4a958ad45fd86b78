"""The documentation's generated pages (docs/hooks.py) and the README's promises.

`make test` builds the whole site with `mkdocs build --strict` (scripts/test.sh); these tests
check what the build cannot see: that the configuration reference names every settings key with
its environment variable, that the HTTP API reference has every route of the OpenAPI document,
and that the README stays a short front page whose links lead somewhere."""

from __future__ import annotations

import importlib.util
import re
import typing
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

from pydantic import BaseModel, Field, RootModel

ROOT = Path(__file__).resolve().parent.parent


def load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = load_hooks()


def leaf_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key a config may set, walked independently of the hook: `a.b`, items `a.b[].c`."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if isinstance(annotation, type) and issubclass(annotation, RootModel):
            # A list of a union on `kind` (providers): every member's keys, as items.
            items = typing.get_args(annotation.model_fields["root"].annotation)[0]
            for member in typing.get_args(typing.get_args(items)[0]):
                keys += leaf_keys(member, (*prefix, f"{name}[]"))
            continue
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += leaf_keys(annotation, (*prefix, name))
            continue
        keys.append((*prefix, name))
        item = args[0] if typing.get_origin(annotation) is list and args else None
        if isinstance(item, type) and issubclass(item, BaseModel):
            keys += leaf_keys(item, (*prefix, f"{name}[]"))
    return keys


def test_configuration_reference_names_every_key_with_its_environment_variable() -> None:
    settings = hooks.load(hooks.SETTINGS_MODEL)
    page = hooks.configuration_reference()

    for name in settings.model_fields:  # every top-level section has its heading
        assert re.search(rf"^## `{name}` \{{#{name}\}}$", page, re.M), name
    keys = leaf_keys(settings)
    assert len(keys) > 100
    for key in keys:
        assert f"`{'.'.join(key)}`" in page, f"{'.'.join(key)} missing from the reference"
        if not any(part.endswith("[]") for part in key):
            variable = "GOMAILPY_" + "__".join(part.upper() for part in key)
            assert f"`{'.'.join(key)}`<br>`{variable}`" in page, variable


def test_configuration_reference_shows_types_defaults_constraints_and_comments() -> None:
    page = hooks.configuration_reference()
    rows = {row.split(" | ")[0].split("<br>")[0]: row for row in page.splitlines() if "|" in row}

    port = rows["| `api.port`"]
    assert "integer (≥ 0, ≤ 65535)" in port and "`8000`" in port
    secret = rows["| `providers[].api_key`"]  # of the sendgrid kind only
    assert "secret or null" in secret and "read from the environment only" in secret
    choice = rows["| `api.queue_choice`"]
    assert '`"least-depth"` or `"round-robin"`' in choice
    # A comment ending the field's line, and one continued on the next line (lower case).
    assert "connect and read timeout of every AWS call" in rows["| `aws.client_timeout_s`"]
    assert "point this at moto's server locally" in rows["| `status.endpoint_url`"]
    assert "The MAC key of message ids" in rows["| `status.id_key`"]


class _Commented(BaseModel):
    first: int = 1  # ends the line
    # Above `second` (upper case: not a continuation of the comment of `first`).
    second: str = "x"
    third: Annotated[float, Field(gt=0)] = 2.0  # a comment that goes on
    # and on, in lower case
    # Above the fourth, in upper case.
    fourth: bool = False
    fifth: int = Field(default=5, description="From Field.")  # not this one


def test_field_comments_come_from_the_line_its_continuation_or_the_block_above() -> None:
    comments = hooks.field_comments(_Commented)
    assert comments == {
        "first": "ends the line",
        "second": "Above `second` (upper case: not a continuation of the comment of `first`).",
        "third": "a comment that goes on and on, in lower case",
        "fourth": "Above the fourth, in upper case.",
        "fifth": "not this one",
    }
    page_rows = list(hooks._section(_Commented, _Commented, ("x",), False))
    assert any("From Field." in row and "`x.fifth`" in row for row in page_rows)


def test_http_api_reference_has_every_route_of_the_openapi_document() -> None:
    document: dict[str, Any] = hooks.load(hooks.OPENAPI_BUILDER)()
    page = hooks.openapi_reference()

    operations = [
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in hooks._METHODS
    ]
    assert len(operations) > 15
    for method, path in operations:
        assert f"### `{method.upper()} {path}`" in page, f"{method.upper()} {path}"
        for status in document["paths"][path][method]["responses"]:
            assert f"- **{status}**:" in page
    for name in document["components"]["schemas"]:
        assert f"### {name} {{#schema-{name.lower()}}}" in page
    assert "- `Idempotency-Key` (header, optional, `string`)" in page


def test_links_to_repository_files_work_on_the_site() -> None:
    text = (
        "[lease](../pipeline/sending/lease.py), [bench](../bench/README.md#soak), [api](api.md#x),"
        " [home](../README.md), [gone](../no/such/file.py), ![shot](webclient.png),"
        " [web](https://example.org/a.md)\n```\n[kept](../pipeline/sending/lease.py)\n```\n"
    )
    out = hooks.rewrite_links(text, "docs/page.md", "page.md")
    assert out.startswith(
        "lease (`pipeline/sending/lease.py`), [bench](benchmarks-in-detail.md#soak), [api](api.md#x),"
        " [home](index.md), [gone](../no/such/file.py), ![shot](webclient.png),"
        " [web](https://example.org/a.md)\n"
    )
    assert "```\n[kept](../pipeline/sending/lease.py)\n```" in out  # code is never touched
    with_repo = hooks.rewrite_links(text, "docs/page.md", "page.md", "https://git.example/x")
    assert "[lease](https://git.example/x/blob/main/pipeline/sending/lease.py)" in with_repo
    readme = hooks.rewrite_links("[s](docs/security.md#a) [m](Makefile)", "README.md", "index.md")
    assert readme == "[s](security.md#a) m (`Makefile`)"
    nested = hooks.rewrite_links(
        "[c](../configuration.md)", "docs/reference/c.md", "reference/c.md"
    )
    assert nested == "[c](../configuration.md)"


def test_readme_is_a_short_front_page_with_the_two_commands_and_working_links() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "make up      # set everything up, then run the whole system locally" in readme
    assert "make test    # set everything up, then run linters and the whole test suite" in readme
    links = re.findall(r"\]\(((?:docs|bench)/[^)#]*)", readme)
    assert len(links) > 15
    for link in links:
        assert (ROOT / link).exists(), link
