"""API key scopes (issue 23, point 4): every guarded route needs one scope, a key without it is
answered 403 (on /v3 in SendGrid's shape, read here with SendGrid's own client), keys configured
without scopes keep every one (and are named at startup), unknown scopes are refused at load.
The real API on loopback, SQS on LocalStack, the status table in memory."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import yaml
from click.testing import CliRunner
from python_http_client.exceptions import ForbiddenError, UnauthorizedError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail as SendGridMail

from api.app import create_app
from api.auth import (
    GUARDED_PATHS,
    GUARDED_PREFIX,
    SELF_GUARDED_PREFIX,
    KeyRing,
    hash_key,
    required_scope,
)
from gomailpy.config.settings import (
    ADMIN,
    EVENTS_READ,
    MAIL_SEND,
    SCOPES,
    SUPPRESSIONS,
    TEMPLATES,
    Settings,
    load_settings,
)
from gomailpy.errors import ConfigError
from gomailpy.listeners.submission import SubmissionListener, tls_context
from gomailpy.queues.sqs import create_queue_client
from gomailpy_cli.main import cli
from gomailpy_local.tls import self_signed_certificate
from tests.support import (
    Client,
    StartClient,
    StartServer,
    create_queues,
    email_request,
    make_settings,
    unique,
)

ONLY = {scope: f"only-{scope}-" + "k" * 40 for scope in SCOPES}  # a key per scope, just that one
FULL = "full-access-" + "k" * 40  # configured the old way: api.api_key_hashes
UNSCOPED = "unscoped-" + "k" * 40  # under api.api_keys without `scopes`
V3_BODY = {
    "personalizations": [{"to": [{"email": "rcpt@example.org"}]}],
    "from": {"email": "sender@example.com"},
    "subject": "Hello",
    "content": [{"type": "text/plain", "value": "Body"}],
}

# Per scope, requests that need it (method, path, JSON body) and the answers a key with the scope
# gets (the endpoint's own: never 401 or 403).
ENDPOINTS: list[tuple[str, str, str, Any, set[int]]] = [
    (MAIL_SEND, "POST", "/email/send", email_request(), {200}),
    (MAIL_SEND, "POST", "/v3/mail/send", V3_BODY, {202}),
    (MAIL_SEND, "DELETE", "/email/no-such-id/schedule", None, {404}),
    (EVENTS_READ, "GET", "/email/no-such-id", None, {404}),
    (EVENTS_READ, "GET", "/events?messageId=no-such-id", None, {200}),
    (TEMPLATES, "GET", "/templates", None, {200}),
    (TEMPLATES, "PUT", "/templates/welcome", {"subject": "Hi", "text": "Hello"}, {200}),
    (SUPPRESSIONS, "GET", "/suppressions", None, {200}),
    (SUPPRESSIONS, "PUT", "/suppressions/someone@example.org", {"reason": "asked"}, {200}),
    (ADMIN, "GET", "/admin/providers", None, {200}),
    (ADMIN, "GET", "/admin/overview", None, {200}),
]
ENDPOINT_IDS = [f"{scope}:{method} {path}" for scope, method, path, _, _ in ENDPOINTS]


def keys_config() -> dict[str, Any]:
    return {
        "serve_webclient": False,
        "api_key_hashes": [hash_key(FULL)],
        "api_keys": [
            *({"hash": hash_key(key), "scopes": [scope]} for scope, key in ONLY.items()),
            {"hash": hash_key(UNSCOPED)},
        ],
    }


@pytest.fixture
async def settings(sqs_endpoint: str) -> Settings:
    settings = make_settings(
        sqs_endpoint,
        queue_count=1,
        api=keys_config(),
        status={"backend": "memory", "table": unique("status")},
    )
    await create_queues(settings)
    return settings


@pytest.fixture
async def client(settings: Settings, start_client: StartClient) -> Client:
    return await start_client(create_app(settings))


async def call(client: Client, method: str, path: str, body: Any, key: str) -> tuple[int, Any]:
    response = await client.request(method, path, json=body, headers={"X-Api-Key": key})
    text = await response.text()
    return response.status, json.loads(text) if text else None


# -- every scope: 403 without it, the endpoint's answer with it ---------------------------------


@pytest.mark.parametrize(
    ("scope", "method", "path", "body", "allowed"), ENDPOINTS, ids=ENDPOINT_IDS
)
async def test_a_key_without_the_scope_gets_403(
    client: Client, scope: str, method: str, path: str, body: Any, allowed: set[int]
) -> None:
    status, answer = await call(client, method, path, body, ONLY[scope])
    assert status in allowed, (status, answer)
    for other in SCOPES:
        if other == scope:
            continue
        status, answer = await call(client, method, path, body, ONLY[other])
        assert status == 403, (other, status, answer)
        if path.startswith("/v3/"):
            assert answer == {
                "errors": [{"message": "access forbidden", "field": None, "help": None}]
            }
        else:
            assert set(answer) == {"errors"} and set(answer["errors"]) == {"base"}
            assert f"the scope {scope!r}" in answer["errors"]["base"]


@pytest.mark.parametrize(
    ("scope", "method", "path", "body", "allowed"), ENDPOINTS, ids=ENDPOINT_IDS
)
async def test_keys_without_scopes_may_do_everything(
    client: Client, scope: str, method: str, path: str, body: Any, allowed: set[int]
) -> None:
    for key in (FULL, UNSCOPED):
        status, answer = await call(client, method, path, body, key)
        assert status in allowed, (key, status, answer)


async def test_without_a_key_it_is_still_401(client: Client) -> None:
    for _, method, path, body, _ in ENDPOINTS:
        response = await client.request(method, path, json=body)
        assert response.status == 401, path


# -- /v3 with SendGrid's own client -------------------------------------------------------------


async def test_the_official_client_reads_the_v3_403(
    settings: Settings, start_server: StartServer
) -> None:
    server = await start_server(create_app(settings))
    host = f"http://127.0.0.1:{server.port}"
    mail = SendGridMail(
        from_email="sender@example.com",
        to_emails="rcpt@example.org",
        subject="Hello",
        plain_text_content="Body",
    )

    def send(key: str) -> Any:
        return SendGridAPIClient(key, host=host).send(mail)

    with pytest.raises(ForbiddenError) as caught:
        await asyncio.to_thread(send, ONLY[EVENTS_READ])
    assert caught.value.status_code == 403
    assert json.loads(caught.value.body) == {
        "errors": [{"message": "access forbidden", "field": None, "help": None}]
    }
    with pytest.raises(UnauthorizedError):
        await asyncio.to_thread(send, "not-a-key")
    response = await asyncio.to_thread(send, ONLY[MAIL_SEND])
    assert response.status_code == 202


async def test_local_operator_controls_are_off_with_scoped_keys(
    settings: Settings, start_client: StartClient
) -> None:
    """`operator.local_controls` (gomail up) applies only with no key at all: keys under
    api.api_keys count as keys."""
    data = settings.model_dump(mode="python")
    data["api"]["api_key_hashes"] = []
    data["operator"]["local_controls"] = True
    client = await start_client(create_app(Settings.model_validate(data)))
    status, answer = await call(client, "GET", "/admin/overview", None, ONLY[ADMIN])
    assert status == 200 and answer["local_controls"] is False
    response = await client.post("/admin/providers/ses/disable", json={"reason": "test"})
    assert response.status == 401


# -- which route needs which scope --------------------------------------------------------------

EXPECTED = {
    "/email/send": MAIL_SEND,
    "/v3/mail/send": MAIL_SEND,
    "/email/{messageId}/schedule": MAIL_SEND,
    "/email/{messageId}": EVENTS_READ,
    "/events": EVENTS_READ,
    "/templates": TEMPLATES,
    "/templates/{id}": TEMPLATES,
    "/suppressions": SUPPRESSIONS,
    "/suppressions/{address}": SUPPRESSIONS,
    "/asm/groups": SUPPRESSIONS,
    "/asm/groups/{group}": SUPPRESSIONS,
    "/admin/providers": ADMIN,
    "/admin/providers/{name}/{action}": ADMIN,
    "/admin/overview": ADMIN,
}


def test_every_guarded_route_has_its_scope(settings: Settings) -> None:
    app = create_app(settings)
    patterns = {resource.canonical for resource in app.router.resources()}
    assert set(EXPECTED) <= patterns  # the table names routes that exist
    guarded = [
        p
        for p in patterns
        if p.startswith((*GUARDED_PREFIX, *SELF_GUARDED_PREFIX, "/v3/")) or p in GUARDED_PATHS
    ]
    for pattern in guarded:
        # A route nobody listed is the operator's: closed to narrower keys until it is listed.
        assert required_scope(pattern) == EXPECTED.get(pattern, ADMIN), pattern
    assert required_scope("/something/new") == ADMIN


async def test_openapi_names_the_scope_of_each_operation(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    send = document["paths"]["/email/send"]["post"]
    assert send["x-scope"] == MAIL_SEND and "'mail.send'" in send["responses"]["403"]["description"]
    assert document["paths"]["/email/{messageId}"]["get"]["x-scope"] == EVENTS_READ
    assert document["paths"]["/templates/{id}"]["put"]["x-scope"] == TEMPLATES
    assert document["paths"]["/admin/providers"]["get"]["x-scope"] == ADMIN


# -- configuration ------------------------------------------------------------------------------


def test_unknown_scopes_are_refused_naming_the_key(tmp_path: Path) -> None:
    digest = hash_key("some key")
    path = tmp_path / "api.yaml"
    path.write_text(
        f"api:\n  api_keys:\n    - hash: '{digest}'\n      scopes: [mail.send, mail.sned]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert str(caught.value).startswith(
        f"{path}: api.api_keys[0]: key {digest[:12]}: unknown scope 'mail.sned'; the scopes are"
        " mail.send, templates, suppressions, events.read, admin"
    )
    with pytest.raises(ConfigError, match=f"key {digest[:12]}: no scope"):
        load_settings(None, env={"GOMAILPY_API__API_KEYS": f"[{{hash: {digest}, scopes: []}}]"})
    with pytest.raises(ConfigError, match=f"key {digest[:12]} is configured twice"):
        load_settings(
            None,
            env={
                "GOMAILPY_API__API_KEYS": f"[{{hash: {digest}, scopes: [admin]}}]",
                "GOMAILPY_API__API_KEY_HASHES": digest,
            },
        )


def test_keys_with_scopes_from_the_environment() -> None:
    digest = hash_key("some key")
    settings = load_settings(
        None,
        env={"GOMAILPY_API__API_KEYS": f"[{{hash: {digest}, scopes: [events.read, mail.send]}}]"},
    )
    [key] = settings.api.keys
    assert key.scopes == [MAIL_SEND, EVENTS_READ]
    ring = KeyRing.from_settings(settings.api)
    headers = {"X-Api-Key": "some key"}
    assert ring.check(headers, MAIL_SEND).problem is None
    assert ring.check(headers, ADMIN).key_id == digest[:12]  # known, but 403
    assert ring.check(headers, ADMIN).problem is not None


async def test_each_key_without_scopes_is_named_at_startup(
    settings: Settings, start_client: StartClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="api.auth")
    await start_client(create_app(settings))
    lines = [r.getMessage() for r in caplog.records if "has no scopes" in r.getMessage()]
    assert len(lines) == 2
    for key in (FULL, UNSCOPED):
        [line] = [line for line in lines if hash_key(key)[:12] in line]
        assert "every one" in line and "api.api_keys" in line and "--scope" in line


def test_hash_key_prints_the_config_with_the_scopes(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["hash-key", "--scope", "events.read", "--scope", "mail.send"], input="my key\n"
    )
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output) == {
        "api": {"api_keys": [{"hash": hash_key("my key"), "scopes": [MAIL_SEND, EVENTS_READ]}]}
    }
    made = CliRunner().invoke(cli, ["hash-key", "--new", "--scope", "templates"])
    assert made.exit_code == 0, made.output
    key = made.output.split("key:", 1)[1].split()[0]
    config = tmp_path / "keys.yaml"
    config.write_text(made.output[made.output.index("api:") :])
    settings = load_settings(config, env={})
    ring = KeyRing.from_settings(settings.api)
    assert ring.check({"X-Api-Key": key}, TEMPLATES).problem is None
    assert ring.check({"X-Api-Key": key}, MAIL_SEND).problem is not None
    plain = CliRunner().invoke(cli, ["hash-key"], input="my key\n")
    assert plain.output.strip() == hash_key("my key")  # without --scope: the hash, as before
    wrong = CliRunner().invoke(cli, ["hash-key", "--scope", "everything"], input="my key\n")
    assert wrong.exit_code == 2 and "mail.send" in wrong.output


# -- SMTP submission: the key is the password, and must have mail.send --------------------------


async def test_smtp_submission_takes_only_keys_that_may_send(
    settings: Settings, tmp_path: Path
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    client_tls = ssl.create_default_context()
    client_tls.check_hostname = False
    client_tls.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    async with (
        create_queue_client(settings) as queues,
        SubmissionListener(settings, queues, tls=tls_context(str(cert), str(key)), port=0) as it,
    ):

        async def login(password: str) -> int:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=it.port, tls_context=client_tls)
            await client.connect(start_tls=True)
            try:
                return (await client.login("apikey", password)).code
            except aiosmtplib.SMTPAuthenticationError as exc:
                return exc.code
            finally:
                client.close()

        for allowed in (ONLY[MAIL_SEND], FULL, UNSCOPED):
            assert await login(allowed) == 235
        for refused in (ONLY[EVENTS_READ], ONLY[ADMIN], "not-a-key"):
            assert await login(refused) == 535
