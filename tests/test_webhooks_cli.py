"""`gomail webhooks add` refuses private targets and prints a secret once; `gomail webhooks
test` sends one signed request that a `standardwebhooks` receiver verifies."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from gomailpy.config.webhooks import secret_key
from gomailpy.operating.up_state import STATE_ENV
from gomailpy.webhooks.signing import new_secret
from gomailpy_cli.main import cli
from gomailpy_local.receiver import WebhookReceiver


def test_add_refuses_private_targets_and_prints_a_fresh_secret(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {STATE_ENV: str(tmp_path / "none.json")}
    refused = runner.invoke(cli, ["webhooks", "add", "app", "http://169.254.169.254/x"], env=env)
    assert refused.exit_code != 0 and "cloud metadata service" in refused.output
    added = runner.invoke(
        cli,
        ["webhooks", "add", "app", "https://93.184.216.34/hooks", "--event", "bounced"],
        env=env,
    )
    assert added.exit_code == 0, added.output
    line = next(x for x in added.output.splitlines() if "GOMAILPY_WEBHOOKS__SECRETS=" in x)
    secret = json.loads(line.split("=", 1)[1].strip("'"))["app"]
    assert len(secret_key(secret)) == 32
    assert '"events": ["bounced"]' in added.output


async def test_test_sends_one_signed_request_the_receiver_verifies(tmp_path: Path) -> None:
    async with WebhookReceiver(new_secret()) as receiver:
        config = tmp_path / "c.yaml"
        config.write_text(
            "webhooks:\n  enabled: true\n  allow_loopback_targets: true\n"
            f"  endpoints: [{{name: local, url: '{receiver.url}'}}]\n"
        )
        env = {
            STATE_ENV: str(tmp_path / "none.json"),
            "GOMAILPY_WEBHOOKS__SECRETS": json.dumps({"local": receiver.secret}),
        }
        args = ["webhooks", "test", "local", "--config", str(config)]
        done = await asyncio.to_thread(CliRunner().invoke, cli, args, env=env)
        assert done.exit_code == 0, done.output
        assert "HTTP 204" in done.output and "delivered" in done.output
        assert [e["type"] for e in receiver.events] == ["webhook.test"]
        assert receiver.unverified == 0
        receiver.mode = "gone"
        done = await asyncio.to_thread(CliRunner().invoke, cli, args, env=env)
        assert done.exit_code == 1 and "gone: HTTP 410" in done.output
