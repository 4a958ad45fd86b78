"""Hostile input against the real API: schemathesis from its own OpenAPI document, and
property-based bodies from hypothesis. Never a 500, never a traceback in an answer, never a line
break let into a header-bound field, and pathological JSON refused cheaply.

aiohttp is neither ASGI nor WSGI, so the app runs as a real server on loopback, in a thread of
its own (own event loop), backed by the test bed's SQS server; requests come from this thread.
Example counts are bounded so the module runs in well under a minute.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from api.auth import hash_key
from gomailpy.config.settings import Settings
from tests.support import create_queues, email_request, make_settings

KEY = "fuzz-key-" + "k" * 40
AUTH = {"Authorization": f"Bearer {KEY}"}
TRACEBACK_SIGNS = ("Traceback (most recent call last)", 'File "/', '.py", line ')


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


class LiveServer:
    """`create_app(settings)` served on 127.0.0.1 from a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fuzz-api", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"the API did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by __enter__
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(create_app(self.settings))
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()


@pytest.fixture(scope="module")
def server(sqs_endpoint: str) -> Iterator[LiveServer]:
    settings = make_settings(
        sqs_endpoint,
        api={
            "serve_webclient": True,
            "max_body_size_bytes": 204_800,  # pinned: the pathological cases below assume it
            "cors_origins": ["https://form.example"],
            "api_key_hashes": [hash_key(KEY)],
            # Generous: the limiter's code runs on every request but never refuses one here.
            "rate_limit_per_address": 10_000,
            "rate_limit_per_address_burst": 10_000,
            "rate_limit_per_key": 10_000,
            "rate_limit_per_key_burst": 10_000,
        },
        # Delivery status on (in this process), so GET /email/{id} and Idempotency-Key are
        # fuzzed as working features, not as their 501 when off.
        status={"backend": "memory"},
    )
    asyncio.run(create_queues(settings))
    with LiveServer(settings) as live:
        yield live


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def assert_clean(response: requests.Response | schemathesis.Response) -> None:
    text = response.content.decode("utf-8", errors="replace")
    assert response.status_code < 500, f"{response.status_code}: {text[:500]}"
    for sign in TRACEBACK_SIGNS:
        assert sign not in text, f"traceback text in an answer: {text[:500]}"


def no_traceback(ctx: Any, response: schemathesis.Response, case: schemathesis.Case[Any]) -> None:
    """A schemathesis check: no answer may show a traceback or an internal path."""
    assert_clean(response)


# -- schemathesis: the whole API from its own description ---------------------------------------

# Examples per operation and mode: the send endpoint gets most of them.
EXAMPLES = {"POST /email/send": 120}
DEFAULT_EXAMPLES = 8


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_schemathesis_finds_no_server_error(
    server: LiveServer, http: requests.Session, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert any(op.label == "POST /email/send" for op in operations)
    for operation in operations:
        inputs = (operation.body, operation.query, operation.path_parameters, operation.headers)
        if mode is GenerationMode.NEGATIVE and not any(len(part) for part in inputs):
            continue  # nothing to send wrong
        headers = dict(AUTH)
        if operation.method.upper() == "OPTIONS":
            # Documented as the CORS preflight, which is what a browser sends.
            headers.update(
                {"Origin": "https://form.example", "Access-Control-Request-Method": "POST"}
            )
        fuzz_operation(server, http, operation, mode, headers)


def fuzz_operation(
    server: LiveServer,
    http: requests.Session,
    operation: Any,
    mode: GenerationMode,
    headers: dict[str, str],
) -> None:
    @fuzz_settings(EXAMPLES.get(operation.label, DEFAULT_EXAMPLES))
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(
            base_url=server.url,
            session=http,
            headers=headers,
            additional_checks=[no_traceback],
            # The schema types the fields; validation checks more (address syntax, a body
            # or html, line breaks), so a schema-valid email may rightly be a 422.
            excluded_checks=[positive_data_acceptance],
        )

    fuzz()


# -- hypothesis: bodies -------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
FIELD_NAMES = ["fromEmail", "fromName", "toEmail", "toName", "subject", "body", "html", "to", "cc",
               "bcc", "replyTo", "headers", "attachments"]  # fmt: skip


@fuzz_settings(150)
@given(
    body=JSON
    | st.fixed_dictionaries({"email": JSON})
    | st.fixed_dictionaries({"email": st.dictionaries(st.sampled_from(FIELD_NAMES), JSON)})
)
def test_arbitrary_json_bodies_never_500(
    server: LiveServer, http: requests.Session, body: Any
) -> None:
    # Encoded here: Python writes NaN and Infinity (not JSON, but its decoder reads them).
    raw = json.dumps(body).encode()
    response = http.post(
        f"{server.url}/email/send",
        data=raw,
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=30,
    )
    assert_clean(response)
    assert response.status_code in (200, 400, 422), response.text
    assert set(response.json()) in ({"messageId"}, {"errors"})


@fuzz_settings(60)
@given(raw=st.binary(max_size=300), content_type=st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "", "application/json; charset=latin-1"]
))  # fmt: skip
def test_arbitrary_bytes_never_500(
    server: LiveServer, http: requests.Session, raw: bytes, content_type: str
) -> None:
    response = http.post(
        f"{server.url}/email/send",
        data=raw,
        headers={**AUTH, "Content-Type": content_type},
        timeout=30,
    )
    assert_clean(response)
    assert response.status_code in (200, 400, 422), response.text


# -- header injection ---------------------------------------------------------------------------

BREAKS = st.sampled_from(["\r\n", "\n", "\r", "\r\n ", "\n\t", "\r\nBcc: victim@example.org\r\n"])
ATTACHMENT = {"filename": "notes.txt", "contentType": "text/plain", "content": base64.b64encode(b"notes").decode()}  # fmt: skip


def _with(email: dict[str, Any], path: tuple[Any, ...], value: str) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(email))
    node: Any = copy
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return copy


# Every field whose text ends up in a header of the sent email: (request field, path to the
# text inside the email object, the valid value it replaces).
BASE = {
    **email_request()["email"],
    "replyTo": "replies@example.org",
    "to": ["two@example.org", {"email": "three@example.org", "name": "Three"}],
    "cc": [{"email": "cc@example.org", "name": "Cc"}],
    "bcc": ["bcc@example.org"],
    "headers": {"X-Campaign": "spring", "List-Unsubscribe": "<mailto:u@example.org>"},
    "attachments": [ATTACHMENT],
}
HEADER_BOUND = [
    ("fromName", ("fromName",)),
    ("toName", ("toName",)),
    ("subject", ("subject",)),
    ("to", ("to", 1, "name")),
    ("cc", ("cc", 0, "name")),
    ("headers", ("headers", "X-Campaign")),
    ("headers", ("headers", "List-Unsubscribe")),
    ("attachments", ("attachments", 0, "filename")),
    ("attachments", ("attachments", 0, "contentType")),
    ("fromEmail", ("fromEmail",)),
    ("toEmail", ("toEmail",)),
    ("replyTo", ("replyTo",)),
    ("to", ("to", 0)),
    ("to", ("to", 1, "email")),
    ("cc", ("cc", 0, "email")),
    ("bcc", ("bcc", 0)),
]


def _value_at(email: dict[str, Any], path: tuple[Any, ...]) -> str:
    node: Any = email
    for part in path:
        node = node[part]
    assert isinstance(node, str)
    return node


@pytest.mark.parametrize(
    ("field", "path"), [pytest.param(f, p, id=".".join(map(str, p))) for f, p in HEADER_BOUND]
)
@fuzz_settings(25)
@given(data=st.data(), breaks=BREAKS)
def test_line_breaks_in_any_header_bound_field_are_422(
    server: LiveServer,
    http: requests.Session,
    field: str,
    path: tuple[Any, ...],
    data: st.DataObject,
    breaks: str,
) -> None:
    valid = _value_at(BASE, path)
    where = data.draw(st.integers(1, len(valid) - 1), label="at")  # the ends: the next test
    assert_refused(server, http, field, path, valid[:where] + breaks + valid[where:])


def assert_refused(
    server: LiveServer, http: requests.Session, field: str, path: tuple[Any, ...], value: str
) -> None:
    response = http.post(
        f"{server.url}/email/send",
        json={"email": _with(BASE, path, value)},
        headers=AUTH,
        timeout=30,
    )
    assert_clean(response)
    assert response.status_code == 422, (value, response.text)
    assert field in response.json()["errors"], response.text


# CR/LF at either end too: addresses are checked before being stripped, and the regexes match
# whole values (a `$` would also match before a final "\n").


def _end_cases() -> Iterator[Any]:
    for field, path in HEADER_BOUND:
        for at in ("start", "end"):
            for breaks in ("\r\n", "\n", "\r"):
                label = f"{'.'.join(map(str, path))}-{at}-{breaks!r}"
                yield pytest.param(field, path, at, breaks, id=label)


@pytest.mark.parametrize(("field", "path", "at", "breaks"), list(_end_cases()))
def test_line_breaks_at_either_end_of_a_header_bound_field_are_422(
    server: LiveServer,
    http: requests.Session,
    field: str,
    path: tuple[Any, ...],
    at: str,
    breaks: str,
) -> None:
    valid = _value_at(BASE, path)
    assert_refused(server, http, field, path, breaks + valid if at == "start" else valid + breaks)


@pytest.mark.parametrize(
    ("at", "breaks"),
    [
        (at, breaks)
        for at in ("start", "end", "inside")
        for breaks in ("\r\n", "\n", "\r")
    ],
)
def test_line_breaks_in_a_header_name_are_422(
    server: LiveServer, http: requests.Session, breaks: str, at: str
) -> None:
    name = {"start": breaks + "X-Evil", "end": "X-Evil" + breaks, "inside": "X-" + breaks + "Evil"}[
        at
    ]
    email = {**BASE, "headers": {name: "v"}}
    response = http.post(
        f"{server.url}/email/send", json={"email": email}, headers=AUTH, timeout=30
    )
    assert response.status_code == 422, (name, response.text)
    assert "headers" in response.json()["errors"]


# -- pathological JSON --------------------------------------------------------------------------



@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"[" * 100_000, "nested too deeply"),  # 100k levels in 100 KB
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),  # closed too, 200 KB
        (b'{"":' * 50_000, "nested too deeply"),
        (b'{"email": ' + b'{"to": [' * 20_000, "nested too deeply"),
        (b'{"a":' * 100_000, "Request body is too large"),  # 100k levels in 500 KB
        (b'{"email": {"subject": ' + b"9" * 100_000 + b"}}", "not valid JSON"),  # digit limit
        (b'{"email": {"subject": "' + b"\\u0000" * 30_000 + b'"}}', None),  # 422, not 400
        (b"[" + b"1e999999," * 20_000 + b"0]", "of the form"),  # infinities, a list
    ],
    ids=[
        "arrays",
        "arrays-closed",
        "objects",
        "inside-email",
        "objects-too-large",
        "huge-number",
        "escapes",
        "infinities",
    ],  # fmt: skip
)
def test_deeply_nested_or_huge_json_is_400(
    server: LiveServer, http: requests.Session, raw: bytes, says: str | None
) -> None:
    # No timing assertion (machines are noisy): the request's own timeout bounds a hang.
    response = http.post(
        f"{server.url}/email/send",
        data=raw,
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=30,
    )
    assert_clean(response)
    if says is None:
        assert response.status_code == 422, response.text
    else:
        assert response.status_code == 400, response.text
        assert says in response.json()["errors"]["base"]
    assert http.get(f"{server.url}/healthz", timeout=10).status_code == 200  # still up


def test_a_huge_body_is_refused_without_being_read(
    server: LiveServer, http: requests.Session
) -> None:
    # 64 MB streamed in chunks: the answer comes once the limit is passed, and the server lives.
    def chunks() -> Iterator[bytes]:
        yield b'{"email": {"body": "'
        for _ in range(1024):
            yield b"x" * 65536

    try:
        response = http.post(
            f"{server.url}/email/send",
            data=chunks(),
            headers={**AUTH, "Content-Type": "application/json"},
            timeout=30,
        )
    except requests.ConnectionError:
        pass  # the server answered and closed while the client was still sending: fine
    else:
        assert response.status_code == 400
        assert "too large" in response.json()["errors"]["base"]
    assert http.get(f"{server.url}/healthz", timeout=10).status_code == 200


def test_a_valid_email_still_goes_through(server: LiveServer, http: requests.Session) -> None:
    # The fuzzing server is a working API, not one that refuses everything.
    response = http.post(f"{server.url}/email/send", json={"email": BASE}, headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    assert (
        http.post(f"{server.url}/email/send", json={"email": BASE}, timeout=30).status_code == 401
    )
