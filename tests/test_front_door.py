"""The front door: API keys, rate limits, the body-size limit and CORS, against the real app on
the test bed's SQS server. Rate-limit tests step an injected clock; nothing here sleeps."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from openapi_spec_validator import validate as validate_openapi

from api.app import create_app
from api.auth import (
    BAD_SCHEME,
    INVALID,
    MISSING,
    KeyRing,
    hash_key,
    hash_key_command,
    new_key,
    presented_key,
)
from api.ratelimit import TokenBuckets, normalize_address, retry_after_s
from gomailpy.config.settings import Settings, load_settings
from gomailpy.errors import ConfigError
from tests.support import (
    Client,
    StartClient,
    create_queues,
    email_request,
    make_settings,
    queue_totals,
)

KEY_A, KEY_B, KEY_C = "key-a-" + "a" * 40, "key-b-" + "b" * 40, "key-c-" + "c" * 40
HASHES = [hash_key(KEY_A), hash_key(KEY_B), hash_key(KEY_C)]
OPEN_PATHS = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/"]
INVALID_EMAIL = {"email": {"fromEmail": "a@example.com", "toEmail": "nope", "body": "x"}}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def make_client(sqs_endpoint: str, start_client: StartClient) -> MakeClient:
    """`make(clock=None, queues=False, **api_keys)`: the app with these api settings."""

    async def make(clock: FakeClock | None = None, *, queues: bool = False, **api: Any) -> Client:
        settings = make_settings(sqs_endpoint, api={"serve_webclient": True, **api})
        if queues:
            await create_queues(settings)
        return await start_client(
            create_app(settings, clock=clock) if clock else create_app(settings)
        )

    return make


def settings_of(client: Client) -> Settings:
    from api.keys import SETTINGS

    return client.app[SETTINGS]


async def post(client: Client, body: Any = None, **headers: str) -> tuple[int, Any, Any]:
    response = await client.post(
        "/email/send", json=email_request() if body is None else body, headers=headers
    )
    return response.status, await response.json(), response.headers


# -- API keys -----------------------------------------------------------------------------------


async def test_without_configured_keys_no_key_is_needed(make_client: MakeClient) -> None:
    client = await make_client(queues=True)
    status, body, _ = await post(client)
    assert status == 200, body
    status, _, _ = await post(client, Authorization="Bearer whatever")
    assert status == 200


async def test_a_configured_key_is_required_and_refusals_are_401(
    make_client: MakeClient,
) -> None:
    client = await make_client(queues=True, api_key_hashes=HASHES)

    status, body, headers = await post(client)
    assert (status, body) == (401, {"errors": {"base": MISSING}})
    assert headers["WWW-Authenticate"] == 'Bearer realm="gomailpy"'

    for wrong in ({"Authorization": "Bearer not-a-key"}, {"X-Api-Key": KEY_A + "x"}):
        status, body, headers = await post(client, **wrong)
        assert (status, body) == (401, {"errors": {"base": INVALID}})
        assert headers["WWW-Authenticate"] == 'Bearer realm="gomailpy", error="invalid_token"'

    for other_scheme in (f"Basic {KEY_A}", KEY_A, "Bearer "):
        status, body, _ = await post(client, Authorization=other_scheme)
        assert (status, body) == (401, {"errors": {"base": BAD_SCHEME}}), other_scheme

    # A hash is not a key: sending the configured hash itself gets nowhere.
    status, _, _ = await post(client, **{"X-Api-Key": HASHES[0]})
    assert status == 401
    # Nothing refused reached a queue.
    assert sum((await queue_totals(settings_of(client))).values()) == 0


async def test_every_configured_key_is_accepted_either_way(make_client: MakeClient) -> None:
    client = await make_client(queues=True, api_key_hashes=HASHES)
    accepted = [
        {"Authorization": f"Bearer {KEY_A}"},
        {"Authorization": f"bearer   {KEY_B} "},
        {"X-Api-Key": KEY_C},
        # A Bearer key is read first; a stray X-Api-Key beside it does not matter.
        {"Authorization": f"Bearer {KEY_A}", "X-Api-Key": "junk"},
        # An Authorization of another scheme (a proxy's) does not hide X-Api-Key.
        {"Authorization": "Basic dXNlcjpwYXNz", "X-Api-Key": KEY_B},
    ]
    for headers in accepted:
        status, body, _ = await post(client, **headers)
        assert status == 200, (headers, body)
        assert set(body) == {"messageId"}
    # Validation still applies once the key is accepted.
    status, body, _ = await post(client, INVALID_EMAIL, **{"X-Api-Key": KEY_A})
    assert status == 422 and "toEmail" in body["errors"]


async def test_the_key_is_checked_before_the_body_is_read(make_client: MakeClient) -> None:
    client = await make_client(api_key_hashes=HASHES)
    # 50 MB announced, none sent: a 401 comes back at once, the body is never waited for.
    status, text = await raw_request(
        client,
        b"POST /email/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\n\r\n",
    )
    assert status == 401, text
    assert MISSING in text


async def test_open_endpoints_stay_open_with_keys(make_client: MakeClient) -> None:
    client = await make_client(api_key_hashes=HASHES)
    for path in OPEN_PATHS:
        response = await client.get(path)
        assert response.status in (200, 503), path  # /readyz may not have read the queues yet
        assert response.status != 401
    # A CORS preflight carries no credentials: it is never refused for want of a key.
    response = await client.options(
        "/email/send",
        headers={"Origin": "http://x.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status == 403  # no origin is configured: refused for that, not the key
    # Unknown routes and wrong methods answer as they would without keys.
    assert (await client.get("/email/send")).status == 405
    assert (await client.get("/nothing/here")).status == 404


async def test_keys_are_compared_in_constant_time_with_every_hash(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # what api.auth calls
    client = await make_client(queues=True, api_key_hashes=HASHES)
    configured = [bytes.fromhex(h) for h in HASHES]

    # Matching the first hash, the last, or none: each is compared with all three, and what
    # is compared is the presented key's digest, never the key itself.
    for key, expected in ((KEY_A, 200), (KEY_C, 200), ("wrong", 401)):
        calls.clear()
        status, _, _ = await post(client, **{"X-Api-Key": key})
        assert status == expected
        assert [b for _, b in calls] == configured
        assert {a for a, _ in calls} == {hashlib.sha256(key.encode()).digest()}


def test_key_ring_and_key_reading() -> None:
    ring = KeyRing(HASHES)
    assert ring.required and not KeyRing([]).required
    assert ring.match(KEY_B) == HASHES[1][:12]
    assert ring.match(f"  {KEY_B}\n") == HASHES[1][:12]
    assert ring.match(KEY_B.upper()) is None
    assert ring.match("") is None
    assert presented_key({"Authorization": "Bearer abc"}) == "abc"
    assert presented_key({"Authorization": "Token abc"}) is None
    assert presented_key({"X-Api-Key": "  abc "}) == "abc"
    assert presented_key({}) is None


def test_hash_key_helper() -> None:
    assert hash_key_command("s3cret") == hashlib.sha256(b"s3cret").hexdigest()
    assert hash_key_command("s3cret\n") == hash_key("s3cret")  # as read from stdin
    printed = hash_key_command(None)
    key = printed.split("key:", 1)[1].split()[0]
    digest = printed.split("hash:", 1)[1].split()[0]
    assert digest == hash_key(key) and len(key) >= 40
    assert KeyRing([digest]).match(key) is not None
    assert new_key() != new_key()


def test_settings_take_hashes_only() -> None:
    upper = HASHES[0].upper()
    settings = load_settings(None, env={"GOMAILPY_API__API_KEY_HASHES": f"{upper},{HASHES[1]}"})
    assert settings.api.api_key_hashes == HASHES[:2]
    settings = load_settings(None, env={"GOMAILPY_API__API_KEY_HASHES": f"[{HASHES[2]}]"})
    assert settings.api.api_key_hashes == HASHES[2:]

    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={"GOMAILPY_API__API_KEY_HASHES": "[my-plain-key]"})
    message = str(caught.value)
    assert message.startswith("environment GOMAILPY_API__API_KEY_HASHES: api.api_key_hashes:")
    assert "SHA-256" in message and "gomail hash-key" in message
    assert "my-plain-key" not in message  # a key pasted by mistake is not echoed to logs


def test_settings_name_the_file_for_a_bad_hash(tmp_path: Any) -> None:
    path = tmp_path / "api.yaml"
    path.write_text(f"api:\n  api_key_hashes: ['{HASHES[0]}', 'abc']\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert str(caught.value).startswith(f"{path}: api.api_key_hashes: item 1: must be the SHA-256")


# -- rate limits --------------------------------------------------------------------------------


async def test_per_address_limit_answers_429_with_retry_after_and_refills(
    make_client: MakeClient,
) -> None:
    clock = FakeClock()
    client = await make_client(clock, rate_limit_per_address=0.5, rate_limit_per_address_burst=3)
    for _ in range(3):  # the burst
        status, _, _ = await post(client, INVALID_EMAIL)
        assert status == 422
    status, body, headers = await post(client, INVALID_EMAIL)
    assert status == 429
    assert headers["Retry-After"] == "2"  # one token at 0.5/s
    assert body == {
        "errors": {
            "base": "Too many requests from this address: the limit is 0.5 per second with"
            " bursts of 3; retry after 2 s"
        }
    }

    clock.advance(1.0)  # half a token: still refused, and told the rest
    status, _, headers = await post(client, INVALID_EMAIL)
    assert (status, headers["Retry-After"]) == (429, "1")
    clock.advance(1.0)  # one token back: one request
    assert (await post(client, INVALID_EMAIL))[0] == 422
    assert (await post(client, INVALID_EMAIL))[0] == 429
    clock.advance(3600)  # long idle: a full burst again, never more
    assert [(await post(client, INVALID_EMAIL))[0] for _ in range(4)] == [422, 422, 422, 429]


async def test_open_endpoints_are_not_rate_limited(make_client: MakeClient) -> None:
    client = await make_client(
        FakeClock(), rate_limit_per_address=1, rate_limit_per_address_burst=1
    )
    assert (await post(client, INVALID_EMAIL))[0] == 422
    assert (await post(client, INVALID_EMAIL))[0] == 429
    for _ in range(3):
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/metrics")).status == 200


async def test_per_key_limit_is_per_key(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(
        clock, api_key_hashes=HASHES, rate_limit_per_key=1, rate_limit_per_key_burst=2
    )
    a, b = {"X-Api-Key": KEY_A}, {"X-Api-Key": KEY_B}
    assert [(await post(client, INVALID_EMAIL, **a))[0] for _ in range(3)] == [422, 422, 429]
    status, body, headers = await post(client, INVALID_EMAIL, **a)
    assert status == 429 and headers["Retry-After"] == "1"
    assert body["errors"]["base"].startswith("Too many requests for this API key:")
    # Another key, from the same address, has its own bucket.
    assert [(await post(client, INVALID_EMAIL, **b))[0] for _ in range(3)] == [422, 422, 429]
    # Refused attempts without a valid key use no key's tokens.
    for _ in range(5):
        assert (await post(client, INVALID_EMAIL, **{"X-Api-Key": "wrong"}))[0] == 401
    clock.advance(1)
    assert (await post(client, INVALID_EMAIL, **a))[0] == 422
    assert (await post(client, INVALID_EMAIL, **b))[0] == 422


async def test_per_address_limit_is_per_address_whatever_the_key(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(
        clock,
        api_key_hashes=HASHES,
        rate_limit_per_address=1,
        rate_limit_per_address_burst=2,
        rate_limit_per_key=100,
        rate_limit_per_key_burst=100,
        client_address_header="X-Forwarded-For",
    )

    def sender(address: str, key: str) -> dict[str, str]:
        # The proxy appends the address it saw: the last entry counts, not what the client wrote.
        return {"X-Forwarded-For": f"6.6.6.6, {address}", "X-Api-Key": key}

    one, two = "192.0.2.1", "198.51.100.7"
    # Two keys from one address share its bucket.
    assert (await post(client, INVALID_EMAIL, **sender(one, KEY_A)))[0] == 422
    assert (await post(client, INVALID_EMAIL, **sender(one, KEY_B)))[0] == 422
    status, body, _ = await post(client, INVALID_EMAIL, **sender(one, KEY_C))
    assert status == 429 and "from this address" in body["errors"]["base"]
    # Guessing keys costs the address's tokens too (the address limit comes first).
    status, _, _ = await post(client, INVALID_EMAIL, **sender(one, "guess"))
    assert status == 429
    # Another address is not affected, with the very same key.
    assert (await post(client, INVALID_EMAIL, **sender(two, KEY_A)))[0] == 422
    # IPv6 addresses count by /64: a client cannot rotate its way out of the limit.
    first = sender("2001:db8:1:2::1", KEY_A)
    second = sender("2001:db8:1:2:ffff::9", KEY_A)
    assert (await post(client, INVALID_EMAIL, **first))[0] == 422
    assert (await post(client, INVALID_EMAIL, **second))[0] == 422
    assert (await post(client, INVALID_EMAIL, **first))[0] == 429


async def test_without_the_header_setting_a_forwarded_for_is_ignored(
    make_client: MakeClient,
) -> None:
    client = await make_client(
        FakeClock(), rate_limit_per_address=1, rate_limit_per_address_burst=1
    )
    assert (await post(client, INVALID_EMAIL, **{"X-Forwarded-For": "192.0.2.1"}))[0] == 422
    assert (await post(client, INVALID_EMAIL, **{"X-Forwarded-For": "192.0.2.2"}))[0] == 429


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=2.0, burst=4, clock=clock)
    assert [buckets.take("k") for _ in range(4)] == [0.0] * 4
    assert buckets.take("k") == pytest.approx(0.5)
    clock.advance(0.25)
    assert buckets.take("k") == pytest.approx(0.25)
    clock.advance(0.25)
    assert buckets.take("k") == 0.0
    clock.advance(-100)  # a clock that steps back grants nothing
    assert buckets.take("k") > 0
    assert retry_after_s(0.01) == 1 and retry_after_s(1.0) == 1 and retry_after_s(1.01) == 2


def test_buckets_stay_bounded_and_idle_ones_are_dropped() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=1.0, burst=10, max_buckets=100, clock=clock)
    for n in range(1000):
        buckets.take(f"address-{n}")
    assert len(buckets) == 100  # least recently used dropped beyond the bound
    assert buckets.take("address-999") == 0.0  # the recent ones are kept, with their tokens
    clock.advance(10)  # long enough for every bucket to be full again: none is needed
    buckets.take("new")
    assert len(buckets) == 1
    # A busy bucket is not dropped as idle while others are.
    for _ in range(10):
        buckets.take("busy")
    clock.advance(5)
    buckets.take("other")
    assert buckets.take("busy") == 0.0  # 5 tokens back, not a fresh 10
    assert len(buckets) == 3  # "new", "busy", "other": none idle for 10 s yet
    assert [buckets.take("busy") for _ in range(5)] == [0.0] * 4 + [pytest.approx(1.0)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1 ", "192.0.2.1"),
        ("192.0.2.1:5555", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("[2001:db8::1]:443", "2001:db8::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("x" * 500, "x" * 64),
    ],
)
def test_client_addresses_are_normalized(raw: str, expected: str) -> None:
    assert normalize_address(raw) == expected


# -- body size and CORS -------------------------------------------------------------------------


async def raw_request(client: Client, head: bytes, body: bytes = b"") -> tuple[int, str]:
    """Send `head` (and `body`) on a fresh connection and read the answer, without finishing
    whatever body `head` announced: an answer proves the server did not wait for all of it."""
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(head + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        rest = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
    return int(status_line.split()[1]), rest.decode(errors="replace")


async def test_an_announced_oversized_body_is_refused_before_any_of_it_is_read(
    make_client: MakeClient,
) -> None:
    client = await make_client(max_body_size_bytes=4096)
    status, text = await raw_request(
        client,
        b"POST /email/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000\r\n\r\n",
    )
    assert status == 400
    assert "Request body is too large: 1000000000 bytes, the limit is 4096 bytes" in text


async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(
    make_client: MakeClient,
) -> None:
    client = await make_client(max_body_size_bytes=4096)
    chunk = b"1000\r\n" + b" " * 4096 + b"\r\n"  # 4 KiB chunks, the body never finished
    status, text = await raw_request(
        client,
        b"POST /email/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        chunk * 3,
    )
    assert status == 400
    assert "more than 4096 bytes, the limit is 4096 bytes" in text


async def test_cors_allows_the_key_headers_for_configured_origins_only(
    make_client: MakeClient,
) -> None:
    allowed = "https://form.example"
    client = await make_client(
        FakeClock(),
        cors_origins=[allowed],
        api_key_hashes=HASHES,
        rate_limit_per_key=1,
        rate_limit_per_key_burst=1,
    )
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x"}
    response = await client.options("/email/send", headers={"Origin": allowed, **preflight})
    assert response.status == 204
    allow_headers = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allow_headers and "x-api-key" in allow_headers

    for lookalike in (
        "https://form.example.evil.example",
        "https://evil.example/https://form.example",
        "http://form.example",
        "https://form.example:444",
        "null",
    ):
        response = await client.options("/email/send", headers={"Origin": lookalike, **preflight})
        assert response.status == 403, lookalike
        assert "Access-Control-Allow-Origin" not in response.headers

    # The front door's own answers carry CORS headers, so the page can show them.
    key = {"X-Api-Key": KEY_A, "Origin": allowed}
    for headers, status in (({"Origin": allowed}, 401), (key, 422), (key, 429)):
        got, _, answer = await post(client, INVALID_EMAIL, **headers)
        assert got == status
        assert answer["Access-Control-Allow-Origin"] == allowed
        assert "Retry-After" in answer["Access-Control-Expose-Headers"]
    # A page elsewhere is refused before the key is even looked at (see the cross-site tests).
    got, _, answer = await post(client, INVALID_EMAIL, Origin="https://evil.example")
    assert got == 403 and "Access-Control-Allow-Origin" not in answer


async def test_no_origin_is_allowed_by_default(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.options(
        "/email/send",
        headers={"Origin": "http://127.0.0.1:8000", "Access-Control-Request-Method": "POST"},
    )
    assert response.status == 403
    _, _, headers = await post(client, INVALID_EMAIL, Origin="http://127.0.0.1:8000")
    assert "Access-Control-Allow-Origin" not in headers


# -- cross-site sending -------------------------------------------------------------------------


async def post_raw(
    client: Client, body: bytes, content_type: str | None, **headers: str
) -> tuple[int, Any]:
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await client.post("/email/send", data=body, headers=headers)
    return response.status, await response.json()


async def test_a_page_elsewhere_cannot_send_even_without_a_preflight(
    make_client: MakeClient,
) -> None:
    # What a page of another origin can send with fetch(..., {mode: "no-cors"}) or a form: no
    # preflight, a "simple" content type. CORS hides the answer; only this refusal stops the send.
    client = await make_client(queues=True, cors_origins=["https://form.example"])
    body = json.dumps(email_request()).encode()
    evil = "https://evil.example"
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/json"):
        status, answer = await post_raw(client, body, content_type, Origin=evil)
        assert status == 403, content_type
        assert answer == {"errors": {"base": f"Origin {evil} is not allowed (api.cors_origins)"}}
    for method in ("PUT", "DELETE", "PATCH"):
        response = await client.request(method, "/email/send", headers={"Origin": evil})
        assert response.status == 403, method
    assert sum((await queue_totals(settings_of(client))).values()) == 0
    # Reading stays open: GETs are not refused by origin (CORS decides what a page may read).
    assert (await client.get("/healthz", headers={"Origin": evil})).status == 200


@pytest.mark.parametrize(
    ("origin", "content_type", "expected"),
    [
        ("https://form.example", "text/plain", 415),  # allowed page, but a simple request
        ("https://form.example", "text/plain; charset=utf-8", 415),
        ("https://form.example", None, 415),
        ("https://form.example", "application/json", 200),
        ("https://form.example", "application/json; charset=utf-8", 200),
        ("https://form.example", "application/merge-patch+json", 200),
        ("SAME", "application/json", 200),  # the form the API serves itself
        ("SAME", "text/plain", 415),
        (None, "text/plain", 200),  # curl and servers send no Origin: unaffected
        (None, None, 200),
    ],
)
async def test_with_an_origin_the_body_must_be_declared_json(
    make_client: MakeClient, origin: str | None, content_type: str | None, expected: int
) -> None:
    client = await make_client(queues=True, cors_origins=["https://form.example"])
    headers = {}
    if origin is not None:
        headers["Origin"] = (
            f"http://{client.host}:{client.port}" if origin == "SAME" else origin
        )
    status, answer = await post_raw(
        client, json.dumps(email_request()).encode(), content_type, **headers
    )
    assert status == expected, answer
    if expected == 415:
        assert answer == {
            "errors": {
                "base": "Content-Type must be application/json for a request sent by a browser"
            }
        }
    totals = await queue_totals(settings_of(client))
    assert sum(totals.values()) == (1 if expected == 200 else 0)


async def test_the_served_form_is_same_origin_whatever_the_host_name(
    make_client: MakeClient,
) -> None:
    client = await make_client(queues=True)  # no cors_origins at all
    for host in ("localhost", "gomail.example:8443"):
        status, answer = await post_raw(
            client,
            json.dumps(email_request()).encode(),
            "application/json",
            Origin=f"https://{host}",
            Host=host,
        )
        assert status == 200, (host, answer)
    status, _ = await post_raw(
        client, b"{}", "application/json", Origin="https://localhost.evil.example", Host="localhost"
    )
    assert status == 403


async def test_openapi_describes_the_front_door_when_on(make_client: MakeClient) -> None:
    client = await make_client(api_key_hashes=HASHES, rate_limit_per_address=5)
    document = await (await client.get("/openapi.json")).json()
    validate_openapi(document)
    send = document["paths"]["/email/send"]["post"]
    assert {"401", "429"} <= set(send["responses"])
    assert send["security"] == [{"bearerKey": []}, {"headerKey": []}]
    assert set(document["components"]["securitySchemes"]) == {"bearerKey", "headerKey"}
    assert "security" not in document["paths"]["/healthz"]["get"]

    plain = await (await (await make_client()).get("/openapi.json")).json()
    assert "securitySchemes" not in plain["components"]
    assert {"401", "429"}.isdisjoint(plain["paths"]["/email/send"]["post"]["responses"])
