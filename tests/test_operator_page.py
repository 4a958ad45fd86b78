"""The operator page (webclient/operator/, api.views.overview) in real headless Chromium, on the
real API and a real pipeline node (its admin server) over LocalStack's SQS.

The page asks for the API key, shows the providers as the node reports them, draws sends after
mail went through, and a disable with a reason reaches the controls store, with who and why, and
its table of recent changes (every value as text, never markup).
Waits are for outcomes (text, a drawn chart); no test asserts a time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from api.app import create_app
from api.auth import hash_key
from api.views.controls import CONTROL_STORE
from gomailpy.bulk.tokens import Kind, Link, sign
from gomailpy.config.settings import Settings
from gomailpy.metrics import sample
from gomailpy.operating.controls import ControlStore
from gomailpy.queues.sqs import create_queue_client
from gomailpy.store.deliveries import MemoryDeliveryStore
from gomailpy.store.events import MemoryEventStore
from gomailpy.store.items import MemoryItemTable
from pipeline.admin import start_admin
from pipeline.feedback import EventConsumer
from pipeline.node import PipelineNode
from pipeline.steering import open_steering
from tests.boundary import ScriptedProvider
from tests.bulk_support import PUBLIC, SECRET
from tests.conftest import StartClient
from tests.support import StartServer, create_queues, email_request, merge, unique
from tests.test_controls_nodes import until
from tests.test_pipeline import pipeline_settings
from tests.test_webclient import base_url

KEY = "operator-page-test-key"
PROVIDERS = ("ses", "sendgrid", "smtp")
DATA = Path(__file__).parent / "data"

expect.set_options(timeout=15_000)


def with_sections(settings: Settings, **sections: dict[str, Any]) -> Settings:
    return Settings.model_validate(merge(settings.model_dump(mode="python"), sections))


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
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


async def test_the_page_shows_open_click_unsubscribe_and_complaint_rates_per_provider(
    sqs_endpoint: str, page: Page, start_server: StartServer
) -> None:
    """Real hits on the API's tracking and unsubscribe links, and SendGrid's documented events,
    through the events queue and a node's event consumer, to the rates on the page."""
    relay, sendgrid = unique("relay"), unique("sg")  # counters of their own
    base = pipeline_settings(sqs_endpoint, min_iteration_duration_s=0.01)
    base = with_sections(
        base,
        providers=[  # type: ignore[arg-type]
            {"name": relay, "kind": "smtp", "enabled": True},
            {"name": sendgrid, "kind": "sendgrid", "enabled": True},
        ],
        events={"enabled": True, "queue": unique("events")},
        bulk={"secret": SECRET, "public_url": PUBLIC, "flush_interval_s": 0.1},
    )
    await create_queues(base)
    providers = {name: ScriptedProvider(name) for name in (relay, sendgrid)}
    status = MemoryDeliveryStore(base.status)
    async with AsyncExitStack() as stack:
        queues = await stack.enter_async_context(create_queue_client(base))
        events_url = await queues.ensure_queue(base.events.queue)
        node = await stack.enter_async_context(PipelineNode(base, queues, providers, status=status))
        await stack.enter_async_context(
            EventConsumer(base, queues, outcomes=MemoryEventStore(), suppression=None,
                          deliveries=status)
        )  # fmt: skip
        port = await start_admin(stack, node, "127.0.0.1", 0)
        run = asyncio.create_task(node.run())
        settings = with_sections(
            base,
            api={"api_key_hashes": [hash_key(KEY)]},
            operator={"node_admin_urls": [f"http://127.0.0.1:{port}"]},
        )
        api = await start_server(create_app(settings))
        url = base_url(api)
        auth = {"X-Api-Key": KEY}

        async with aiohttp.ClientSession() as client:
            for n in range(30):
                answer = await client.post(url + "/email/send", json=email_request(n), headers=auth)
                assert answer.status == 200, await answer.text()
            await until(lambda: sum(len(p.accepted) for p in providers.values()) == 30, "sent")
            by_relay, by_sendgrid = providers[relay].accepted, providers[sendgrid].accepted
            assert len(by_relay) >= 3 and by_sendgrid, "both providers carried mail"

            # The relay's mail: gomailpy's own links, hit as a reader and a proxy would.
            key = SECRET.encode()
            person = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0"}
            proxy = {"User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"}

            def token(kind: Kind, message_id: str, link: str = "") -> str:
                sent_at = time.time() - 3600  # read an hour after it was sent: by a person
                return sign(Link(kind, message_id, "to@example.com", url=link), key, sent_at)

            for message_id, headers in (
                (by_relay[0], person),
                (by_relay[1], person),
                (by_relay[2], proxy),
            ):
                hit = await client.get(f"{url}/t/o/{token(Kind.OPEN, message_id)}", headers=headers)
                assert hit.status == 200
            click = token(Kind.CLICK, by_relay[0], "https://example.org/offer")
            hit = await client.get(f"{url}/t/c/{click}", headers=person, allow_redirects=False)
            assert hit.status == 302 and hit.headers["Location"] == "https://example.org/offer"
            gone = await client.post(
                f"{url}/u/{token(Kind.UNSUBSCRIBE, by_relay[1])}",
                data="List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert gone.status == 200, await gone.text()

        # SendGrid's mail: its documented open and spam report, as its webhook route queues them.
        documented = json.loads((DATA / "sendgrid" / "event_webhook_examples.json").read_text())
        reported = []
        for entry in documented["all_events"]:
            if entry["event"] in ("open", "spamreport"):
                args = {"gomailpy_id": by_sendgrid[0], "gomailpy_provider": sendgrid}
                reported.append({**entry, **args, "sg_event_id": unique("sg")})
        assert [e["event"] for e in reported] == ["open", "spamreport"]
        await queues.send(events_url, json.dumps({"source": "sendgrid", "events": reported}))

        def counted(name: str, kind: str, machine: str = "false") -> float:
            labels = {"provider": name, "type": kind, "machine": machine}
            return sample("gomailpy_engagement_events_total", labels)

        await until(
            lambda: counted(relay, "opened") == 2 and counted(relay, "unsubscribed") == 1
            and counted(sendgrid, "complained") == 1,
            "the events are counted",
        )  # fmt: skip

        await page.goto(url + "/operator?every=300")
        await page.get_by_label("API key").fill(KEY)
        await page.get_by_role("button", name="Use key").click()
        sent = len(by_relay)
        row = page.locator(f"#engagement tr[data-provider={relay}]")
        await expect(row.locator("td").nth(1)).to_have_text(str(sent))
        expected = {
            "opened": 2,
            "clicked": 1,
            "unsubscribed": 1,
            "complained": 0,
            "opened_machine": 1,
            "clicked_machine": 0,
        }
        for field, count in expected.items():
            await expect(row.locator(f"[data-field={field}]")).to_have_text(
                f"{count / sent * 100:.2f}% ({count})"
            )
        other = page.locator(f"#engagement tr[data-provider={sendgrid}]")
        for field, count in (("opened", 1), ("complained", 1), ("unsubscribed", 0)):
            await expect(other.locator(f"[data-field={field}]")).to_have_text(
                f"{count / len(by_sendgrid) * 100:.2f}% ({count})"
            )

        async with aiohttp.ClientSession() as client:
            overview = await (await client.get(url + "/admin/overview", headers=auth)).json()
        mine = overview["providers"][relay]
        assert mine["engagement"] == {k: float(v) for k, v in expected.items()}
        assert mine["rates"]["opened"] == 2 / sent

        node.stop()
        await run
