"""Message ids nobody else can mint (issue 23, point 3): an API whose status store is a real one
refuses to start without a secret `status.id_key`, and a v3 request's part ids `<id>_<n>` read as
queued only for the parts the request had. SQS on LocalStack, the real API on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from api.app import create_app
from gomailpy.config.settings import Settings, StatusSettings, load_settings
from gomailpy.errors import ConfigError
from gomailpy.store.deliveries import MessageIds, message_ids
from gomailpy.store.deliveries.ids import id_key_problem
from gomailpy_cli.main import cli
from tests.support import StartClient, create_queues, email_request, make_settings, unique

ROOT = Path(__file__).resolve().parent.parent
SECRET = "0123456789abcdef" * 4  # 64 characters
NOW = 1_800_000_000.0
EXAMPLE = ROOT / "config" / "production.example.yaml"
EXAMPLE_ENV = {"GOMAILPY_PROVIDERS__SENDGRID__API_KEY": "SG.example"}  # its providers' secret


def production(**status: Any) -> Settings:
    """Settings of an API on real AWS: DynamoDB status store, no endpoint of an emulator."""
    data = load_settings(None, env={}).model_dump(mode="python")
    data["status"].update(backend="dynamodb", **status)
    return Settings.model_validate(data)


# -- no secret id key, no production API --------------------------------------------------------


def test_an_id_minted_with_the_default_key_reads_as_ours() -> None:
    """Why the key must be secret: the derived key is everybody's."""
    forger = message_ids(StatusSettings(table="gomailpy-status"))
    forged = forger.new(NOW)
    api = message_ids(production().status)
    assert api.issued_at(forged, NOW) is not None


@pytest.mark.parametrize(
    "status",
    [
        {},  # real AWS (aws.endpoint_url unset)
        {"endpoint_url": "https://dynamodb.eu-west-1.amazonaws.com"},
        {"endpoint_url": "http://10.0.0.5:8000"},
        {"endpoint_url": "http://localhost.example.com:8000"},
    ],
)
def test_a_production_api_without_an_id_key_refuses_to_start(status: dict[str, Any]) -> None:
    settings = production(**status)
    with pytest.raises(ConfigError) as caught:
        create_app(settings)
    message = str(caught.value)
    assert message.startswith("status.id_key: missing secret")
    assert "GOMAILPY_STATUS__ID_KEY" in message


def test_a_short_id_key_is_refused_too() -> None:
    with pytest.raises(ConfigError, match="status.id_key: too short"):
        create_app(production(id_key="short"))


def test_a_production_api_with_an_id_key_starts() -> None:
    settings = load_settings(EXAMPLE, env={**EXAMPLE_ENV, "GOMAILPY_STATUS__ID_KEY": SECRET})
    assert id_key_problem(settings) is None
    create_app(settings)


@pytest.mark.parametrize(
    ("backend", "endpoint"),
    [
        ("memory", None),
        ("none", None),
        ("dynamodb", "http://127.0.0.1:5000"),
        ("dynamodb", "http://localhost:5000"),
        ("dynamodb", "http://[::1]:5000"),
    ],
)
def test_loopback_emulators_and_the_memory_store_may_keep_the_derived_key(
    backend: str, endpoint: str | None
) -> None:
    data = load_settings(None, env={}).model_dump(mode="python")
    data["status"].update(backend=backend, endpoint_url=endpoint)
    create_app(Settings.model_validate(data))


def test_the_shipped_local_configs_still_start() -> None:
    """`make up` / `gomail up` (config/gomailpy.yaml: LocalStack and moto on loopback) and
    docker compose (config/docker.yaml: no status store)."""
    for name in ("gomailpy.yaml", "docker.yaml", "test.yaml"):
        assert id_key_problem(load_settings(ROOT / "config" / name, env={})) is None, name
    refused = load_settings(EXAMPLE, env=EXAMPLE_ENV)
    assert (id_key_problem(refused) or "").startswith("status.id_key: missing secret")


def test_gomail_api_says_which_key_is_missing(tmp_path: Path) -> None:
    config = tmp_path / "api.yaml"
    config.write_text("status:\n  backend: dynamodb\n")
    result = CliRunner().invoke(
        cli, ["api", "--config", str(config)], env={"GOMAILPY_UP_STATE": str(tmp_path / "none")}
    )
    assert result.exit_code == 2, result.output
    assert "status.id_key" in result.output and "GOMAILPY_STATUS__ID_KEY" in result.output


# -- part ids only for parts that exist --------------------------------------------------------


def test_a_request_id_carries_its_number_of_parts() -> None:
    ids = MessageIds(b"k" * 32, ttl_s=3600)
    request_id = ids.new(NOW, parts=3)
    for n in range(3):
        assert ids.issued_at(f"{request_id}_{n}", NOW) is not None
    for past in ("3", "4", "10", "999999"):
        assert ids.issued_at(f"{request_id}_{past}", NOW) is None
    assert ids.issued_at(f"{request_id}_01", NOW) is None  # not how a part is named
    assert ids.issued_at(request_id, NOW) is None  # the request is no email
    more = request_id.replace("-3-", "-9-")  # the count is under the MAC
    assert ids.issued_at(f"{more}_5", NOW) is None
    single = ids.new(NOW)
    assert ids.issued_at(single, NOW) is not None  # one email's id: the format of before
    assert ids.issued_at(f"{single}_0", NOW) is None  # no email was issued under it
    assert ids.issued_at(f"{single}_7", NOW) is None
    with pytest.raises(ValueError):
        ids.new(NOW, parts=0)


@pytest.fixture
async def status_settings(sqs_endpoint: str) -> Settings:
    settings = make_settings(
        sqs_endpoint,
        queue_count=1,
        api={"serve_webclient": False},
        status={"backend": "memory", "table": unique("status"), "id_key": SECRET},
    )
    await create_queues(settings)
    return settings


async def test_part_ids_past_the_request_are_404(
    status_settings: Settings, start_client: StartClient
) -> None:
    client = await start_client(create_app(status_settings))
    body = {
        "personalizations": [{"to": [{"email": f"p{n}@example.org"}]} for n in range(2)],
        "from": {"email": "sender@example.com"},
        "subject": "Hello",
        "content": [{"type": "text/plain", "value": "Body"}],
    }
    response = await client.post("/v3/mail/send", json=body)
    assert response.status == 202, await response.text()
    request_id = response.headers["X-Message-Id"]
    for n in (0, 1):
        answer = await client.get(f"/email/{request_id}_{n}")
        assert answer.status == 200 and (await answer.json())["state"] == "queued"
    for unknown in (f"{request_id}_2", f"{request_id}_17", request_id):
        answer = await client.get(f"/email/{unknown}")
        assert answer.status == 404, unknown
        assert "No email with messageId" in (await answer.json())["errors"]["base"]


async def test_an_id_minted_with_the_default_key_is_404_under_a_secret_one(
    status_settings: Settings, start_client: StartClient
) -> None:
    client = await start_client(create_app(status_settings))
    response = await client.post("/email/send", json=email_request())
    issued = (await response.json())["messageId"]
    assert (await client.get(f"/email/{issued}")).status == 200
    forged = message_ids(StatusSettings(table=status_settings.status.table)).new()
    assert (await client.get(f"/email/{forged}")).status == 404
    assert (await client.get(f"/email/{issued}_0")).status == 404
