"""The controls' history (gomailpy.operating.controls): every change appended as an item of its own,
with the state before and after and who made it, never overwritten; on both stores (this process's
memory, and DynamoDB on moto's server), and through `gomail provider history`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from click.testing import CliRunner

from gomailpy.operating.controls import ControlStore
from gomailpy.operating.resources import ensure_resources
from gomailpy.store.items import DynamoItemTable, ItemTable, MemoryItemTable
from gomailpy_cli.main import cli
from tests.support import make_settings, table_cli_env, unique


@pytest.fixture(params=["memory", "dynamodb"])
async def table(request: pytest.FixtureRequest) -> AsyncIterator[ItemTable]:
    if request.param == "memory":
        yield MemoryItemTable()
        return
    endpoint: str = request.getfixturevalue("moto_endpoint")
    settings = make_settings(
        "http://127.0.0.1:1",
        status={"backend": "dynamodb", "endpoint_url": endpoint, "table": unique("table")},
    )
    await ensure_resources(settings)
    async with AsyncExitStack() as stack:
        yield await stack.enter_async_context(DynamoItemTable(settings))


async def test_each_change_appends_an_entry_and_none_is_overwritten(table: ItemTable) -> None:
    now = [1_800_000_000.0]
    store = ControlStore(table, clock=lambda: now[0])
    for who, action, value, why in [
        ("alice", "disable", None, "SES outage, case 42"),
        ("bob", "weight", 3, "half the traffic back"),
        ("alice", "enable", None, "SES is back"),
    ]:
        now[0] += 1
        await store.change("ses", action, value, who=who, why=why)
    await store.change("smtp", "pin", who="carol", why="drill")

    entries = await store.history("ses")
    assert [(e.seq, e.by, e.action, e.before, e.after, e.reason) for e in entries] == [
        (3, "alice", "enable", "disabled, weight 3", "weight 3", "SES is back"),
        (2, "bob", "weight", "disabled", "disabled, weight 3", "half the traffic back"),
        (1, "alice", "disable", "as configured", "disabled", "SES outage, case 42"),
    ]
    assert [e.at for e in entries] == [1_800_000_003.0, 1_800_000_002.0, 1_800_000_001.0]
    assert [e.seq for e in await store.history()] == [4, 3, 2, 1]
    # The last-change record on the control is overwritten, the entries are not.
    assert (await store.load()).of("ses").changed.by == "alice"
    first = await table.get("ctlh#000000000001")
    assert first is not None and json.loads(str(first["h"]))["reason"] == "SES outage, case 42"
    assert not await table.put_new("ctlh#000000000001", {"h": "{}"})
    assert await table.get("ctlh#000000000001") == first

    # A counter set back (by hand, a restore): new changes skip the numbers taken.
    await table.put("ctlh#seq", {"n": 1.0})
    await store.change("ses", "disable", who="dave", why="again")
    assert await table.get("ctlh#000000000002") is not None
    assert [(e.seq, e.by) for e in await store.history(limit=2)] == [(5, "dave"), (4, "carol")]
    assert (await table.get("ctlh#000000000001")) == first


async def test_history_of_one_provider_looks_past_the_others_and_appends_never_collide(
    table: ItemTable,
) -> None:
    store = ControlStore(table, clock=lambda: 1_800_000_000.0)
    await store.change("ses", "disable", who="alice", why="the oldest")
    # More than one read's worth of entries about another provider, made at once: each gets a
    # number of its own (the counter is atomic), none overwrites another.
    await asyncio.gather(
        *(store.change("smtp", "weight", n + 1, who="bot", why=f"step {n}") for n in range(105))
    )
    found = await store.history("ses")
    assert [(e.seq, e.reason) for e in found] == [(1, "the oldest")]
    latest = await store.history(limit=1000)
    assert [e.seq for e in latest] == list(range(106, 0, -1))
    assert {e.reason for e in latest[:-1]} == {f"step {n}" for n in range(105)}


def test_gomail_provider_history(moto_endpoint: str) -> None:
    env = {**table_cli_env(moto_endpoint), "GOMAILPY_UP_STATE": "/nonexistent/up.json"}
    runner = CliRunner()

    def gomail(*args: str, code: int = 0) -> str:
        done = runner.invoke(cli, ["provider", *args], env=env)
        assert done.exit_code == code, done.output
        return done.output

    assert gomail("history") == "no change recorded\n"
    gomail("disable", "ses", "-r", "SES outage, case 42")
    gomail("weight", "ses", "2", "-r", "half back")
    gomail("pin", "smtp", "-r", "drill")
    gomail("force", "sendgrid", "open", "-r", "vendor incident, case 43")

    lines = gomail("history").splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("#4 ")
    assert "(cli)  sendgrid force open: as configured -> forced open  (vendor incident" in lines[0]
    assert "pin smtp: not pinned -> pinned to smtp  (drill)" in lines[1]
    assert "ses weight 2: disabled -> disabled, weight 2  (half back)" in lines[2]
    assert "ses disable: as configured -> disabled  (SES outage, case 42)" in lines[3]

    only_ses = gomail("history", "ses", "--limit", "1").splitlines()
    assert len(only_ses) == 1 and "ses weight 2" in only_ses[0]
    entries = [json.loads(line) for line in gomail("history", "--json").splitlines()]
    assert [e["seq"] for e in entries] == [4, 3, 2, 1]
    assert entries[0]["action"] == "force" and entries[0]["by"].endswith("(cli)")
    assert "Invalid value" in gomail("history", "postmark", code=2)
    assert "Invalid value" in gomail("history", "--limit", "0", code=2)


def test_gomail_provider_release_is_recorded_in_the_history(moto_endpoint: str) -> None:
    env = {**table_cli_env(moto_endpoint), "GOMAILPY_UP_STATE": "/nonexistent/up.json"}
    runner = CliRunner()

    def gomail(*args: str, code: int = 0) -> str:
        done = runner.invoke(cli, ["provider", *args], env=env)
        assert done.exit_code == code, done.output
        return done.output

    assert "Missing option '--reason'" in gomail("release", "ses", code=2)
    gomail("release", "sendgrid", "-r", "list cleaned, case 43")
    assert json.loads(gomail("list", "--json"))["providers"]["sendgrid"]["released_at"] > 0
    [line] = gomail("history", "sendgrid").splitlines()
    assert "(cli)  sendgrid release: as configured -> as configured  (list cleaned" in line
