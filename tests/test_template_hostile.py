"""Hostile stored templates (issue 23): none may run code, read an attribute of a Python
object, hold up a node or fill its memory. Each is refused with a clear error when stored
(`check_template`, `PUT /templates/{id}` answering 422, never 500) or renders harmlessly or
fails with a `TemplateError` (a permanent failure of that one email in the pipeline).

Rendering is also tried on templates that never went through the check, as one stored before
the fix would be. The API runs on loopback with its templates in memory (no AWS needed)."""

from __future__ import annotations

import ast
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.auth import hash_key
from gomailpy.email import handlebars
from gomailpy.email.handlebars import MAX_ATOMS, MAX_NESTING, MAX_TAGS, parse
from gomailpy.email.handlebars.values import escape
from gomailpy.email.templates import Template, check_template, render
from gomailpy.errors import TemplateError, TemplateLimitError, TemplateSyntaxError
from gomailpy.queues.deadletter import FailureKind
from gomailpy.queues.sqs import ReceivedMessage
from gomailpy.store.items import MemoryItemTable
from gomailpy.store.templates import TemplateStore
from pipeline.prepare.render import Renderer
from pipeline.sending.settlement import Item, IterationReport, Plan
from tests.support import Client, api_client, make_envelope, make_settings

KEY = "hostile-key-" + "k" * 40
AUTH = {"Authorization": f"Bearer {KEY}"}
QUICK_S = 3.0  # every refusal here comes well within this, on any machine that runs the tests


def pybars_exploits(marker: Path) -> list[str]:
    """The template of issue 23 (pybars3 pasted a bracketed segment into Python source), and
    the same payload in every other place a template can hold text."""
    payload = f"open({str(marker)!r},'w').write('x')"
    return [
        f"{{{{#each [a', {payload}, u'] }}}}{{{{/each}}}}",
        f"{{{{[a', {payload}, u']}}}}",
        f"{{{{a.[b', {payload}, u']}}}}",
        f'{{{{#each "{payload}"}}}}{{{{this}}}}{{{{/each}}}}',
        f'{{{{lookup this "{payload}"}}}}',
        f'{{{{insert x "{payload}"}}}}',
        f"{{{{!-- {payload} --}}}}",
        f"{{{{{payload}}}}}",
        f'{{{{__import__ "os"}}}}{{{{eval "{payload}"}}}}',
    ]


def render_unchecked(source: str, data: dict[str, Any]) -> str | TemplateError:
    """Render `source` as the pipeline would, without the check made when storing."""
    try:
        parts = render(Template("hostile", html=source, text=source, subject="s"), data)
    except TemplateError as exc:
        return exc
    return parts.html or ""


def interpret(source: str, data: Any) -> str | TemplateError:
    """The interpreter alone (no safety net of gomailpy.email.templates): anything but a
    TemplateError out of it is a bug."""
    try:
        return handlebars.render(parse(source), data, escape_html=True)
    except TemplateError as exc:
        return exc


# -- code execution --------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(pybars_exploits(Path("x")))))
def test_the_pybars3_exploit_and_its_variants_run_nothing(tmp_path: Path, index: int) -> None:
    marker = tmp_path / "pwned"
    source = pybars_exploits(marker)[index]
    result = render_unchecked(source, {"a": [1], "x": ""})
    assert not marker.exists()
    if isinstance(result, TemplateError):  # a clear error: the email fails for good
        assert "template 'hostile'" in str(result)
    else:  # harmless: the payload is text, printed (insert's default, escaped) or not at all
        assert result in ("", escape(f"open({str(marker)!r},'w').write('x')"))
    check_template(Template("hostile", html=source))  # whatever it says, it runs nothing
    assert not marker.exists()


def test_the_exploit_of_issue_23_is_refused_when_stored(tmp_path: Path) -> None:
    source = pybars_exploits(tmp_path / "pwned")[0]
    [problem] = check_template(Template("hostile", html=source))
    assert problem.startswith("html: does not compile: a [bracketed] path segment may not hold")
    assert not (tmp_path / "pwned").exists()


# Builtins that run code or read attributes by name (re.compile is a method: not these).
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "getattr", "setattr", "vars", "__import__"}


def test_the_interpreter_never_compiles_evaluates_or_reads_attributes() -> None:
    """A guard on the source: no eval/exec/compile, no getattr on whatever the data holds."""
    package = Path(handlebars.__file__).parent
    for module in sorted(package.glob("*.py")):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                name = node.func.id
                assert name not in FORBIDDEN_BUILTINS, f"{module.name}:{node.lineno} calls {name}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names]
                assert not {"pybars", "importlib", "builtins", "os", "subprocess"} & {
                    (getattr(node, "module", None) or n).split(".")[0] for n in names
                }, f"{module.name}:{node.lineno} imports {names}"


# -- attribute and dunder lookups ------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{__class__}}",
        "{{this.__class__.__mro__}}",
        "{{this.__class__.__mro__.[1].__subclasses__}}",
        "{{a.__dict__}}",
        "{{a.__class__.__init__.__globals__}}",
        "{{a.keys}}{{a.items}}{{a.get}}{{list.append}}{{list.__len__}}",
        '{{lookup this "__class__"}}',
        '{{lookup (lookup this "__class__") "__mro__"}}',
        '{{#with (lookup this "__class__")}}{{__subclasses__}}{{/with}}',
        "{{#each this.__class__}}{{this}}{{/each}}",
        "{{@root.__class__}}{{@__class__}}{{@index.__class__}}",
        "{{[__class__]}}{{this.[__dict__]}}",
        "{{constructor}}{{a.constructor.constructor}}{{__proto__}}",
        "{{../../../../__class__}}",
        "{{s.__len__}}{{s.upper}}{{s.length.__class__}}",
    ],
)
def test_attribute_and_dunder_lookups_find_nothing(source: str) -> None:
    data = {"a": {"x": 1}, "list": [1, 2], "s": "text"}
    assert check_template(Template("hostile", html=source)) == []
    assert render_unchecked(source, data) == ""


class Tripwire:
    """Not template data: any attribute read, call or conversion is recorded."""

    touched: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        Tripwire.touched.append(name)
        return object.__getattribute__(self, name)

    def __str__(self) -> str:
        Tripwire.touched.append("__str__")
        return "tripped"

    def __len__(self) -> int:
        Tripwire.touched.append("__len__")
        return 1


def test_a_value_that_is_not_template_data_is_never_read() -> None:
    Tripwire.touched = []
    source = (
        "[{{obj}}{{obj.x}}{{obj.length}}{{lookup obj 'x'}}{{length obj}}{{#each obj}}i{{/each}}"
        "{{#with obj}}{{this.x}}{{/with}}{{#if obj}}t{{/if}}{{formatDate obj}}{{insert obj}}"
        "{{#equals obj 1}}{{/equals}}{{#greaterThan obj 1}}{{/greaterThan}}]"
    )
    assert interpret(source, {"obj": Tripwire()}) == "[0]"  # {{length obj}}: 0
    # isinstance() itself asks for __class__ when the type does not match: nothing else is read,
    # called or converted, and no name a template wrote is ever looked up on the object.
    assert set(Tripwire.touched) <= {"__class__"}


# -- size, depth and time --------------------------------------------------------------------------


def refused_quickly(source: str) -> TemplateSyntaxError:
    start = time.monotonic()
    with pytest.raises(TemplateSyntaxError) as caught:
        parse(source)
    assert time.monotonic() - start < QUICK_S
    assert check_template(Template("hostile", html=source))
    return caught.value


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{{#if a}}" * 10_000 + "x" + "{{/if}}" * 10_000,
            f"blocks nest more than {MAX_NESTING} deep",
        ),
        ("{{#each a}}" * 33 + "{{/each}}" * 33, "blocks nest more than"),
        ("{{#with a}}{{#if b}}" * 17 + "{{/if}}{{/with}}" * 17, "blocks nest more than"),
        (
            "{{length " + "(length " * 10_000 + "a" + ")" * 10_000 + "}}",
            "subexpressions nest more than",
        ),
        ("{{#if " + "(and " * 40 + "a" + ")" * 40 + "}}{{/if}}", "subexpressions nest more than"),
        ("{{a}}" * (MAX_TAGS + 1), f"more than {MAX_TAGS}"),
        ("{{and " + "a " * (MAX_ATOMS + 1) + "}}", f"more than {MAX_ATOMS} names and values"),
    ],
)
def test_deep_nesting_and_too_many_tags_are_refused(source: str, message: str) -> None:
    assert message in str(refused_quickly(source))


def test_nesting_within_the_limit_renders() -> None:
    source = "{{#if a}}" * MAX_NESTING + "deep" + "{{/if}}" * MAX_NESTING
    assert check_template(Template("ok", html=source)) == []
    assert render_unchecked(source, {"a": True}) == "deep"


def over_a_limit(source: str, data: dict[str, Any]) -> TemplateLimitError:
    start = time.monotonic()
    result = render_unchecked(source, data)
    assert time.monotonic() - start < QUICK_S
    assert isinstance(result, TemplateLimitError), result
    assert "template 'hostile'" in str(result) and "failed to render" in str(result)
    return result


def test_a_huge_each_is_stopped_by_the_output_limit() -> None:
    body = "<tr><td>" + "x" * 200 + "</td></tr>"
    error = over_a_limit("{{#each items}}" + body + "{{/each}}", {"items": list(range(100_000))})
    assert "the output would be over" in str(error)


def test_a_nested_each_of_a_thousand_by_a_thousand_is_stopped() -> None:
    rows = list(range(1000))
    error = over_a_limit("{{#each a}}{{#each ../a}}x{{/each}}{{/each}}", {"a": rows})
    assert "steps" in str(error)


def test_a_big_value_printed_in_a_loop_is_stopped() -> None:
    data = {"big": "y" * 100_000, "rows": list(range(1000))}
    over_a_limit("{{#each rows}}{{{../big}}}{{/each}}", data)


def test_a_list_printed_in_a_loop_is_stopped() -> None:
    data = {"big": list(range(10_000)), "rows": list(range(1000))}
    over_a_limit(
        "{{#each rows}}{{#equals ../big ../big}}{{/equals}}{{../big.length}}{{../big}}{{/each}}",
        data,
    )


def test_deeply_nested_data_prints_without_crashing() -> None:
    deep: Any = "bottom"
    for _ in range(5000):
        deep = [deep]
    result = render_unchecked("{{deep}}", {"deep": deep})
    assert isinstance(result, TemplateLimitError)
    nested: Any = {"v": "bottom"}
    for _ in range(5000):
        nested = {"n": nested}
    source = "{{n.n.n.n}}{{#each n}}{{#each this}}x{{/each}}{{/each}}"
    assert render_unchecked(source, nested) == "[object Object]x"


def test_formatting_a_date_cannot_blow_up() -> None:
    data = {"t": "2020-01-01T00:00:00Z", "fmt": "Z" * 100_000, "long": "9" * 100_000}
    assert render_unchecked("{{formatDate t fmt}}{{formatDate long 'YYYY'}}", data) == ""
    assert (
        render_unchecked("{{formatDate 1e308 'YYYY'}}{{formatDate -1e20 'YYYY' '+2359'}}", {}) == ""
    )


# -- partials and what else Handlebars has that SendGrid does not ------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{> self}}", "partials ({{> name}}) are not supported"),
        ("{{#> layout}}{{> layout}}{{/layout}}", "partials"),
        ('{{#*inline "p"}}{{> p}}{{/inline}}{{> p}}', "decorators"),
        ("{{> (lookup this 'name')}}", "partials"),
        ("{{{{raw}}}} {{x}} {{{{/raw}}}}", "raw blocks"),
        ("{{#each items as |item i|}}{{item}}{{/each}}", "block parameters"),
        ("{{link text href=url}}", "hash arguments"),
    ],
)
def test_partials_and_other_extensions_are_refused(source: str, message: str) -> None:
    assert message in str(refused_quickly(source))


# -- malformed templates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{#if a}}never closed", "{{#if}} is never closed with {{/if}}"),
        ("{{#each a}}{{#if b}}{{/each}}", "{{/each}} does not close {{#if}}"),
        ("{{#if a}}{{/if}}{{/if}}", "{{/if}} closes no block"),
        ("{{#each a}}{{else}}{{else}}{{/each}}", "{{else}} after {{else}}"),
        ("{{^a}}{{else if b}}{{/a}}", "{{else …}} inside {{^a}}"),
        ("text {{name", "never closed"),
        ("{{name}", "unexpected '}'"),
        ("{{!-- no end", "a comment that is never closed"),
        ('{{insert name "no end}}', "a string that is never closed"),
        ("{{a.[b}}", "never closed with ']'"),
        ("{{a.[b'c]}}", "may not hold quotes"),
        ('{{a.[b"c]}}', "may not hold quotes"),
        ("{{a.[b(c)]}}", "parentheses"),
        ("{{a'b}}", "unexpected \"'\" after 'a'"),
        ('{{a"b"}}', "unexpected '\"' after 'a'"),
        ("{{[a]b}}", "unexpected 'b' after '[a]'"),
        ("{{a.}}", "a name after '.' or '/' expected"),
        ("{{.a}}", "unexpected"),
        ("{{a..b}}", "'..' only starts a path"),
        ("{{this.this}}", "only at its start"),
        ("{{a (b}}", "')' expected"),
        ("{{a b)}}", "unexpected ')'"),
        ("{{(a)}}", "a (subexpression) cannot name a helper"),
        ("{{/}}", "an empty tag"),
        ("{{#}}{{/}}", "an empty tag"),
        ("{{{a}}", "'{{{' must close with '}}}'"),
        ("{{@}}", "a name after '@' expected"),
        ("{{@../x}}", "invalid path"),
        ("{{a;b}}", "unexpected ';'"),
        ('{{#"if" a}}{{/if}}', "a block is named by a helper or a path"),
    ],
)
def test_malformed_templates_are_refused_with_a_clear_message(source: str, message: str) -> None:
    error = refused_quickly(source)
    assert message in str(error) and "(line 1)" in str(error)


@pytest.mark.parametrize(
    ("source", "data", "expected"),
    [
        ("{{a.[b c]}}", {"a": {"b c": "ok"}}, "ok"),
        ("{{a.[]}}", {"a": {"": "empty key"}}, "empty key"),
        ("{{a.[.]}}{{a.[..]}}{{a.[this]}}", {"a": {".": 1, "..": 2, "this": 3}}, "123"),
        ("{{a.[0]}}{{a.[-1]}}{{a.[99999999999]}}", {"a": ["first"]}, "first"),
        ('{{insert x "it\'s \\"quoted\\" {{}}"}}', {}, "it&#x27;s &quot;quoted&quot; {{}}"),
        ("{{[<script>]}}", {"<script>": "<b>"}, "&lt;b&gt;"),
        ("{{a.[1e400]}}{{a.[٣]}}", {"a": ["x"]}, ""),
    ],
)
def test_odd_but_harmless_paths_only_look_data_up(source: str, data: Any, expected: str) -> None:
    assert check_template(Template("ok", html=source)) == []
    assert render_unchecked(source, data) == expected


FRAGMENTS = [
    "{{", "}}", "{{{", "}}}", "{{#", "{{/", "{{^", "{{else}}", "{{~", "~}}", "{{!", "{{!--", "--}}",
    "{{>", "#if", "#each", "/if", "/each", "if", "each", "with", "this", "../", "..", ".", "/",
    "[", "]", "(", ")", '"', "'", "@index", "@root", "=", "|", "a", "b", "length", "equals",
    "lookup", "__class__", " ", "\n", "\\", "x", "0", "-1.5", "true", "null", "formatDate",
]  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40))
def test_any_jumble_of_handlebars_parses_or_is_refused_cleanly(fragments: list[str]) -> None:
    source = "".join(fragments)
    problems = check_template(Template("fuzz", html=source or "x"))
    try:
        program = parse(source)
    except TemplateSyntaxError:
        assert problems
        return
    assert problems == []
    data = {"a": [1, {"b": "<x>"}], "b": {"a": 2}, "x": "y", "this": 1}
    try:
        handlebars.render(program, data, escape_html=True)
    except TemplateError:
        pass  # a call of no helper: the email's failure, clearly said


# -- the pipeline: a hostile template fails its email only ------------------------------------------


def received(n: int) -> ReceivedMessage:
    return ReceivedMessage("queue", f"sqs-{n}", f"handle-{n}", "{}", 1)


async def test_the_pipeline_fails_the_email_for_good_and_sends_the_others() -> None:
    store = TemplateStore(MemoryItemTable())
    # Stored as a template from before the fix would be: straight into the table, unchecked.
    await store.put(Template("bomb", html="{{#each a}}{{#each ../a}}x{{/each}}{{/each}}"))
    await store.put(Template("exploit", html=pybars_exploits(Path("/nonexistent/x"))[0]))
    await store.put(Template("fine", subject="Hi {{name}}", html="<p>{{name}}</p>"))
    items = [
        Item(
            received(0), make_envelope(0, templateId="bomb", templateData={"a": list(range(1000))})
        ),
        Item(received(1), make_envelope(1, templateId="exploit", templateData={})),
        Item(received(2), make_envelope(2, templateId="fine", templateData={"name": "<Ada>"})),
    ]
    renderer = Renderer(store)
    ready, plan = await renderer((items, Plan()), IterationReport())
    assert [item.envelope.email.html for item in ready] == ["<p>&lt;Ada&gt;</p>"]
    reasons = {letter.message.sqs_message_id: letter for letter in plan.dead_letters}
    assert set(reasons) == {"sqs-0", "sqs-1"}
    assert all(letter.kind is FailureKind.PERMANENT for letter in reasons.values())
    assert "'bomb': html failed to render: rendering takes more than" in reasons["sqs-0"].reason
    assert "'exploit': html failed to render: a [bracketed] path segment" in reasons["sqs-1"].reason
    assert plan.releases == []  # never retried


# -- the API: refused with 422, never 500 ----------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    settings = make_settings(
        "http://127.0.0.1:1",  # no queue is used by the template routes
        queue_count=1,
        status={"backend": "memory"},
        api={"serve_webclient": False, "api_key_hashes": [hash_key(KEY)]},
    )
    async with AsyncExitStack() as stack:
        yield await api_client(stack, settings)


API_REFUSED = [
    "{{#each [a', open('/tmp/gomailpy-issue-23','w').write('x'), u'] }}{{/each}}",
    "{{#if a}}" * 10_000 + "{{/if}}" * 10_000,
    "{{length " + "(length " * 10_000 + "a" + ")" * 10_000 + "}}",
    "{{> self}}",
    '{{#*inline "p"}}{{> p}}{{/inline}}{{> p}}',
    "{{#if a}}",
    "{{#if a}}{{/each}}",
    "{{a.[b'c]}}",
    "{{a x=1}}",
    "{{#equals a}}{{/equals}}",
    "{{a}}" * (MAX_TAGS + 1),
    "{{and " + "a " * (MAX_ATOMS + 1) + "}}",
]


@pytest.mark.parametrize("index", range(len(API_REFUSED)))
@pytest.mark.parametrize("part", ["subject", "html", "text"])
async def test_put_refuses_a_hostile_template_with_422(
    client: Client, index: int, part: str
) -> None:
    source = API_REFUSED[index]
    if part == "subject":
        source = source.replace("\n", " ")
    answer = await client.put("/templates/hostile", json={part: source}, headers=AUTH)
    assert answer.status == 422, await answer.text()
    errors = (await answer.json())["errors"]
    assert errors[part].startswith(f"{part}: ")
    assert (await client.get("/templates/hostile", headers=AUTH)).status == 404
    assert not Path("/tmp/gomailpy-issue-23").exists()


@pytest.mark.parametrize(
    "source",
    ["{{__class__}}{{this.__class__.__mro__}}", '{{lookup this "__class__"}}', "{{a.[b c]}}"],
)
async def test_put_stores_a_template_that_only_looks_data_up(client: Client, source: str) -> None:
    answer = await client.put("/templates/odd", json={"html": source}, headers=AUTH)
    assert answer.status == 200, await answer.text()


async def test_put_never_answers_500_to_a_jumble(client: Client) -> None:
    for source in ["{{", "}}", "{{{{", "{{#}}", "{{~}}", "{{!", "\\{{", "{{else if}}", "{{^}}"]:
        answer = await client.put("/templates/jumble", json={"html": source}, headers=AUTH)
        assert answer.status in (200, 422), (source, answer.status)
