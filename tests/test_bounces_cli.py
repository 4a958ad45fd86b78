"""`gomail bounces read FILE…`: how gomailpy reads bounce messages, one JSON line per event, with
no queue, store or listener (click's CliRunner, no I/O beyond the sample files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from gomailpy_cli.main import cli

SAMPLES = Path(__file__).parent / "data" / "bounces"
KEYS = {"file", "recipient", "type", "subtype", "reason", "status", "diagnostic", "messageId"}


def read(*args: str, stdin: bytes | None = None) -> tuple[int, list[dict[str, Any]], str]:
    done = CliRunner().invoke(cli, ["bounces", "read", *args], input=stdin)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return done.exit_code, lines, done.stderr


def test_each_event_of_each_message_is_a_json_line() -> None:
    hard, blocked, ooo, flufl = (
        str(SAMPLES / "postfix-hard.eml"),
        str(SAMPLES / "real" / "rhost-microsoft-01.eml"),
        str(SAMPLES / "autoreply.eml"),
        str(SAMPLES / "flufl" / "qmail_03.txt"),
    )
    code, lines, _ = read(hard, blocked, ooo, flufl)
    assert code == 0
    assert all(set(line) == KEYS for line in lines)
    summary = [
        (line["file"], line["recipient"], line["type"], line["subtype"], line["reason"])
        for line in lines
    ]
    assert summary == [
        (hard, "nobody@example.org", "bounced", "hard", "userunknown"),
        (hard, "full@example.org", "bounced", "soft", "mailboxfull"),
        (blocked, "kijitora@example.com", "blocked", "soft", "blocked"),
        (ooo, "someone@example.org", "autoresponded", None, "autoreply"),
        (flufl, "userx@example.jp", "bounced", "hard", "userunknown"),
    ]
    first = lines[0]
    assert (first["status"], first["messageId"]) == (
        "5.1.1",
        "5f0c1a2e-7b7d-4a57-9a0e-3c2d1b0a9f88",
    )
    assert first["diagnostic"].startswith("550 5.1.1 <nobody@example.org>")


def test_a_deferral_is_soft_and_standard_input_reads() -> None:
    data = (SAMPLES / "postfix-delayed.eml").read_bytes()
    code, [line], _ = read("-", stdin=data)
    assert code == 0
    assert (line["file"], line["type"], line["subtype"]) == ("-", "deferred", "soft")
    assert line["reason"] == "expired" and line["status"] == "4.4.1"


def test_what_cannot_be_read_exits_1_after_reading_the_rest(tmp_path: Path) -> None:
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    code, lines, err = read(
        str(empty), str(tmp_path / "missing.eml"), str(SAMPLES / "arf-complaint.eml")
    )
    assert code == 1
    assert [line["type"] for line in lines] == ["complained"]
    assert "empty.eml: `message` is not an email" in err and "missing.eml" in err
