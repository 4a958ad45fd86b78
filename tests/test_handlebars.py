"""The Handlebars dialect of stored templates (gomailpy.email.handlebars): each block, each helper
SendGrid documents (with the examples of its "Using Handlebars" page), paths, escaping and
whitespace. Pure: no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from gomailpy.email.handlebars import Budget, Limits, parse, render
from gomailpy.email.handlebars.dates import format_date
from gomailpy.email.handlebars.helpers import equals
from gomailpy.email.templates import Template, check_template
from gomailpy.email.templates import render as render_template
from gomailpy.errors import GomailError, TemplateError, TemplateLimitError, TemplateSyntaxError


def html(source: str, data: Any = None) -> str:
    return render(parse(source), {} if data is None else data, escape_html=True)


def plain(source: str, data: Any = None) -> str:
    return render(parse(source), {} if data is None else data, escape_html=False)


def test_template_errors_are_gomail_errors() -> None:
    assert issubclass(TemplateSyntaxError, TemplateError)
    assert issubclass(TemplateLimitError, TemplateError)
    assert issubclass(TemplateError, GomailError)


# -- substitution --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "data", "expected"),
    [
        ("<p>Hello {{ firstName }}</p>", {"firstName": "Ben"}, "<p>Hello Ben</p>"),
        (
            '<a href="{{ url }}">x</a>',
            {"url": "https://e.com/a?b=1"},
            '<a href="https://e.com/a?b&#x3D;1">x</a>',
        ),
        ("{{user.profile.firstName}}", {"user": {"profile": {"firstName": "Ben"}}}, "Ben"),
        ("{{user/profile/firstName}}", {"user": {"profile": {"firstName": "Ben"}}}, "Ben"),
        (
            "<p>Hello {{user.profile.firstName}}</p>",
            {"user": {"orderHistory": []}},
            "<p>Hello </p>",
        ),
        ("{{{firstName}}}", {"firstName": "<strong>Ben</strong>"}, "<strong>Ben</strong>"),
        ("{{& firstName}}", {"firstName": "<b>"}, "<b>"),
        ("{{x}}", {"x": "&<>\"'`="}, "&amp;&lt;&gt;&quot;&#x27;&#x60;&#x3D;"),
        ("{{[first name]}}", {"first name": "Ada"}, "Ada"),
        (
            "{{items.[1]}} {{items.0}} {{items.length}} {{name.length}}",
            {"items": ["a", "b"], "name": "Ada"},
            "b a 2 3",
        ),
        ("{{items.9}}{{items.x}}{{n.length}}", {"items": ["a"], "n": 5}, ""),
        ("{{this.a}}{{./a}}{{a}}", {"a": 1}, "111"),
        ("{{@root.a}}", {"a": 7}, "7"),
        (
            "{{n}} {{f}} {{t}} {{z}} {{big}} {{small}}",
            {"n": 3, "f": 2.0, "t": True, "z": 0, "big": 1e21, "small": 1e-7},
            "3 2 true 0 1e+21 0.0000001",
        ),
        ("{{missing}}{{nul}}", {"nul": None}, ""),
        (
            "{{list}}|{{obj}}",
            {"list": [1, "a", None, [2, 3]], "obj": {"a": 1}},
            "1,a,,2,3|[object Object]",
        ),
        ('{{"literal"}} {{1}} {{true}}', {}, "literal 1 true"),
        ("\\{{name}} {{name}}", {"name": "Ada"}, "{{name}} Ada"),
    ],
)
def test_substitution(source: str, data: dict[str, Any], expected: str) -> None:
    assert html(source, data) == expected


def test_escaping_is_for_the_html_part_only() -> None:
    assert plain("{{x}} {{{x}}}", {"x": "<a & b>"}) == "<a & b> <a & b>"
    assert html("{{x}} {{{x}}}", {"x": "<a & b>"}) == "&lt;a &amp; b&gt; <a & b>"


def test_comments_print_nothing() -> None:
    assert html("a{{! a comment }}b{{!-- {{#if}} inside --}}c") == "abc"


# -- blocks --------------------------------------------------------------------------------------


IF_ELSE = """{{#if user.profile.male}}
   <p>Dear Sir</p>
{{else if user.profile.female}}
   <p>Dear Madame</p>
{{else}}
   <p>Dear Customer</p>
{{/if}}
"""


@pytest.mark.parametrize(
    ("profile", "expected"),
    [({"male": True}, "Sir"), ({"female": True}, "Madame"), ({}, "Customer")],
)
def test_if_else_if_else(profile: dict[str, Any], expected: str) -> None:
    assert html(IF_ELSE, {"user": {"profile": profile}}) == f"   <p>Dear {expected}</p>\n"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, False), (False, False), (0, False), (0.0, False), ("", False), ([], False),
        (True, True), (1, True), (-1, True), (0.5, True), ("0", True), ([0], True), ({}, True),
    ],
)  # fmt: skip
def test_if_and_unless_see_truth_as_handlebars_does(value: Any, shown: bool) -> None:
    assert html("{{#if v}}yes{{else}}no{{/if}}", {"v": value}) == ("yes" if shown else "no")
    assert html("{{#unless v}}no{{else}}yes{{/unless}}", {"v": value}) == ("yes" if shown else "no")


def test_if_with_a_root() -> None:
    source = "{{#if user.suspended}}call {{@root.supportPhone}}{{/if}}"
    data = {"user": {"suspended": True}, "supportPhone": "1-800-555-5555"}
    assert html(source, data) == "call 1-800-555-5555"


def test_each_over_a_list_with_its_data_variables() -> None:
    source = (
        "{{#each items}}{{@index}}:{{this.name}}{{#if @first}}(first){{/if}}"
        "{{#if @last}}(last){{/if}}[{{@key}}]{{../shop}};{{/each}}"
    )
    data = {"shop": "S", "items": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}
    assert html(source, data) == "0:a(first)[0]S;1:b[1]S;2:c(last)[2]S;"


def test_each_over_a_dict_gives_keys() -> None:
    source = "{{#each prices}}{{@key}}={{this}}{{#unless @last}}, {{/unless}}{{/each}}"
    assert html(source, {"prices": {"tea": 2, "cake": 3.5}}) == "tea=2, cake=3.5"


@pytest.mark.parametrize("value", [[], {}, None, "text", 5])
def test_each_over_nothing_renders_its_else(value: Any) -> None:
    assert html("{{#each v}}item{{else}}none{{/each}}", {"v": value}) == "none"


def test_each_as_sendgrid_documents_it() -> None:
    source = """<ol>
  {{#each user.orderHistory}}
   <li>You ordered: {{this.item}} on: {{this.date}}</li>
  {{/each}}
</ol>"""
    data = {
        "user": {
            "orderHistory": [
                {"date": "2/1/2018", "item": "shoes"},
                {"date": "1/4/2017", "item": "hat"},
            ]
        }
    }
    assert html(source, data) == (
        "<ol>\n   <li>You ordered: shoes on: 2/1/2018</li>\n"
        "   <li>You ordered: hat on: 1/4/2017</li>\n</ol>"
    )


def test_nested_each_reaches_out_with_parent_paths() -> None:
    source = "{{#each groups}}{{#each this.members}}{{../name}}/{{this}}@{{../../org}} {{/each}}{{/each}}"
    data = {
        "org": "O",
        "groups": [{"name": "g1", "members": ["a", "b"]}, {"name": "g2", "members": ["c"]}],
    }
    assert html(source, data) == "g1/a@O g1/b@O g2/c@O "


def test_if_inside_each_does_not_move_the_parent() -> None:
    source = "{{#each items}}{{#if this}}{{../label}}{{this}}{{/if}}{{/each}}"
    assert html(source, {"label": "#", "items": [1, 0, 2]}) == "#1#2"


def test_with_changes_the_context_and_skips_empty_values() -> None:
    source = "{{#with user}}{{name}} ({{../site}}){{else}}nobody{{/with}}"
    assert html(source, {"user": {"name": "Ada"}, "site": "S"}) == "Ada (S)"
    assert html(source, {"user": None}) == "nobody"
    assert html(source, {"user": []}) == "nobody"


def test_sections_and_inverted_sections() -> None:
    assert (
        html("{{#people}}{{name}},{{/people}}", {"people": [{"name": "a"}, {"name": "b"}]})
        == "a,b,"
    )
    assert html("{{#person}}{{name}}{{/person}}", {"person": {"name": "Ada"}}) == "Ada"
    assert html("{{#flag}}on{{else}}off{{/flag}}", {"flag": False}) == "off"
    assert html("{{^people}}nobody{{/people}}", {"people": []}) == "nobody"
    assert html("{{^people}}nobody{{else}}some{{/people}}", {"people": [1]}) == "some"


# -- SendGrid's helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("helper", "a", "b", "shown"),
    [
        ("equals", 289199, 289199, True),
        ("equals", 167320, 289199, False),
        ("equals", 3, "3", True),  # SendGrid coerces: {{#equals 3 "3"}} is true
        ("equals", "100", 100.0, True),
        ("equals", "abc", "abc", True),
        ("equals", "01", "1", False),  # two strings compare as strings
        ("equals", None, None, True),
        ("equals", None, "", False),
        ("equals", True, "true", True),
        ("equals", [1], [1], False),  # lists equal only themselves
        ("notEquals", 20230715, 20230715, False),
        ("notEquals", 20230710, 20230715, True),
        ("notEquals", "3", 3, False),
        ("greaterThan", 100, 78, True),
        ("greaterThan", 55, 78, False),
        ("greaterThan", "100", 78, True),
        ("greaterThan", "b", "a", True),
        ("greaterThan", "x", 1, False),
        ("lessThan", 55, 78, True),
        ("lessThan", 100, 78, False),
        ("lessThan", 78, 78, False),
        ("lessThan", None, 1, False),
    ],
)
def test_comparisons_as_blocks_with_else(helper: str, a: Any, b: Any, shown: bool) -> None:
    source = f"Hello Ben! {{{{#{helper} a b}}}}yes{{{{else}}}}no{{{{/{helper}}}}} Thanks."
    assert html(source, {"a": a, "b": b}) == f"Hello Ben! {'yes' if shown else 'no'} Thanks."


@pytest.mark.parametrize(
    ("helper", "a", "b", "shown"),
    [
        ("and", "Pasta", "", False),
        ("and", "Pasta", "Coffee", True),
        ("and", 1, 0.0, False),
        ("or", True, False, True),
        ("or", False, False, False),
        ("or", False, True, True),
        ("or", [], 0, False),
    ],
)
def test_and_or(helper: str, a: Any, b: Any, shown: bool) -> None:
    source = f"{{{{#{helper} a b}}}}yes{{{{else}}}}no{{{{/{helper}}}}}"
    assert html(source, {"a": a, "b": b}) == ("yes" if shown else "no")


def test_and_or_take_more_than_two() -> None:
    assert html("{{#and a b c}}y{{else}}n{{/and}}", {"a": 1, "b": 1, "c": 0}) == "n"
    assert html("{{#or a b c}}y{{else}}n{{/or}}", {"a": 0, "b": 0, "c": 1}) == "y"


def test_conditions_as_values_and_subexpressions() -> None:
    assert html("{{equals a b}} {{greaterThan a b}}", {"a": 2, "b": 1}) == "false true"
    assert html("{{#if (equals a b)}}same{{/if}}", {"a": "3", "b": 3}) == "same"
    assert html("{{#if (and a (or b c))}}y{{/if}}", {"a": 1, "b": 0, "c": 1}) == "y"


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (["raft", "water bottle", "sleeping bag"], 3),
        ([], 0),
        ("abcd", 4),
        ({"a": 1}, 0),
        (7, 0),
        (None, 0),
    ],
)
def test_length(value: Any, count: int) -> None:
    assert html("{{length v}}", {"v": value}) == str(count)
    source = "{{#greaterThan (length v) 0}}items{{else}}none{{/greaterThan}}"
    assert html(source, {"v": value}) == ("items" if count else "none")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"name": "Ben", "businessName": "Twilio SendGrid"}, "Hello Ben! About Twilio SendGrid."),
        ({"name": "Ben"}, "Hello Ben! About your business."),
        ({"businessName": ""}, "Hello Customer! About your business."),
    ],
)
def test_insert_with_defaults(data: dict[str, Any], expected: str) -> None:
    source = (
        'Hello {{insert name "default=Customer"}}! About {{insert businessName "your business"}}.'
    )
    assert html(source, data) == expected


def test_insert_escapes_in_html() -> None:
    assert html("{{insert name}}", {"name": "<b>"}) == "&lt;b&gt;"
    assert html("{{insert name}}", {}) == ""


TIME = "2020-01-01T23:00:00.000Z"


@pytest.mark.parametrize(
    ("fmt", "offset", "expected"),
    [
        ("MMMM DD, YYYY h:mm:ss A", None, "January 01, 2020 11:00:00 PM"),
        ("MMMM DD, YYYY h:mm:ss A", "-0800", "January 01, 2020 3:00:00 PM"),
        ("MMMM DD, YYYY h:mm:ss A", "-08:00", "January 01, 2020 3:00:00 PM"),
        (
            "YYYY YY MMMM MMM MM M DD D dddd ddd",
            "-0800",
            "2020 20 January Jan 01 1 01 1 Wednesday Wed",
        ),
        ("HH H hh h mm m ss s A a", "-0800", "15 15 03 3 00 0 00 0 PM pm"),
        ("ZZ Z", "-0800", "-0800 -08:00"),
        ("ZZ Z", None, "+0000 +00:00"),
        ("YYYY-MM-DD HH:mm", "+0200", "2020-01-02 01:00"),
        ("[Today is] dddd", None, "Today is Wednesday"),
        (None, None, "2020-01-01T23:00:00.000Z"),
        (None, "+0530", "2020-01-02T04:30:00.000+05:30"),
    ],
)
def test_format_date(fmt: str | None, offset: str | None, expected: str) -> None:
    data = {"timeStamp": TIME, "dateFormat": fmt, "timezoneOffset": offset}
    if offset is None:
        assert html("{{formatDate timeStamp dateFormat}}", data) == expected
    assert html("{{formatDate timeStamp dateFormat timezoneOffset}}", data) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1577919600, "2020-01-01 23:00"),  # epoch seconds
        (1577919600000, "2020-01-01 23:00"),  # epoch milliseconds
        ("1577919600", "2020-01-01 23:00"),
        ("2020-01-01", "2020-01-01 00:00"),
        ("2020-01-02T01:00:00+02:00", "2020-01-01 23:00"),
        ("Wed, 01 Jan 2020 10:00:00 +0200", "2020-01-01 08:00"),
        ("not a date", ""),
        (None, ""),
        (True, ""),
        ([1], ""),
    ],
)
def test_format_date_reads_epoch_and_iso(value: Any, expected: str) -> None:
    assert format_date(value, "YYYY-MM-DD HH:mm") == expected


def test_format_date_refuses_nothing_it_cannot_read() -> None:
    assert format_date(TIME, "x" * 1000) == ""  # too long to be a date format
    assert format_date(TIME, "YYYY", "bogus") == "2020"  # an unreadable offset: UTC
    assert format_date(-1e300, "YYYY") == ""


def test_lookup_reads_data_only() -> None:
    data = {"names": {"en": "Hello", "fr": "Bonjour"}, "lang": "fr", "list": ["a", "b"]}
    assert (
        html("{{lookup names lang}} {{lookup list 1}} {{lookup list '0'}}", data) == "Bonjour b a"
    )
    assert html('{{lookup names "__class__"}}{{lookup list "append"}}', data) == ""


def test_equals_compares_numbers_and_strings_without_surprises() -> None:
    assert equals(1, 1.0) and equals("1e2", 100) and not equals("abc", 0)
    assert not equals(float("nan"), float("nan"))


# -- whitespace ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{#if foo~}} bar {{~/if}}", "bar"),
        ("  {{~#if foo~}} bar {{~/if~}}  ", "bar"),
        ("{{#if foo~}} bar {{/if~}}", "bar "),
        ("{{#if foo}} bar {{~/if}}", " bar"),
        ("a  {{~foo~}}  b", "a1b"),
        ("  {{#if foo}}\n  x\n  {{/if}}\n", "  x\n"),
        ("a\n  {{#if foo}}\n  x\n  {{else}}\n  y\n  {{/if}}\nb", "a\n  x\nb"),
        ("{{#each list}}\n  - {{this}}\n{{/each}}\n", "  - 1\n  - 2\n"),
        ("  {{!-- c --}}  \ny", "y"),
        ("x {{foo}}\ny", "x 1\ny"),  # an output tag is never standalone
        ("\r\n{{#if foo}}\r\nx\r\n{{/if}}\r\n", "\r\nx\r\n"),
    ],
)
def test_whitespace_control_and_standalone_lines(source: str, expected: str) -> None:
    assert html(source, {"foo": 1, "list": [1, 2]}) == expected


# -- errors a template can make --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{#if a}}", "{{#if}} is never closed with {{/if}} (line 1)"),
        ("{{#if a}}\n{{/each}}", "{{/each}} does not close {{#if}} (opened on line 1) (line 2)"),
        ("{{/if}}", "{{/if}} closes no block"),
        ("{{else}}", "{{else}} outside any block"),
        ("{{#if a}}{{else}}{{else}}{{/if}}", "{{else}} after {{else}}"),
        ("x\n{{name", "a tag that is never closed ('{{' without '}}') (line 2)"),
        ("{{{name}}", "'{{{' must close with '}}}'"),
        ("{{}}", "an empty tag"),
        ("{{#equals a}}{{/equals}}", "equals takes 2 arguments, not 1"),
        ("{{formatDate}}", "formatDate takes 1 to 3 arguments, not 0"),
        ("{{#length a}}{{/length}}", "length is not a block helper"),
        ("{{each a}}", "each needs a block"),
        ("{{foo.this}}", "invalid path foo.this"),
        ("{{a x=1}}", "hash arguments (name=value) are not supported"),
    ],
)
def test_mistakes_are_refused_with_a_clear_message(source: str, message: str) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        parse(source)
    assert message in str(caught.value)


def test_a_call_of_no_helper_fails_when_rendered() -> None:
    program = parse("{{nohelper 1 2}}")  # Handlebars' own behaviour: a missing helper
    with pytest.raises(TemplateError, match="no helper 'nohelper'"):
        render(program, {}, escape_html=True)


# -- through gomailpy.email.templates --------------------------------------------------------------


def test_parts_share_one_budget() -> None:
    template = Template("t", subject="{{x}}", html="{{x}}", text="{{x}}")
    data = {"x": "y" * 40}
    render_template(template, data, Limits(max_output_chars=120))
    with pytest.raises(TemplateLimitError, match="template 't': text failed to render"):
        render_template(template, data, Limits(max_output_chars=100))


def test_check_names_each_part_that_does_not_parse() -> None:
    problems = check_template(Template("t", subject="{{#if a}}", html="ok", text="{{/x}}"))
    assert [p.split(":")[0] for p in problems] == ["subject", "text"]
    assert all("does not compile" in p for p in problems)


def test_the_budget_counts_time_too() -> None:
    ticks = iter(range(10**6))
    budget = Budget(Limits(max_seconds=5.0), clock=lambda: float(next(ticks)))
    with pytest.raises(TemplateLimitError, match="more than 5 s"):
        render(
            parse("{{#each a}}{{this}}{{/each}}"),
            {"a": list(range(20000))},
            escape_html=True,
            budget=budget,
        )
