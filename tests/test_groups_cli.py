"""`gomail groups list|add|remove|suppress|unsuppress` against the shared status table (DynamoDB
on moto's server): the same groups the API's /asm/groups serves, the same suppression list the
pipeline's screen reads."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack

from click.testing import CliRunner

from gomailpy.config.settings import Settings
from gomailpy.store.backends import open_event_stores
from gomailpy_cli.main import cli
from tests.support import api_client, make_settings, table_cli_env


def gomail(env: dict[str, str], *args: str, code: int = 0) -> tuple[str, str]:
    done = CliRunner().invoke(cli, ["groups", *args], env=env)
    assert done.exit_code == code, done.output
    return done.stdout, done.stderr


def table_settings(sqs_endpoint: str, env: dict[str, str]) -> Settings:
    return make_settings(
        sqs_endpoint,
        api={"serve_webclient": False},
        status={
            "backend": "dynamodb",
            "endpoint_url": env["GOMAILPY_STATUS__ENDPOINT_URL"],
            "table": env["GOMAILPY_STATUS__TABLE"],
        },
    )


def test_operators_manage_groups_and_the_api_sees_them(
    moto_endpoint: str, sqs_endpoint: str
) -> None:
    env = table_cli_env(moto_endpoint)
    assert gomail(env, "add", "Newsletter", "--description", "Monthly <news> & more")[0] == (
        "group 1: Newsletter\n"
    )
    assert gomail(env, "add", "Offers", "--id", "7")[0] == "group 7: Offers\n"
    assert gomail(env, "add", "Product updates")[0] == "group 8: Product updates\n"
    out, err = gomail(env, "list")
    assert out.splitlines() == [
        "1  Newsletter  Monthly <news> & more",
        "7  Offers",
        "8  Product updates",
    ]
    assert "3 group(s)" in err
    assert gomail(env, "remove", "8")[0] == "removed group 8\n"
    assert "no group 8" in gomail(env, "remove", "8", code=1)[1]
    listed = [json.loads(line) for line in gomail(env, "list", "--json")[0].splitlines()]
    assert listed == [
        {"id": 1, "name": "Newsletter", "description": "Monthly <news> & more"},
        {"id": 7, "name": "Offers", "description": ""},
    ]

    async def through_the_api() -> list[dict[str, object]]:
        async with AsyncExitStack() as stack:
            client = await api_client(stack, table_settings(sqs_endpoint, env))
            answer = await client.get("/asm/groups")
            assert answer.status == 200
            groups: list[dict[str, object]] = (await answer.json())["groups"]
            return groups

    assert asyncio.run(through_the_api()) == listed


def test_a_group_suppression_from_the_command_line_is_the_lists(
    moto_endpoint: str, sqs_endpoint: str
) -> None:
    env = table_cli_env(moto_endpoint)
    out, _ = gomail(env, "suppress", "7", "Ann@Example.org", "bob@example.org", "--reason", "asked")
    assert out == "suppressed 2 address(es) for group 7\n"

    async def entries() -> tuple[object, object, object]:
        async with AsyncExitStack() as stack:
            store = (await open_event_stores(stack, table_settings(sqs_endpoint, env))).suppression
            assert store is not None
            grouped = await store.lookup_grouped([(7, "ann@example.org"), (3, "ann@example.org")])
            return (
                sorted(grouped),
                [e.reason for e in grouped.values()],
                await store.get("ann@example.org"),
            )

    pairs, reason, everything = asyncio.run(entries())
    assert pairs == [(7, "ann@example.org")] and reason == ["asked"]
    assert everything is None  # group 7 only: the rest of Ann's mail still goes
    out, err = gomail(env, "unsuppress", "7", "ann@example.org", "carol@example.org")
    assert out == "removed 1 address(es) from group 7\n"
    assert "not suppressed for group 7: carol@example.org" in err
    assert asyncio.run(entries())[0] == []


def test_bad_input_is_refused_with_a_message(moto_endpoint: str) -> None:
    env = table_cli_env(moto_endpoint)
    for args in (
        ("add", ""),
        ("add", "x" * 101),
        ("add", "ok", "--description", "d" * 251),
        ("add", "ok", "--id", "0"),
        ("add", "ok", "--id", str(2**32)),
        ("remove", "-1"),
        ("remove", "abc"),
        ("suppress", "7", "not-an-address"),
        ("suppress", "x", "a@example.org"),
    ):
        done = CliRunner().invoke(cli, ["groups", *args], env=env)
        assert done.exit_code == 2, (args, done.output)
        assert "Traceback" not in done.output and "Error" in done.output
    assert gomail(env, "list")[0] == ""


def test_a_table_kept_in_memory_is_refused() -> None:
    done = CliRunner().invoke(cli, ["groups", "list"], env={"GOMAILPY_STATUS__BACKEND": "memory"})
    assert done.exit_code == 2
    assert "status.backend: dynamodb" in done.output
