"""The HTTP API against the real SQS server of the test bed (LocalStack).

Each test gets queues of its own (tests.support.make_settings), so what a test finds on a queue is
what its requests put there. Waits are bounded polls, never assertions on how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from openapi_spec_validator import validate as validate_openapi

from api.app import create_app
from api.enqueue.queue_choice import LeastDepth, RoundRobin
from api.views.body import decode_json
from gomailpy.config.settings import Settings
from gomailpy.email.envelope import Envelope
from gomailpy.email.models import parse_send_request
from gomailpy.errors import InvalidEmailError, MalformedRequestError, QueueError
from gomailpy.metrics import sample
from gomailpy.queues.sqs import create_queue_client, queue_name
from gomailpy_local.localstack import free_port
from tests.support import Client, StartClient, create_queues, make_settings, unique

VALID = {
    "fromEmail": "Ada.Lovelace@Example.ORG",
    "fromName": "Ada Lovelace",
    "toEmail": "zoë@bücher.example",
    "toName": "Zoë Bücher",
    "subject": "Notes on the Analytical Engine",
    "body": "Dear Zoë,\n\nthe notes are ready.\n\nAda",
}
FULL = {
    **VALID,
    "to": ["charles@example.org", {"email": "mary@example.org", "name": "Mary"}],
    "cc": ["cc@example.org"],
    "bcc": [{"email": "bcc@example.org"}],
    "replyTo": "replies@example.org",
    "html": "<p>Dear Zoë,</p>",
    "headers": {"X-Campaign": "notes", "List-Unsubscribe": "<mailto:unsub@example.org>"},
    "attachments": [{"filename": "notes.txt", "contentType": "text/plain", "content": "bm90ZXM="}],
}
UNAVAILABLE = {"errors": {"base": "Service unavailable"}}


# -- fixtures and helpers (conftest: settings, start_client) ------------------------------------


@pytest.fixture
async def client(settings: Settings, start_client: StartClient) -> Client:
    """The API on `settings` (two queues, the form served), and a client for it."""
    return await start_client(create_app(settings))


async def wait_until(check: Callable[[], Awaitable[bool]], what: str, tries: int = 150) -> None:
    """Poll `check` until true; fail (naming `what`) if it never is. A hang guard, not a timing
    assertion: a slow machine only makes it poll more."""
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"never happened: {what}")


async def readiness(client: Client) -> tuple[int, Any]:
    response = await client.get("/readyz")
    return response.status, await response.json()


async def wait_ready(client: Client) -> Any:
    """Wait until the depth refresher has read every queue once; return /readyz's body."""
    body: Any = None

    async def all_read() -> bool:
        nonlocal body
        status, body = await readiness(client)
        return status == 200 and all(q["depth"] is not None for q in body["queues"].values())

    await wait_until(all_read, "every queue read by the refresher")
    return body


async def queue_totals(settings: Settings) -> dict[str, int]:
    """Messages on each configured queue that exists (visible, in flight or delayed)."""
    totals: dict[str, int] = {}
    async with create_queue_client(settings) as queues:
        for entry in settings.queues.urls:
            with contextlib.suppress(QueueError):  # a queue a test left missing on purpose
                totals[queue_name(entry)] = (await queues.depth(await queues.resolve(entry))).total
    return totals


async def received(settings: Settings, expected: int) -> dict[str, list[Envelope]]:
    """Receive (and keep hidden) the messages on each queue until `expected` are in hand."""
    found: dict[str, list[Envelope]] = {queue_name(entry): [] for entry in settings.queues.urls}
    async with create_queue_client(settings) as queues:
        for _ in range(15):
            for entry in settings.queues.urls:
                try:
                    url = await queues.resolve(entry)
                except QueueError:
                    continue
                messages = await queues.receive(url, wait_time_s=0, visibility_timeout_s=120)
                found[queue_name(entry)] += [Envelope.decode(m.body) for m in messages]
            if sum(len(envelopes) for envelopes in found.values()) >= expected:
                break
            await asyncio.sleep(0.1)
    return found


def flat(by_queue: dict[str, list[Envelope]]) -> list[Envelope]:
    return [envelope for envelopes in by_queue.values() for envelope in envelopes]


async def send(client: Client, email: dict[str, Any]) -> tuple[int, Any]:
    response = await client.post("/email/send", json={"email": email})
    return response.status, await response.json()


def expected_errors(email: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidEmailError) as caught:
        parse_send_request({"email": email})
    return caught.value.errors


# -- a valid send -------------------------------------------------------------------------------


async def test_valid_email_is_answered_with_its_id_once_it_is_on_a_queue(
    client: Client, settings: Settings
) -> None:
    enqueued_before = sum(
        sample("gomailpy_emails_enqueued_total", {"queue": queue_name(q)})
        for q in settings.queues.urls
    )
    status, body = await send(client, FULL)
    assert status == 200, body
    assert set(body) == {"messageId"}

    [envelope] = flat(await received(settings, expected=1))
    assert envelope.id == body["messageId"]
    # The queued email is exactly what validation made of the request, every field of it.
    assert envelope.email == parse_send_request({"email": FULL})
    assert [a.email for a in envelope.email.to] == [
        "zoë@bücher.example",
        "charles@example.org",
        "mary@example.org",
    ]
    assert envelope.email.attachments[0].data() == b"notes"
    enqueued_after = sum(
        sample("gomailpy_emails_enqueued_total", {"queue": queue_name(q)})
        for q in settings.queues.urls
    )
    assert enqueued_after == enqueued_before + 1


async def test_each_send_is_a_separate_message_with_its_own_id(
    client: Client, settings: Settings
) -> None:
    ids = [(await send(client, VALID))[1]["messageId"] for _ in range(3)]
    assert len(set(ids)) == 3
    assert sorted(e.id for e in flat(await received(settings, expected=3))) == sorted(ids)


# -- refusals: 400 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "Request body is empty"),
        (b"   ", "Request body is empty"),
        (b"{not json", "Request body is not valid JSON"),
        (b'{"email": {"fromEmail": "a@b.example",}}', "Request body is not valid JSON"),
        (b"\xff\xfe\xfa", "Request body is not valid JSON"),
    ],
)
async def test_a_body_that_is_not_json_is_400(
    client: Client, settings: Settings, raw: bytes, says: str
) -> None:
    response = await client.post(
        "/email/send", data=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    body = await response.json()
    assert set(body) == {"errors"} and set(body["errors"]) == {"base"}
    assert body["errors"]["base"].startswith(says)
    assert sum((await queue_totals(settings)).values()) == 0


@pytest.mark.parametrize(
    "payload",
    [
        [],
        "email",
        42,
        None,
        {},
        {"mail": VALID},
        {"email": "ada@example.org"},
        {"email": [VALID]},
        {"email": VALID, "priority": "high"},
    ],
)
async def test_a_body_of_the_wrong_shape_is_400(
    client: Client, settings: Settings, payload: Any
) -> None:
    response = await client.post("/email/send", json=payload)
    assert response.status == 400
    base = (await response.json())["errors"]["base"]
    assert '{"email": {...}}' in base or 'only "email" is read' in base
    assert sum((await queue_totals(settings)).values()) == 0


async def test_an_oversized_body_is_400_with_the_limit_and_nothing_is_queued(
    sqs_endpoint: str, start_client: StartClient
) -> None:
    settings = make_settings(sqs_endpoint, api={"max_body_size_bytes": 2048})
    await create_queues(settings)
    client = await start_client(create_app(settings))
    payload = json.dumps({"email": {**VALID, "body": "x" * 4000}}).encode()

    response = await client.post(
        "/email/send", data=payload, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert await response.json() == {
        "errors": {
            "base": f"Request body is too large: {len(payload)} bytes, the limit is 2048 bytes"
        }
    }

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: caught while reading
        for start in range(0, len(payload), 500):
            yield payload[start : start + 500]

    response = await client.post("/email/send", data=chunked())
    assert response.status == 400
    assert (await response.json())["errors"]["base"] == (
        "Request body is too large: more than 2048 bytes, the limit is 2048 bytes"
    )

    # Just under the limit is fine.
    status, _ = await send(client, {**VALID, "body": "x" * 1500})
    assert status == 200
    assert sum((await queue_totals(settings)).values()) == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b'{"email": ' + b'{"a": ' * 30_000,
        b'{"email": {"subject": ' + b"[" * 5_000 + b"]" * 5_000 + b"}}",
    ],
)
async def test_deeply_nested_json_is_refused_with_400(client: Client, raw: bytes) -> None:
    response = await client.post("/email/send", data=raw)
    assert response.status == 400
    assert "nested too deeply" in (await response.json())["errors"]["base"]


async def test_nesting_within_the_recursion_limit_is_an_invalid_field(
    client: Client,
) -> None:
    nested: Any = "x"
    for _ in range(500):
        nested = [nested]
    status, body = await send(client, {**VALID, "subject": nested, "headers": {"X-A": nested}})
    assert status == 422
    assert set(body["errors"]) == {"subject", "headers"}


async def test_an_email_too_large_for_a_queue_message_is_400(
    sqs_endpoint: str, start_client: StartClient
) -> None:
    settings = make_settings(sqs_endpoint, api={"max_body_size_bytes": 600_000})
    await create_queues(settings)
    client = await start_client(create_app(settings))
    status, body = await send(client, {**VALID, "body": "x" * 300_000})
    assert status == 400
    assert "too large to queue" in body["errors"]["base"]
    assert "262144 bytes" in body["errors"]["base"]
    assert sum((await queue_totals(settings)).values()) == 0


async def test_a_lone_surrogate_escape_is_400_not_500(client: Client, settings: Settings) -> None:
    # Valid JSON, but "\\ud83d" alone is no character: it cannot be validated or queued.
    for field in ("subject", "body", "fromName"):
        raw = json.dumps({"email": {**VALID, field: "Hi \ud83d"}}, ensure_ascii=True).encode()
        response = await client.post("/email/send", data=raw)
        assert response.status == 400
        assert "lone surrogate" in (await response.json())["errors"]["base"]
    # A proper pair, escaped the same way, is an emoji and fine.
    raw = json.dumps({"email": {**VALID, "subject": "Hi \U0001f600"}}, ensure_ascii=True)
    response = await client.post("/email/send", data=raw.encode())
    assert response.status == 200
    [envelope] = flat(await received(settings, expected=1))
    assert envelope.email.subject == "Hi \U0001f600"


# Any JSON at all in a few fields of an otherwise valid email: the API's reading, validating and
# wrapping either refuse it with one of the errors it answers 400/422 for, or produce a queue
# message that reads back as the same email. Nothing else, so never a 500.
# Lone surrogates (which JSON can escape) and control characters are drawn on purpose: hypothesis
# rarely draws them otherwise, and a lone surrogate once passed validation and broke encoding.
# Joined from single characters: st.text() leaves surrogates out whatever its alphabet says.
ANY_TEXT = st.lists(
    st.characters() | st.characters(categories=["Cs"]) | st.characters(max_codepoint=0x1F),
    max_size=30,
).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = sorted(FULL)


def near(value: Any) -> st.SearchStrategy[Any]:
    """Something in place of a valid field value: that value with text added, or any JSON."""
    if isinstance(value, str):
        return st.builds(lambda text: value + text, ANY_TEXT) | JSON_VALUES
    return JSON_VALUES


@hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_json_is_refused_cleanly_or_queued(data: st.DataObject) -> None:
    email = dict(FULL)
    for name in data.draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        if data.draw(st.booleans()):
            email[name] = data.draw(near(FULL[name]))
        else:
            del email[name]
    email.update(data.draw(st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=1)))
    raw = json.dumps({"email": email}, ensure_ascii=True).encode()
    try:
        parsed = parse_send_request(decode_json(raw))
    except (MalformedRequestError, InvalidEmailError):
        return
    assert Envelope.decode(Envelope.wrap(parsed).encode()).email == parsed


# -- refusals: 422 ------------------------------------------------------------------------------


async def test_invalid_fields_get_one_message_each(client: Client, settings: Settings) -> None:
    email = {
        "fromEmail": "ada.example.org",
        "fromName": "Ada\r\nBcc: everyone@example.org",
        "toEmail": "charles@",
        "subject": "Hello\nBcc: everyone@example.org",
        "body": "",
        "cc": ["not an address", "also not"],
        "headers": {"Subject": "override"},
    }
    status, body = await send(client, email)
    assert status == 422
    errors = body["errors"]
    assert errors == expected_errors(email)
    assert set(errors) == {"fromEmail", "fromName", "toEmail", "subject", "body", "cc", "headers"}
    assert all(isinstance(message, str) and message for message in errors.values())
    assert errors["body"] == "Body is required"
    assert sum((await queue_totals(settings)).values()) == 0


async def test_empty_strings_from_a_form_are_required_in_gomails_words(
    client: Client, settings: Settings
) -> None:
    # The original gomail form sends "" for an empty input (and a person may type spaces).
    status, body = await send(client, {"fromEmail": "", "toEmail": "  ", "body": " \n"})
    assert (status, body) == (
        422,
        {
            "errors": {
                "fromEmail": "From email is required",
                "toEmail": "To email is required",
                "body": "Body is required",
            }
        },
    )
    assert sum((await queue_totals(settings)).values()) == 0


@pytest.mark.parametrize("field", ["subject", "fromName", "toName"])
@pytest.mark.parametrize("breaks", ["\r\n", "\n", "\r"])
async def test_line_breaks_in_a_header_field_are_422(
    client: Client, settings: Settings, field: str, breaks: str
) -> None:
    status, body = await send(client, {**VALID, field: f"Hi{breaks}Bcc: victim@example.org"})
    assert status == 422
    assert set(body["errors"]) == {field}
    assert "line breaks" in body["errors"][field]
    assert sum((await queue_totals(settings)).values()) == 0


async def test_unknown_fields_are_refused_never_forwarded(
    client: Client, settings: Settings
) -> None:
    status, body = await send(client, {**VALID, "priority": "high", "X-Mailer": "evil"})
    assert status == 422
    assert set(body["errors"]) == {"priority", "X-Mailer"}
    assert "Unknown field 'priority'" in body["errors"]["priority"]
    assert sum((await queue_totals(settings)).values()) == 0

    # And a valid email carries no more than its known fields onto the queue.
    status, body = await send(client, VALID)
    assert status == 200
    [envelope] = flat(await received(settings, expected=1))
    assert set(json.loads(envelope.encode())) == {"v", "id", "created_at", "email"}


# -- when no queue accepts ----------------------------------------------------------------------


async def test_unreachable_queue_server_gives_503_and_never_200(start_client: StartClient) -> None:
    settings = make_settings(f"http://127.0.0.1:{free_port()}")
    client = await start_client(create_app(settings))  # starts although no queue can be reached

    assert (await client.get("/healthz")).status == 200
    for _ in range(3):
        status, body = await send(client, VALID)
        assert (status, body) == (503, UNAVAILABLE)

    async def refresher_failed() -> bool:
        status, body = await readiness(client)
        return status == 503 and all(
            q["problem"] != "not checked yet" for q in body["queues"].values()
        )

    await wait_until(refresher_failed, "the refresher reports the queues unreachable")
    status, body = await readiness(client)
    assert body["status"] == "unavailable"
    assert body["reason"].startswith("no queue is reachable: ")
    for name in map(queue_name, settings.queues.urls):
        assert name in body["reason"]
        assert body["queues"][name]["reachable"] is False


async def test_readyz_is_503_until_checked_then_200(client: Client, settings: Settings) -> None:
    status, body = await readiness(client)
    if status == 503:  # the refresher has not read the queues yet
        assert "not checked yet" in body["reason"]
    body = await wait_ready(client)
    assert body["status"] == "ready"
    assert set(body["queues"]) == {queue_name(q) for q in settings.queues.urls}
    assert all(
        q == {"reachable": True, "depth": 0, "problem": None} for q in body["queues"].values()
    )


async def test_a_queue_that_does_not_exist_fails_over_to_the_next(
    sqs_endpoint: str, start_client: StartClient
) -> None:
    settings = make_settings(sqs_endpoint, api={"queue_choice": "round-robin"})
    missing, real = settings.queues.urls
    await create_queues(make_settings(sqs_endpoint, queues={"urls": [real]}))
    client = await start_client(create_app(settings))
    failures_before = sample("gomailpy_enqueue_failures_total", {"queue": missing})

    ids = [(await send(client, VALID))[1]["messageId"] for _ in range(4)]

    by_queue = await received(settings, expected=4)
    assert sorted(e.id for e in by_queue[real]) == sorted(ids)
    assert by_queue[missing] == []
    # Round-robin offered the missing queue first to every other email, until its circuit
    # opened (the refresher's failed reads count too): then it was not offered at all.
    assert sample("gomailpy_enqueue_failures_total", {"queue": missing}) <= failures_before + 2
    status, body = await readiness(client)
    assert status == 200 and body["queues"][missing]["reachable"] is False


async def test_a_queue_deleted_while_running_fails_over_to_the_other(
    client: Client, settings: Settings
) -> None:
    await wait_ready(client)
    gone, kept = map(queue_name, settings.queues.urls)
    async with create_queue_client(settings) as queues:
        await queues.client.delete_queue(QueueUrl=await queues.resolve(gone))

    ids = [(await send(client, VALID))[1]["messageId"] for _ in range(4)]
    by_queue = await received(settings, expected=4)
    assert sorted(e.id for e in by_queue[kept]) == sorted(ids)


async def test_least_depth_prefers_the_shallower_queue(
    sqs_endpoint: str, start_client: StartClient
) -> None:
    settings = make_settings(sqs_endpoint, api={"queue_choice": "least-depth"})
    deep_url, shallow_url = await create_queues(settings)
    deep, shallow = map(queue_name, settings.queues.urls)
    async with create_queue_client(settings) as queues:
        await queues.send_batch(deep_url, [(str(i), f"backlog {i}") for i in range(3)])
    client = await start_client(create_app(settings))
    body = await wait_ready(client)
    assert body["queues"][deep]["depth"] == 3

    for _ in range(2):
        status, _ = await send(client, VALID)
        assert status == 200
    # Counted locally between refreshes: 0 -> 1 -> 2, still below 3 each time.
    assert await queue_totals(settings) == {deep: 3, shallow: 2}


async def test_round_robin_alternates(sqs_endpoint: str, start_client: StartClient) -> None:
    settings = make_settings(sqs_endpoint, api={"queue_choice": "round-robin"})
    await create_queues(settings)
    first, second = map(queue_name, settings.queues.urls)
    client = await start_client(create_app(settings))

    ids = [(await send(client, VALID))[1]["messageId"] for _ in range(4)]
    by_queue = await received(settings, expected=4)
    assert sorted(e.id for e in by_queue[first]) == sorted([ids[0], ids[2]])
    assert sorted(e.id for e in by_queue[second]) == sorted([ids[1], ids[3]])


def test_choosers_order_every_queue() -> None:
    queues = ["a", "b", "c"]
    robin = RoundRobin()
    assert [robin.order(queues, {}) for _ in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]
    least = LeastDepth()
    assert least.order(queues, {"a": 5, "b": 1, "c": 3}) == ["b", "c", "a"]
    # Unknown depth last; equal depths take turns.
    assert least.order(queues, {"b": 0, "c": 0}) in (["b", "c", "a"], ["c", "b", "a"])
    firsts = {least.order(queues, {"a": 0, "b": 0, "c": 0})[0] for _ in range(3)}
    assert firsts == {"a", "b", "c"}


# -- CORS ---------------------------------------------------------------------------------------


async def test_cors_answers_the_configured_origin_only(
    sqs_endpoint: str, start_client: StartClient
) -> None:
    allowed, other = "http://form.example:8080", "http://evil.example"
    settings = make_settings(sqs_endpoint, api={"cors_origins": [allowed]})
    await create_queues(settings)
    client = await start_client(create_app(settings))
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }

    response = await client.options("/email/send", headers={"Origin": allowed, **preflight})
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "content-type" in response.headers["Access-Control-Allow-Headers"].lower()

    response = await client.options("/email/send", headers={"Origin": other, **preflight})
    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers

    for origin, allow, answered in ((allowed, allowed, None), (other, None, 403)):
        # Errors carry the header too, so an allowed page can read and show them. A page
        # elsewhere is refused whatever it sends (tests/test_front_door.py: cross-site).
        for email, status in ((VALID, 200), ({**VALID, "toEmail": "x"}, 422)):
            response = await client.post(
                "/email/send", json={"email": email}, headers={"Origin": origin}
            )
            assert response.status == (answered or status)
            assert response.headers.get("Access-Control-Allow-Origin") == allow
            assert response.headers["Vary"] == "Origin"

    response = await client.get("/healthz")
    assert "Access-Control-Allow-Origin" not in response.headers


# -- operational endpoints ----------------------------------------------------------------------


async def test_healthz(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_metrics_count_answers_by_route_and_status(
    client: Client,
) -> None:
    labels = {"route": "/email/send", "method": "POST", "status": "422"}
    before = sample("gomailpy_http_requests_total", labels)
    await send(client, {**VALID, "toEmail": "nope"})
    assert sample("gomailpy_http_requests_total", labels) == before + 1

    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    for name in (
        "gomailpy_http_requests_total",
        "gomailpy_http_request_duration_seconds",
        "gomailpy_enqueue_duration_seconds",
        "gomailpy_event_loop_lag_seconds",  # gomailpy.operating.loop_watch, opened by the app
    ):
        assert name in text
    # An unknown path is counted under one label, not its own.
    await client.get(f"/no/such/{unique()}")
    assert 'route="/no/such' not in (await (await client.get("/metrics")).text())


async def test_queue_gauges_are_set_by_the_refresher(client: Client, settings: Settings) -> None:
    await send(client, VALID)
    name = queue_name(settings.queues.urls[0])

    async def gauges_seen() -> bool:
        await client.get("/readyz")
        total = sum(
            sample("gomailpy_queue_messages_visible", {"queue": queue_name(q)})
            for q in settings.queues.urls
        )
        return total == 1

    await wait_until(gauges_seen, "the refresher reads the queued email")
    assert sample("gomailpy_queue_messages_in_flight", {"queue": name}) == 0


async def test_openapi_document_is_valid_and_describes_every_route(
    client: Client,
) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    document = await response.json()
    validate_openapi(document)

    send_op = document["paths"]["/email/send"]["post"]
    assert set(send_op["responses"]) == {"200", "400", "403", "409", "415", "422", "501", "503"}
    request_schema = document["components"]["schemas"]["EmailRequest"]
    assert {"fromEmail", "toEmail", "body", "subject"} <= set(request_schema["properties"])
    assert request_schema["additionalProperties"] is False

    for resource in client.app.router.resources():
        if isinstance(resource, web.StaticResource):
            continue
        path = resource.canonical
        assert path in document["paths"], path
        for route in resource:
            if route.method != "HEAD":
                assert route.method.lower() in document["paths"][path], (path, route.method)


async def test_the_send_form_is_served_when_enabled(
    client: Client, sqs_endpoint: str, start_client: StartClient
) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert 'id="send-form"' in await response.text()
    for name in ("app.js", "style.css"):
        assert (await client.get(f"/{name}")).status == 200
    assert (await client.get("/../pyproject.toml")).status == 404

    off = await start_client(
        create_app(make_settings(sqs_endpoint, api={"serve_webclient": False}))
    )
    response = await off.get("/")
    assert response.status == 404
    assert await response.json() == {"errors": {"base": "Not Found"}}


async def test_unknown_routes_and_methods_answer_json(
    client: Client,
) -> None:
    response = await client.get("/email/send")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert await response.json() == {"errors": {"base": "Method Not Allowed"}}


async def test_an_unexpected_exception_is_a_json_500_without_traceback(
    sqs_endpoint: str, start_client: StartClient
) -> None:
    settings = make_settings(sqs_endpoint, api={"serve_webclient": False})
    app = create_app(settings)

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("secret internal detail")

    app.router.add_get("/broken", broken)
    client = await start_client(app)
    response = await client.get("/broken")
    assert response.status == 500
    text = await response.text()
    assert json.loads(text) == {"errors": {"base": "Internal server error"}}
    assert "secret" not in text and "Traceback" not in text


# -- the real process: graceful shutdown --------------------------------------------------------


class HoldingProxy:
    """A TCP proxy to the SQS server that holds every SendMessageBatch call until released,
    so a test can keep an API request in flight for as long as it needs."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.holding = asyncio.Event()  # a send has arrived and is held
        self.released = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        self.released.set()
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        for task in (
            asyncio.create_task(self._pump(reader, up_writer, hold=True)),
            asyncio.create_task(self._pump(up_reader, writer, hold=False)),
        ):
            self._tasks.add(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, hold: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if hold and b"SendMessage" in data and not self.released.is_set():
                    self.holding.set()
                    await self.released.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def refuses_connections(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(
    sqs_endpoint: str, tmp_path: Path
) -> None:
    settings = make_settings(sqs_endpoint)
    await create_queues(settings)
    proxy = HoldingProxy(int(sqs_endpoint.rsplit(":", 1)[1]))
    access_log = tmp_path / "access.log"
    config = tmp_path / "api.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "aws": {"endpoint_url": await proxy.start(), "client_timeout_s": 10},
                "queues": {"urls": settings.queues.urls},
                "api": {
                    "host": "127.0.0.1",
                    "port": 0,
                    "shutdown_grace_s": 60,
                    "access_log_file_path": str(access_log),
                },
            }
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gomailpy_cli.main", "api", "--config", str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert "listening on http://127.0.0.1:" in line, line
        url = line.split("listening on ", 1)[1].strip()
        port = int(url.rsplit(":", 1)[1])

        async with aiohttp.ClientSession() as session:
            request = asyncio.create_task(session.post(f"{url}/email/send", json={"email": VALID}))
            await asyncio.wait_for(proxy.holding.wait(), 60)  # the request is in flight

            process.send_signal(signal.SIGTERM)
            await wait_until(lambda: refuses_connections(port), "the API stops accepting", 600)
            assert process.returncode is None  # still finishing the request in flight
            proxy.released.set()

            response = await asyncio.wait_for(request, 60)
            assert response.status == 200
            message_id = (await response.json())["messageId"]

        assert await asyncio.wait_for(process.wait(), 60) == 0
        [envelope] = flat(await received(settings, expected=1))
        assert envelope.id == message_id
        log = access_log.read_text()
        assert '"POST /email/send HTTP/1.1" 200' in log
        assert VALID["body"].splitlines()[0] not in log  # no email content in the access log
        assert "stopping" in (await process.stderr.read()).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await proxy.close()
