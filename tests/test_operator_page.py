"""The operator page (webclient/operator/, api.views.overview) in real headless Chromium, on the
real API and a real pipeline node (its admin server) over LocalStack's SQS.

The page asks for the API key, shows the providers as the node reports them, draws sends after
mail went through, and a disable with a reason reaches the controls store, with who and why, and
its table of recent changes (every value as text, never markup).
Waits are for outcomes (text, a drawn chart); no test asserts a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from api.app import create_app
from api.auth import hash_key
from api.views.controls import CONTROL_STORE
from gomailpy.config.settings import Settings
from gomailpy.operating.controls import ControlStore
from gomailpy.queues.sqs import create_queue_client
from gomailpy.store.items import MemoryItemTable
from pipeline.admin import start_admin
from pipeline.node import PipelineNode
from pipeline.steering import open_steering
from tests.boundary import ScriptedProvider
from tests.conftest import StartClient
from tests.support import StartServer, create_queues, email_request, merge
from tests.test_controls_nodes import until
from tests.test_pipeline import pipeline_settings
from tests.test_webclient import base_url, browser  # noqa: F401 (the Chromium fixture)

KEY = "operator-page-test-key"
PROVIDERS = ("ses", "sendgrid", "smtp")

expect.set_options(timeout=15_000)


def with_sections(settings: Settings, **sections: dict[str, Any]) -> Settings:
    return Settings.model_validate(merge(settings.model_dump(mode="python"), sections))


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:  # noqa: F811
    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    page = await context.new_page()
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    yield page
    await context.close()
    assert not script_errors, f"JavaScript errors on the page: {script_errors}"


async def test_the_page_shows_providers_charts_sends_and_disables_with_a_reason(
    sqs_endpoint: str, page: Page, start_server: StartServer
) -> None:
    base = pipeline_settings(sqs_endpoint, min_iteration_duration_s=0.01)
    base = with_sections(base, steering={"controls_poll_s": 0.2})
    await create_queues(base)
    store = ControlStore(MemoryItemTable())  # the API's and the node's, as the status table is
    providers = {name: ScriptedProvider(name) for name in PROVIDERS}
    async with AsyncExitStack() as stack:
        queues = await stack.enter_async_context(create_queue_client(base))
        node = await stack.enter_async_context(PipelineNode(base, queues, providers))
        poller = await open_steering(stack, base, node, store)
        port = await start_admin(stack, node, "127.0.0.1", 0)
        run = asyncio.create_task(node.run())
        settings = with_sections(
            base,
            api={"api_key_hashes": [hash_key(KEY)]},
            operator={"node_admin_urls": [f"http://127.0.0.1:{port}"]},
        )
        app = create_app(settings)
        app[CONTROL_STORE] = store
        api = await start_server(app)
        url = base_url(api)

        await page.goto(url + "/operator?every=300")
        await expect(page.get_by_text("An API key is needed.")).to_be_visible()
        await page.get_by_label("API key").fill(KEY)
        await page.get_by_role("button", name="Use key").click()
        for name in PROVIDERS:
            card = page.locator(f"[data-provider={name}]")
            await expect(card.locator("[data-field=state]")).to_have_text("healthy")
        await expect(page.locator("#queues tr")).to_have_count(2)

        async with aiohttp.ClientSession() as client:
            for n in range(30):
                answer = await client.post(
                    url + "/email/send", json=email_request(n), headers={"X-Api-Key": KEY}
                )
                assert answer.status == 200, await answer.text()
        await until(lambda: sum(len(p.accepted) for p in providers.values()) == 30, "all sent")
        # Charts: the accepted rate and some provider's sent rate drawn above zero.
        await page.wait_for_function(
            "Number(document.querySelector('[data-chart=accepted]').dataset.max) > 0"
        )
        await page.wait_for_function(
            "[...document.querySelectorAll('[data-chart^=sent-]')]"
            ".some((svg) => Number(svg.dataset.max) > 0)"
        )
        assert await page.locator("[data-chart=accepted] polyline").count() == 1

        ses = page.locator("[data-provider=ses]")
        await ses.get_by_role("button", name="Disable").click()
        await expect(ses.locator("[data-field=message]")).to_have_text(
            "Give a reason: it is recorded with the change."
        )
        assert not (await store.load()).of("ses").disabled
        await ses.get_by_label("Reason (required)").fill("SES outage drill")
        await ses.get_by_role("button", name="Disable").click()
        await expect(ses.locator("[data-field=state]")).to_have_text("disabled")
        await expect(ses.locator("[data-field=controls]")).to_contain_text("SES outage drill")

        control = (await store.load()).of("ses")
        assert control.disabled
        assert control.changed.reason == "SES outage drill"
        assert control.changed.by == f"key {hash_key(KEY)[:12]}"
        await until(lambda: poller.steering.controls.of("ses").disabled, "the node applies it")

        # The table of recent changes: who, what, before -> after, why; every value as text.
        newest = page.locator("#history tr").first
        await expect(newest).to_contain_text("SES outage drill")
        await expect(newest).to_contain_text(f"key {hash_key(KEY)[:12]}")
        await expect(newest).to_contain_text("ses disable")
        await expect(newest).to_contain_text("as configured → disabled")
        markup = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
        await store.change("smtp", "weight", 2, who="<b>mallory</b>", why=markup)
        await expect(page.locator("#history tr").first).to_contain_text(markup)
        await expect(page.locator("#history tr").first).to_contain_text("<b>mallory</b>")
        assert await page.locator("#history img, #history script, #history b").count() == 0
        assert await page.evaluate("window.__xss") is None
        await expect(page.locator("#history tr")).to_have_count(2)

        node.stop()
        await run


async def test_overview_and_local_controls_over_http(
    settings: Settings, start_client: StartClient
) -> None:
    await create_queues(settings)
    closed = await start_client(create_app(settings))
    overview = await closed.get("/admin/overview")
    assert overview.status == 200
    data = await overview.json()
    assert [queue["name"] for queue in data["queues"]] == settings.queues.urls
    assert set(data["providers"]) == set(PROVIDERS)
    assert data["nodes"] == [] and data["local_controls"] is False
    refused = await closed.post("/admin/providers/ses/disable", json={"reason": "no keys"})
    assert refused.status == 403  # an open API does not steer

    local = await start_client(
        create_app(with_sections(settings, operator={"local_controls": True}))
    )
    changed = await local.post("/admin/providers/smtp/disable", json={"reason": "local drill"})
    assert changed.status == 200, await changed.text()
    assert (await changed.json())["providers"]["smtp"]["changed"]["by"] == "key local-operator"
    history = (await (await local.get("/admin/overview")).json())["history"]
    assert [(e["by"], e["provider"], e["action"]) for e in history] == [
        ("key local-operator", "smtp", "disable")
    ]
    assert (history[0]["before"], history[0]["after"]) == ("as configured", "disabled")
    page = await local.get("/operator")
    assert page.status == 200 and "Operator" in await page.text()
    down = await local.get("/admin/overview")
    assert (await down.json())["local_controls"] is True
