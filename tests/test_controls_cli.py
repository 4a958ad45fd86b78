"""`gomail provider ...` against the shared status table (DynamoDB on moto's server), and the
controls in `gomail status`."""

from __future__ import annotations

import json

from click.testing import CliRunner

from gomailpy_cli.main import cli
from tests.support import table_cli_env


def test_operators_steer_providers_from_the_command_line(moto_endpoint: str) -> None:
    env = {
        **table_cli_env(moto_endpoint),
        "GOMAILPY_UP_STATE": "/nonexistent/up.json",
        "GOMAILPY_AWS__ENDPOINT_URL": "http://127.0.0.1:1",  # no queue server: status says so
    }
    runner = CliRunner()

    def gomail(*args: str, code: int = 0) -> str:
        done = runner.invoke(cli, ["provider", *args], env=env)
        assert done.exit_code == code, done.output
        return done.output

    shown = gomail("disable", "ses", "--reason", "SES outage, case 42")
    assert "ses       disabled" in shown and "SES outage, case 42" in shown
    assert "(cli)" in shown  # who: the OS user
    gomail("weight", "smtp", "3", "-r", "relay has room")
    gomail("force", "sendgrid", "open", "-r", "vendor incident")
    gomail("probe-after", "sendgrid", "120", "-r", "do not knock")
    gomail("pin", "smtp", "-r", "drill")
    listed = json.loads(gomail("list", "--json"))
    assert listed["pinned"] == "smtp"
    assert listed["providers"]["sendgrid"]["active"] == ["forced open", "probe after 120 s"]
    assert listed["providers"]["smtp"]["weight"] == 3
    assert "Missing option '--reason'" in gomail("enable", "ses", code=2)
    assert "weight must be > 0" in gomail("weight", "ses", "0", "-r", "x", code=2)
    assert "Invalid value" in gomail("disable", "postmark", "-r", "x", code=2)
    gomail("unpin", "-r", "drill over")
    gomail("force", "sendgrid", "auto", "-r", "vendor fixed")
    assert json.loads(gomail("list", "--json"))["pinned"] is None

    status = runner.invoke(cli, ["status", "--node", "http://127.0.0.1:1"], env=env)
    assert "controls: ses: disabled (by " in status.output
    assert "SES outage, case 42" in status.output


def test_controls_kept_in_memory_are_refused() -> None:
    done = CliRunner().invoke(
        cli,
        ["provider", "list"],
        env={"GOMAILPY_STATUS__BACKEND": "memory", "GOMAILPY_UP_STATE": "/nonexistent/up.json"},
    )
    assert done.exit_code == 2
    assert "status.backend: dynamodb" in done.output
