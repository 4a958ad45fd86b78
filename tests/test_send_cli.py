"""`gomail send`'s options, read by click alone (no API is reached: the value is refused first)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gomailpy_cli.main import cli


@pytest.mark.parametrize("option", ["--concurrency", "-c"])
def test_a_concurrency_below_one_is_refused_naming_the_option(option: str) -> None:
    # -c is what issue 27's load command types (`gomail send --count 3000 -c 64`)
    done = CliRunner().invoke(cli, ["send", "--api", "http://127.0.0.1:9", option, "0"])
    assert done.exit_code == 2
    assert "Invalid value for '--concurrency' / '-c'" in done.output
    assert "Traceback" not in done.output
