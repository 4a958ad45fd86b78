"""The operator commands and a running `gomail up` (gomailpy.operating.up_state): with nothing
configured they find the stack; explicit configuration (a --config, any GOMAILPY_* setting) always
wins over it, so a `make up` beside `make test` cannot capture the tests' commands."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from gomailpy.operating.resources import ensure_resources
from gomailpy.operating.up_state import STATE_ENV, UpState, write_state
from gomailpy_cli.commands.shared import load_local
from gomailpy_cli.main import cli
from tests.support import make_settings, table_cli_env, unique

STACK_ENDPOINT = "http://127.0.0.1:4566"
STACK_STATUS = "http://127.0.0.1:9"  # nothing answers there: a command that used it would fail


@pytest.fixture
def running_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> UpState:
    """A state file as `gomail up` writes it, of a live process (this one), found through
    GOMAILPY_UP_STATE; no other GOMAILPY_* variable set."""
    state = UpState(
        pid=os.getpid(),
        endpoint_url=STACK_ENDPOINT,
        queues=["stack-1", "stack-2"],
        api_url="http://127.0.0.1:9",
        admin_urls=["http://127.0.0.1:9"],
        status_endpoint_url=STACK_STATUS,
    )
    path = tmp_path / "up.json"
    write_state(path, state)
    for name in os.environ:
        if name.startswith("GOMAILPY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(STATE_ENV, str(path))
    return state


def test_with_nothing_configured_the_commands_use_the_stack(running_stack: UpState) -> None:
    settings, found = load_local(None)
    assert found == running_stack
    assert settings.aws.endpoint_url == STACK_ENDPOINT
    assert settings.queues.urls == ["stack-1", "stack-2"]
    assert (settings.status.backend, settings.status.endpoint_url) == ("dynamodb", STACK_STATUS)


def test_any_gomailpy_setting_wins_over_the_stack(
    running_stack: UpState, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GOMAILPY_LOGGING__FORMAT", "text")  # any setting, even a default
    settings, found = load_local(None)
    assert found is None and settings.aws.endpoint_url is None
    assert settings.status.backend == "none" and settings.queues.urls != ["stack-1", "stack-2"]
    assert f"not the local stack of `gomail up`, pid {os.getpid()}" in capsys.readouterr().err
    # GOMAILPY_UP_STATE (where the stack is) and GOMAILPY_API_KEY (`gomail send`'s) are none.
    monkeypatch.delenv("GOMAILPY_LOGGING__FORMAT")
    monkeypatch.setenv("GOMAILPY_API_KEY", "k")
    assert load_local(None)[1] == running_stack


def test_configuration_naming_the_stack_takes_only_what_it_leaves_open(
    running_stack: UpState, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOMAILPY_AWS__ENDPOINT_URL", STACK_ENDPOINT)
    monkeypatch.setenv("GOMAILPY_STATUS__BACKEND", "dynamodb")
    monkeypatch.setenv("GOMAILPY_QUEUES__URLS", '["mine"]')
    settings, found = load_local(None)
    assert found == running_stack  # its admin URLs and status endpoint are still found
    assert settings.queues.urls == ["mine"]  # never replaced by the stack's
    assert settings.status.endpoint_url == STACK_STATUS  # left open: the stack's
    monkeypatch.setenv("GOMAILPY_STATUS__ENDPOINT_URL", "http://127.0.0.1:1234")
    assert load_local(None)[0].status.endpoint_url == "http://127.0.0.1:1234"
    for name in ("GOMAILPY_AWS__ENDPOINT_URL", "GOMAILPY_QUEUES__URLS"):
        monkeypatch.delenv(name)
    config = tmp_path / "c.yaml"
    config.write_text("aws:\n  endpoint_url: http://127.0.0.1:5555\n")
    settings, found = load_local(config)  # a config naming another endpoint: not the stack
    assert found is None and settings.aws.endpoint_url == "http://127.0.0.1:5555"


def test_suppression_commands_beside_a_running_stack_use_the_environment_given(
    running_stack: UpState, moto_endpoint: str
) -> None:
    # What `make test` does beside `make up`: GOMAILPY_STATUS__* name the test's own table.
    env = table_cli_env(moto_endpoint)
    runner = CliRunner()
    added = runner.invoke(cli, ["suppression", "add", "x@example.org"], env=env)
    assert added.exit_code == 0, added.output
    assert "suppressed 1" in added.stdout
    assert "not the local stack of `gomail up`" in added.stderr
    assert "GOMAILPY_STATUS__BACKEND" in added.stderr
    listed = runner.invoke(cli, ["suppression", "list"], env=env)
    assert listed.exit_code == 0 and "x@example.org" in listed.stdout, listed.output
    memory = runner.invoke(cli, ["suppression", "list"], env={"GOMAILPY_STATUS__BACKEND": "memory"})
    assert memory.exit_code == 2 and "status.backend: dynamodb" in memory.output


def test_suppression_commands_beside_a_running_stack_use_the_config_given(
    running_stack: UpState, moto_endpoint: str, tmp_path: Path
) -> None:
    table = unique("table")
    settings = make_settings(
        "http://127.0.0.1:1",
        status={"backend": "dynamodb", "endpoint_url": moto_endpoint, "table": table},
    )
    asyncio.run(ensure_resources(settings))
    config = tmp_path / "c.yaml"
    config.write_text(
        f"status:\n  backend: dynamodb\n  endpoint_url: {moto_endpoint}\n  table: {table}\n"
    )
    runner = CliRunner()
    args = ["--config", str(config)]
    added = runner.invoke(cli, ["suppression", "add", "y@example.org", *args])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(cli, ["suppression", "list", *args])
    assert listed.exit_code == 0 and "y@example.org" in listed.stdout, listed.output
