"""`gomail suppression list|add|remove|import|export` against the shared list (DynamoDB on
moto's server)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from gomailpy_cli.main import cli
from tests.support import table_cli_env


def test_operators_manage_the_list_from_the_command_line(
    moto_endpoint: str, tmp_path: Path
) -> None:
    env = table_cli_env(moto_endpoint)
    runner = CliRunner()

    def gomail(*args: str, stdin: str | None = None) -> str:
        done = runner.invoke(cli, ["suppression", *args], env=env, input=stdin)
        assert done.exit_code == 0, done.output
        return done.stdout

    assert "suppressed 2" in gomail("add", "A@example.org", "b@example.org", "--reason", "asked")
    imported = gomail(
        "import", "-", stdin="address,reason\nc@example.org,bounced elsewhere\nd@example.org\n"
    )
    assert "imported 2" in imported
    listed = gomail("list")
    assert "a@example.org  manual" in listed and "bounced elsewhere" in listed
    assert "removed 1" in gomail("remove", "b@example.org")
    exported = tmp_path / "list.jsonl"
    gomail("export", str(exported))
    entries = [json.loads(line) for line in exported.read_text().splitlines()]
    assert sorted(e["address"] for e in entries) == [
        "a@example.org",
        "c@example.org",
        "d@example.org",
    ]
    gomail("remove", "a@example.org", "c@example.org", "d@example.org")
    assert "imported 3" in gomail("import", str(exported))  # an export loads as it is
    assert len(gomail("list", "--json").splitlines()) == 3


def test_a_list_kept_in_memory_is_refused(tmp_path: Path) -> None:
    done = CliRunner().invoke(
        cli, ["suppression", "list"], env={"GOMAILPY_STATUS__BACKEND": "memory"}
    )
    assert done.exit_code == 2
    assert "status.backend: dynamodb" in done.output
