"""Stored templates: rendering (pure), the API and CLI that manage them, and rendering in the
pipeline, once, at send time (SQS on LocalStack, the status table on moto's DynamoDB, the real
API and node; the provider scripted at the boundary)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from api.auth import hash_key
from gomailpy.config.settings import Settings
from gomailpy.email.envelope import Envelope
from gomailpy.email.templates import Template, check_template, render
from gomailpy.operating.resources import ensure_resources
from gomailpy.providers.base import SendResult
from gomailpy.queues.sqs import create_queue_client
from gomailpy.store.deliveries import open_delivery_store
from gomailpy.store.items import MemoryItemTable, open_item_table
from gomailpy.store.templates import TemplateStore
from gomailpy_cli.main import cli
from pipeline.node import PipelineNode
from pipeline.steps import create_steps
from tests.boundary import ScriptedProvider
from tests.support import (
    Client,
    api_client,
    create_queues,
    make_settings,
    queue_totals,
    unique,
)

KEY = "tpl-key-" + "k" * 40
AUTH = {"Authorization": f"Bearer {KEY}"}


class RecordingProvider(ScriptedProvider):
    """Keeps every envelope it accepted, to look at what was rendered."""

    def __init__(self) -> None:
        super().__init__("rec")
        self.envelopes: list[Envelope] = []

    async def send(self, envelope: Envelope) -> SendResult:
        result = await super().send(envelope)
        if result.ok:
            self.envelopes.append(envelope)
        return result


def table_settings(sqs: str, moto: str, **extra: Any) -> Settings:
    return make_settings(
        sqs,
        queue_count=1,
        queues={"visibility_timeout_s": 10, "wait_time_s": 1, "max_receive_count": 50},
        pipeline={"retry_base_delay_s": 0, "retry_max_delay_s": 0, "min_iteration_duration_s": 0},
        api={"serve_webclient": False, "api_key_hashes": [hash_key(KEY)]},
        status={"backend": "dynamodb", "table": unique("status"), "endpoint_url": moto},
        **extra,
    )


@pytest.fixture
async def settings(sqs_endpoint: str, moto_endpoint: str) -> Settings:
    settings = table_settings(sqs_endpoint, moto_endpoint)
    await create_queues(settings)
    await ensure_resources(settings)
    return settings


async def start_node(
    stack: AsyncExitStack, settings: Settings, provider: ScriptedProvider
) -> PipelineNode:
    """A node as `pipeline` runs it: scheduled sends held, templates rendered."""
    queues = await stack.enter_async_context(create_queue_client(settings))
    status = await open_delivery_store(stack, settings)
    table = await open_item_table(stack, settings)
    node = PipelineNode(settings, queues, {provider.name: provider}, status=status)
    node.steps = create_steps(settings, queues, table=table, status=status)
    await stack.enter_async_context(node)
    return node


async def send_templated(client: Client, template_id: str, data: dict[str, Any]) -> str:
    body = {
        "email": {
            "fromEmail": "sender@example.com",
            "toEmail": "ada@example.org",
            "templateId": template_id,
            "templateData": data,
        }
    }
    response = await client.post("/email/send", json=body, headers=AUTH)
    assert response.status == 200, await response.text()
    message_id: str = (await response.json())["messageId"]
    return message_id


# -- rendering -----------------------------------------------------------------------------------


def test_html_is_escaped_and_subject_and_text_are_plain() -> None:
    template = Template(
        "welcome",
        subject="Hi {{name}}",
        html="<p>{{name}}</p>{{#if vip}}<b>VIP</b>{{/if}}{{{raw}}}",
        text="Dear {{name}}:{{#each items}} {{this}}{{/each}}",
    )
    assert check_template(template) == []
    parts = render(template, {"name": "<Ada & Co>", "vip": "", "raw": "<i>x</i>", "items": ["a"]})
    assert parts.subject == "Hi <Ada & Co>"
    assert parts.html == "<p>&lt;Ada &amp; Co&gt;</p><i>x</i>"
    assert parts.text == "Dear <Ada & Co>: a"


def test_a_template_that_does_not_compile_is_refused_with_its_part() -> None:
    [problem] = check_template(Template("bad", html="{{/if}}"))
    assert problem.startswith("html: does not compile")


async def test_the_store_keeps_lists_and_deletes() -> None:
    store = TemplateStore(MemoryItemTable())
    await store.put(Template("b", text="B"))
    await store.put(Template("a", subject="A"))
    assert await store.list_ids() == ["a", "b"]
    found = await store.get("a")
    assert found is not None and found.subject == "A" and found.updated_at > 0
    assert await store.delete("a") and not await store.delete("a")
    assert await store.list_ids() == ["b"]


# -- the API and the CLI -------------------------------------------------------------------------


async def test_templates_api_needs_a_key_and_refuses_what_does_not_compile(
    settings: Settings, stack: AsyncExitStack
) -> None:
    client = await api_client(stack, settings)
    template = {"subject": "Hi {{name}}", "html": "<p>{{name}}</p>"}
    assert (await client.put("/templates/welcome", json=template)).status == 401
    put = await client.put("/templates/welcome", json=template, headers=AUTH)
    assert put.status == 200, await put.text()
    got = await (await client.get("/templates/welcome", headers=AUTH)).json()
    assert (got["id"], got["subject"]) == ("welcome", "Hi {{name}}")
    assert (await (await client.get("/templates", headers=AUTH)).json()) == {
        "templates": ["welcome"]
    }
    bad = await client.put("/templates/bad", json={"html": "{{/if}}"}, headers=AUTH)
    assert bad.status == 422 and "does not compile" in (await bad.json())["errors"]["html"]
    unknown = await client.put("/templates/bad", json={"body": "x"}, headers=AUTH)
    assert unknown.status == 422 and "body" in (await unknown.json())["errors"]
    assert (await client.delete("/templates/welcome", headers=AUTH)).status == 204
    assert (await client.get("/templates/welcome", headers=AUTH)).status == 404
    missing = await send_missing(client)
    assert missing.status == 422 and "templateId" in (await missing.json())["errors"]


async def send_missing(client: Client) -> Any:
    body = {"email": {"fromEmail": "a@example.com", "toEmail": "b@example.org", "templateId": "no"}}
    return await client.post("/email/send", json=body, headers=AUTH)


def test_cli_puts_gets_lists_and_deletes(settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "gomailpy.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude_none=True)))
    html = tmp_path / "welcome.html"
    html.write_text("<p>{{name}}</p>")
    runner = CliRunner()
    base = ["templates"]
    put = runner.invoke(
        cli,
        [*base, "put", "welcome", "-c", str(config), "--subject", "Hi", "--html-file", str(html)],
    )
    assert put.exit_code == 0, put.output
    listed = runner.invoke(cli, [*base, "list", "-c", str(config)])
    assert listed.output.split() == ["welcome"]
    got = runner.invoke(cli, [*base, "get", "welcome", "-c", str(config)])
    assert '"html": "<p>{{name}}</p>"' in got.output
    assert runner.invoke(cli, [*base, "delete", "welcome", "-c", str(config)]).exit_code == 0
    assert runner.invoke(cli, [*base, "get", "welcome", "-c", str(config)]).exit_code == 1
    bad = runner.invoke(cli, [*base, "put", "bad", "-c", str(config), "--html", "{{/if}}"])
    assert bad.exit_code == 1 and "does not compile" in bad.output


# -- rendering in the pipeline -------------------------------------------------------------------


async def run_until(node: PipelineNode, done: Any, limit: int = 30) -> None:
    for _ in range(limit):
        await node.run_iteration()
        if await done():
            return
    raise AssertionError("the pipeline did not get there")


async def test_the_node_renders_the_template_as_it_is_when_the_email_is_sent(
    settings: Settings, stack: AsyncExitStack
) -> None:
    client = await api_client(stack, settings)
    first = {"subject": "Old {{name}}", "html": "<p>old</p>"}
    assert (await client.put("/templates/welcome", json=first, headers=AUTH)).status == 200
    message_id = await send_templated(client, "welcome", {"name": "<Ada>"})
    # Edited after the email was queued, before it was sent: the edit applies.
    edited = {
        "subject": "Welcome, {{name}}",
        "html": "<p>Hello {{name}}</p>",
        "text": "Hi {{name}}",
    }
    assert (await client.put("/templates/welcome", json=edited, headers=AUTH)).status == 200
    provider = RecordingProvider()
    node = await start_node(stack, settings, provider)

    async def sent() -> bool:
        return bool(provider.envelopes)

    await run_until(node, sent)
    [envelope] = provider.envelopes
    assert envelope.id == message_id
    email = envelope.email
    assert email.subject == "Welcome, <Ada>"
    assert email.html == "<p>Hello &lt;Ada&gt;</p>"
    assert email.text == "Hi <Ada>"
    assert email.template is None


async def test_a_missing_template_fails_for_good_without_a_send(
    settings: Settings, stack: AsyncExitStack
) -> None:
    client = await api_client(stack, settings)
    await client.put("/templates/gone", json={"html": "<p>{{name}}</p>"}, headers=AUTH)
    await client.put("/templates/broken", json={"html": "{{nohelper 1 2}}"}, headers=AUTH)
    gone = await send_templated(client, "gone", {"name": "x"})
    broken = await send_templated(client, "broken", {})
    assert (await client.delete("/templates/gone", headers=AUTH)).status == 204
    provider = RecordingProvider()
    node = await start_node(stack, settings, provider)
    name = settings.queues.urls[0]

    async def dead_lettered() -> bool:
        totals = await queue_totals(settings)
        return totals[name + "-dlq"] == 2 and totals[name] == 0

    await run_until(node, dead_lettered)
    assert provider.attempts == {}  # never offered to a provider, never retried
    reasons = {}
    for message_id in (gone, broken):
        answer = await (await client.get(f"/email/{message_id}", headers=AUTH)).json()
        assert answer["state"] == "failed", answer
        reasons[message_id] = answer["reason"]
    assert "'gone' does not exist" in reasons[gone]
    assert "'broken': html failed to render" in reasons[broken]
