"""The web form (webclient/) end to end: real headless Chromium, the real API, the real SQS server.

Chromium is Debian's package (/usr/bin/chromium; scripts/setup.sh installs it), driven by
Playwright's async API from inside the test's event loop, so the API (aiohttp's TestServer) and the
browser share one loop. What each test asserts is what a person sees (text beside a field, the
alert, the status line) and what reached the queues.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, Request, Route, expect

from api.app import create_app
from gomailpy.config.settings import Settings
from gomailpy.email.envelope import Envelope
from gomailpy.email.models import normalize_address, parse_send_request
from gomailpy.errors import InvalidEmailError
from gomailpy.queues.sqs import create_queue_client
from gomailpy_local.localstack import free_port
from tests.support import StartServer, create_queues, make_settings

ROOT = Path(__file__).resolve().parent.parent
WEBCLIENT = ROOT / "webclient"
FIELDS = ["fromEmail", "fromName", "toEmail", "toName", "subject", "body"]
LABELS = {
    "fromEmail": "From email",
    "fromName": "From name",
    "toEmail": "To email",
    "toName": "To name",
    "subject": "Subject",
    "body": "Body",
}
VALID = {
    "fromEmail": "Ada.Lovelace@Example.ORG",  # upper case: valid (gomail refused it)
    "fromName": "Ada Lovelace",
    "toEmail": "zoë@bücher.example",  # internationalised: valid, and sent as typed
    "toName": "Zoë Bücher",
    "subject": "Notes on the Analytical Engine",
    "body": "Dear Zoë,\n\nthe notes are ready.\n\nAda",
}

# The page answers within the API's time; allow for a slow, shared machine.
expect.set_options(timeout=15_000)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    yield page
    await context.close()
    assert not script_errors, f"JavaScript errors on the page: {script_errors}"


@pytest.fixture
async def api(settings: Settings, start_server: StartServer) -> TestServer:
    """The API on conftest's `settings` (two queues, the form served), on loopback."""
    return await start_server(create_app(settings))


# -- helpers ------------------------------------------------------------------------------------


def base_url(server: TestServer) -> str:
    return str(server.make_url("/")).rstrip("/")


async def fill(page: Page, values: dict[str, str]) -> None:
    # By accessible name, which comes from the <label> tied to each input: this fails if a
    # label is not tied to its input (the required mark "*" is aria-hidden, so not in the name).
    for field, value in values.items():
        await page.get_by_role("textbox", name=LABELS[field], exact=True).fill(value)


async def form_values(page: Page) -> dict[str, str]:
    return {field: await page.locator(f"#{field}").input_value() for field in FIELDS}


async def queue_total(settings: Settings) -> int:
    """Messages on all the configured queues (visible, in flight or delayed)."""
    async with create_queue_client(settings) as queues:
        return sum([(await queues.depth(url)).total for url in await queues.resolve_all()])


async def receive_envelopes(settings: Settings, expected: int) -> list[Envelope]:
    async with create_queue_client(settings) as queues:
        urls = await queues.resolve_all()
        found: list[Envelope] = []
        for _ in range(10):
            for url in urls:
                received = await queues.receive(url, wait_time_s=1, visibility_timeout_s=30)
                found += [Envelope.decode(message.body) for message in received]
            if len(found) >= expected:
                break
        return found


def api_errors(email: dict[str, str]) -> dict[str, str]:
    """What the API's validation says about `email`: the messages the page must show."""
    with pytest.raises(InvalidEmailError) as caught:
        parse_send_request({"email": email})
    return caught.value.errors


async def expect_field_error(page: Page, field: str, message: str) -> None:
    """The message is in the field's own error element, tied to the input and inside its box."""
    field_input = page.locator(f"#{field}")
    error = page.locator(f"#{field}-error")
    await expect(error).to_have_text(message)
    await expect(error).to_be_visible()
    await expect(field_input).to_have_attribute("aria-invalid", "true")
    await expect(field_input).to_have_attribute("aria-describedby", f"{field}-error")
    assert await page.evaluate(
        "([id]) => document.getElementById(id).closest('.field')"
        ".contains(document.getElementById(id + '-error'))",
        [field],
    ), f"{field}'s message is not beside it"


# -- a valid send -------------------------------------------------------------------------------


async def test_valid_send_shows_the_message_id_and_the_email_is_on_a_queue(
    page: Page, api: TestServer, settings: Settings
) -> None:
    await page.goto(base_url(api) + "/")
    await fill(page, VALID)
    async with page.expect_request("**/email/send") as sent:
        await page.get_by_role("button", name="Send").click()
    request = await sent.value
    assert json.loads(request.post_data or "") == {"email": VALID}

    status = page.get_by_role("status").filter(has=page.locator("#message-id"))
    await expect(status).to_contain_text("Queued for delivery")
    message_id = await page.locator("#message-id").inner_text()

    [envelope] = await receive_envelopes(settings, expected=1)
    assert envelope.id == message_id
    email = envelope.email
    assert (email.sender.email, email.sender.name) == (
        normalize_address(VALID["fromEmail"]),
        VALID["fromName"],
    )
    assert [(a.email, a.name) for a in email.to] == [
        (normalize_address(VALID["toEmail"]), VALID["toName"])
    ]
    assert (email.subject, email.text) == (VALID["subject"], VALID["body"])

    # Not cleared, on purpose: the same form can be sent again at once.
    assert await form_values(page) == VALID
    await expect(page.get_by_role("alert")).to_be_empty()
    await expect(page.locator("#history li")).to_have_count(1)
    await expect(page.locator("#history li")).to_contain_text(message_id)


# -- the API's refusals -------------------------------------------------------------------------


async def test_invalid_fields_show_the_api_messages_beside_their_inputs(
    page: Page, api: TestServer, settings: Settings
) -> None:
    typed = {**VALID, "fromEmail": "ada.example.org", "toEmail": "charles@", "body": ""}
    expected = api_errors(typed)
    assert set(expected) == {"fromEmail", "toEmail", "body"}

    await page.goto(base_url(api) + "/")
    await fill(page, typed)
    async with page.expect_response("**/email/send") as answer:
        await page.get_by_role("button", name="Send").click()
    response = await answer.value
    assert response.status == 422
    assert (await response.json())["errors"] == expected

    for field, message in expected.items():
        await expect_field_error(page, field, message)
    for field in set(FIELDS) - set(expected):
        await expect(page.locator(f"#{field}")).not_to_have_attribute("aria-invalid", "true")
        await expect(page.locator(f"#{field}-error")).to_be_empty()

    alert = page.get_by_role("alert")
    await expect(alert).to_have_text(
        "The email was not sent. Please correct: From email, To email, Body."
    )
    await expect(page.locator("#fromEmail")).to_be_focused()  # the first field to fix
    await expect(page.get_by_role("status").first).to_be_empty()
    assert await form_values(page) == typed
    assert await queue_total(settings) == 0

    # Fixed and sent again: the messages go, the email goes out.
    await fill(page, VALID)
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator("#message-id")).not_to_be_empty()
    await expect(alert).to_be_empty()
    for field in FIELDS:
        await expect(page.locator(f"#{field}")).not_to_have_attribute("aria-invalid", "true")
        await expect(page.locator(f"#{field}-error")).to_be_empty()


async def test_errors_for_fields_the_form_lacks_go_to_the_form_alert(
    page: Page, api: TestServer, settings: Settings
) -> None:
    # The form cannot send an unknown field; add one on the way out (the API is real) to see
    # where the page puts an error that belongs to no input. Its name is markup, which the API
    # quotes back: the page must show it as text, never run it.
    unknown = '<img src=x onerror="window.injected=1">'

    async def add_unknown_field(route: Route, request: Request) -> None:
        payload = json.loads(request.post_data or "")
        payload["email"][unknown] = "high"
        await route.continue_(post_data=json.dumps(payload))

    await page.route("**/email/send", add_unknown_field)
    await page.goto(base_url(api) + "/")
    await fill(page, {**VALID, "body": ""})
    await page.get_by_role("button", name="Send").click()

    expected = api_errors({**VALID, "body": "", unknown: "high"})
    assert unknown in expected[unknown]
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Please correct: Body.")
    await expect(alert.get_by_role("listitem")).to_have_text([expected[unknown]])
    await expect_field_error(page, "body", expected["body"])
    await expect(page.locator("img")).to_have_count(0)
    assert await page.evaluate("window.injected") is None
    assert await queue_total(settings) == 0


async def test_service_unavailable_shows_the_api_message_and_keeps_the_form(
    page: Page, sqs_endpoint: str, start_server: StartServer
) -> None:
    # The queue server is unreachable: nothing listens on this port.
    settings = make_settings(f"http://127.0.0.1:{free_port()}", api={"serve_webclient": True})
    server = await start_server(create_app(settings))
    await page.goto(base_url(server) + "/")
    await fill(page, VALID)
    async with page.expect_response("**/email/send") as answer:
        await page.get_by_role("button", name="Send").click()
    response = await answer.value
    assert response.status == 503
    message = (await response.json())["errors"]["base"]

    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text(
        f"The email was not sent (HTTP 503 Service Unavailable): {message}"
    )
    await expect(alert).to_contain_text("Nothing was queued")
    await expect(page.locator("#message-id")).to_have_count(0)
    for field in FIELDS:
        await expect(page.locator(f"#{field}")).not_to_have_attribute("aria-invalid", "true")
    assert await form_values(page) == VALID
    await expect(page.get_by_role("button", name="Send")).to_be_enabled()


# -- when the API cannot be reached -------------------------------------------------------------


async def test_a_stopped_api_is_reported_as_unreachable(
    page: Page, api: TestServer, settings: Settings
) -> None:
    url = base_url(api)
    await page.goto(url + "/")
    await fill(page, VALID)
    await api.close()

    await page.get_by_role("button", name="Send").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text(f"Could not reach the API at {url}")
    await expect(alert).to_contain_text("The email was not sent.")
    await expect(page.get_by_role("button", name="Send")).to_be_enabled()
    assert await form_values(page) == VALID
    assert await queue_total(settings) == 0


async def test_an_api_that_never_answers_times_out_and_says_so(page: Page, api: TestServer) -> None:
    # Accepts connections and reads, never answers. The page's clock is Playwright's, so the
    # 15 s timeout passes without the test waiting for it.
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    silent_url = f"http://127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    try:
        await page.clock.install()
        await page.goto(f"{base_url(api)}/?api={silent_url}")
        await expect(page.locator("#api-url")).to_have_text(f"{silent_url}/email/send")
        await fill(page, VALID)
        await page.get_by_role("button", name="Send").click()
        await expect(page.get_by_role("button", name="Sending…")).to_be_disabled()
        await page.clock.run_for(16_000)
        alert = page.get_by_role("alert")
        await expect(alert).to_contain_text(
            f"Could not reach the API at {silent_url}: no answer within 15 s."
        )
        await expect(page.get_by_role("button", name="Send")).to_be_enabled()
        assert await form_values(page) == VALID
    finally:
        for writer in writers:
            writer.close()
        silent.close()
        await silent.wait_closed()


# -- one send at a time -------------------------------------------------------------------------


async def test_one_request_for_a_double_click_while_in_flight(
    page: Page, api: TestServer, settings: Settings
) -> None:
    posts: list[Request] = []
    arrived = asyncio.Event()
    release = asyncio.Event()

    async def hold(route: Route, request: Request) -> None:
        # Keep the request in flight until the test has tried to send again.
        posts.append(request)
        arrived.set()
        await release.wait()
        await route.continue_()

    await page.route("**/email/send", hold)
    await page.goto(base_url(api) + "/")
    await fill(page, VALID)

    await page.get_by_role("button", name="Send").dblclick()
    await arrived.wait()
    button = page.locator("#send")
    await expect(button).to_be_disabled()
    await expect(button).to_have_text("Sending…")
    await expect(page.locator("#send-form")).to_have_attribute("aria-busy", "true")
    # Every other way to send while in flight: a forced click, Enter in a field.
    await button.click(force=True)
    await page.locator("#subject").press("Enter")

    release.set()
    await expect(page.locator("#message-id")).not_to_be_empty()
    await expect(button).to_be_enabled()
    await expect(button).to_have_text("Send")
    await expect(page.locator("#send-form")).to_have_attribute("aria-busy", "false")
    await page.wait_for_load_state("networkidle")
    assert len(posts) == 1
    assert await queue_total(settings) == 1

    # Once the answer is in, the same form sends again (a second, separate email).
    await button.click()
    await expect(page.locator("#history li")).to_have_count(2)
    assert len(posts) == 2
    assert await queue_total(settings) == 2


# -- accessibility and layout -------------------------------------------------------------------


async def test_keyboard_only_fill_and_send(page: Page, api: TestServer, settings: Settings) -> None:
    await page.goto(base_url(api) + "/")
    for field in FIELDS:
        await page.keyboard.press("Tab")
        await expect(page.locator(f"#{field}")).to_be_focused()
        await page.keyboard.type(VALID[field])
    await page.keyboard.press("Tab")
    send = page.get_by_role("button", name="Send")
    await expect(send).to_be_focused()
    await page.keyboard.press("Enter")

    await expect(page.locator("#message-id")).not_to_be_empty()
    # Focus comes back to Send (disabling it while in flight dropped it), ready for another.
    await expect(send).to_be_focused()
    assert await form_values(page) == VALID
    [envelope] = await receive_envelopes(settings, expected=1)
    assert envelope.email.text == VALID["body"]


async def test_readable_at_phone_width(browser: Browser, api: TestServer) -> None:
    context = await browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = await context.new_page()
    try:
        await page.goto(base_url(api) + "/")
        # A 422 with long messages is the widest the page gets.
        await fill(page, {**VALID, "fromEmail": "not-an-address-at-all-" * 4, "body": ""})
        await page.get_by_role("button", name="Send").click()
        await expect(page.locator("#fromEmail-error")).not_to_be_empty()

        assert await page.evaluate("document.documentElement.scrollWidth") <= 375
        boxes = {}
        for field in [*FIELDS, "send"]:
            box = await page.locator(f"#{field}").bounding_box()
            assert box is not None
            assert box["x"] >= 0 and box["x"] + box["width"] <= 375, field
            boxes[field] = box
        # One column: each field below the one before it.
        for upper, lower in zip(FIELDS, FIELDS[1:], strict=False):
            assert boxes[lower]["y"] > boxes[upper]["y"] + boxes[upper]["height"], (upper, lower)
        font_px = await page.evaluate(
            "parseFloat(getComputedStyle(document.getElementById('fromEmail')).fontSize)"
        )
        assert font_px >= 16  # smaller makes phones zoom in on focus
    finally:
        await context.close()


# -- where the page finds the API ---------------------------------------------------------------


def static_site(root: Path) -> web.Application:
    """The web client's files on their own, as any static host would serve them."""
    app = web.Application()

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / "index.html")

    app.router.add_get("/", index)
    app.router.add_static("/", root)
    return app


async def test_page_from_another_origin_uses_the_api_parameter(
    page: Page, sqs_endpoint: str, start_server: StartServer
) -> None:
    site = await start_server(static_site(WEBCLIENT))
    settings = make_settings(
        sqs_endpoint, api={"serve_webclient": False, "cors_origins": [base_url(site)]}
    )
    await create_queues(settings)
    api = await start_server(create_app(settings))

    await page.goto(f"{base_url(site)}/?api={base_url(api)}/")  # a trailing slash is fine
    await expect(page.locator("#api-url")).to_have_text(f"{base_url(api)}/email/send")
    await fill(page, VALID)
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator("#message-id")).not_to_be_empty()
    [envelope] = await receive_envelopes(settings, expected=1)
    assert envelope.id == await page.locator("#message-id").inner_text()


async def test_page_from_another_origin_uses_the_meta_tag(
    page: Page, sqs_endpoint: str, start_server: StartServer, tmp_path: Path
) -> None:
    # A copy of the directory deployed on its own, its meta tag naming the API. The static site
    # starts first (the API must allow its origin); the tag is written once the API has a port.
    copy = tmp_path / "webclient"
    shutil.copytree(WEBCLIENT, copy)
    site = await start_server(static_site(copy))
    settings = make_settings(
        sqs_endpoint, api={"serve_webclient": False, "cors_origins": [base_url(site)]}
    )
    await create_queues(settings)
    api = await start_server(create_app(settings))
    index = copy / "index.html"
    html = index.read_text(encoding="utf-8")
    empty_meta = '<meta name="gomailpy-api" content="">'
    assert empty_meta in html
    index.write_text(
        html.replace(empty_meta, f'<meta name="gomailpy-api" content="{base_url(api)}">'),
        encoding="utf-8",
    )

    await page.goto(f"{base_url(site)}/")
    await expect(page.locator("#api-url")).to_have_text(f"{base_url(api)}/email/send")
    await fill(page, VALID)
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator("#message-id")).not_to_be_empty()
    [envelope] = await receive_envelopes(settings, expected=1)
    assert envelope.id == await page.locator("#message-id").inner_text()


async def test_an_origin_the_api_does_not_allow_is_named_in_the_message(
    page: Page, sqs_endpoint: str, start_server: StartServer
) -> None:
    site = await start_server(static_site(WEBCLIENT))
    settings = make_settings(sqs_endpoint, api={"serve_webclient": False, "cors_origins": []})
    await create_queues(settings)
    api = await start_server(create_app(settings))

    await page.goto(f"{base_url(site)}/?api={base_url(api)}")
    await fill(page, VALID)
    await page.get_by_role("button", name="Send").click()
    # The browser hides the API's answer from a page it does not allow, like a network failure.
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text(f"Could not reach the API at {base_url(api)}")
    await expect(alert).to_contain_text(
        f"api.cors_origins allows this page's origin ({base_url(site)})"
    )
    assert await queue_total(settings) == 0


async def test_page_opened_as_a_file_asks_for_the_api_address(page: Page) -> None:
    await page.goto((WEBCLIENT / "index.html").as_uri())
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("add ?api=http://host:port to its address")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    await fill(page, VALID)
    await page.get_by_role("button", name="Send").click()
    await expect(alert).to_contain_text("add ?api=http://host:port")
    assert requests == []


async def test_a_bad_api_parameter_is_reported(page: Page, api: TestServer) -> None:
    await page.goto(f"{base_url(api)}/?api=ftp://127.0.0.1/")
    await expect(page.get_by_role("alert")).to_have_text(
        'The API address "ftp://127.0.0.1/" is not an http:// or https:// URL.'
    )


# -- delivery status ----------------------------------------------------------------------------


async def test_delivery_status_is_followed_where_the_api_has_it_and_silent_where_not(
    page: Page, api: TestServer
) -> None:
    await page.goto(base_url(api) + "/")
    await fill(page, VALID)
    is_status_poll = lambda r: r.request.method == "GET" and "/email/" in r.url  # noqa: E731
    async with page.expect_response(is_status_poll) as polled:
        await page.get_by_role("button", name="Send").click()
        message_id = await page.locator("#message-id").inner_text()
    status_response = await polled.value
    assert status_response.url == f"{base_url(api)}/email/{message_id}"
    delivery = page.locator("#delivery-status")
    if status_response.status in (404, 405, 501):
        # No status endpoint, or status off (501, status.backend none): nothing shown, nothing
        # alarming.
        await page.wait_for_load_state("networkidle")
        await expect(delivery).to_be_empty()
        await expect(page.get_by_role("alert")).to_be_empty()
        await expect(page.locator("#message-id")).to_have_text(message_id)
    else:
        # No pipeline runs here, so the email stays queued.
        assert status_response.status == 200
        await expect(delivery).to_have_text("Delivery: queued")


async def test_delivery_status_shows_each_recipients_outcome(page: Page, api: TestServer) -> None:
    """What GET /email/{id} answers once providers reported
    (api.views.suppressions.with_outcomes)."""
    answers = [
        {"state": "sent", "provider": "ses", "timeline": [], "recipients": {}},
        {
            "state": "sent",
            "provider": "ses",
            "timeline": [],
            "recipients": {
                "ok@example.org": {"state": "delivered", "subtype": None},
                "gone@example.org": {"state": "bounced", "subtype": "hard"},
            },
        },
    ]

    async def status(route: Route, request: Request) -> None:
        if request.method != "GET":
            await route.fallback()
            return
        body = answers.pop(0) if len(answers) > 1 else answers[0]
        await route.fulfill(status=200, json={"messageId": "m", **body})

    await page.route("**/email/*-*", status)
    await page.goto(base_url(api) + "/")
    await fill(page, VALID)
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator("#delivery-status")).to_have_text(
        "Delivery: sent (ses) → sent (ses) — ok@example.org delivered,"
        " gone@example.org bounced (hard)"
    )


# -- the README's screenshot --------------------------------------------------------------------


def load_screenshot_script() -> Any:
    spec = importlib.util.spec_from_file_location(
        "screenshot_webclient", ROOT / "scripts" / "screenshot_webclient.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_screenshot_script_captures_a_sent_form(
    browser: Browser, api: TestServer, settings: Settings, tmp_path: Path
) -> None:
    script = load_screenshot_script()
    out = tmp_path / "webclient.png"
    message_id = await script.capture(browser, base_url(api) + "/", out)
    assert out.read_bytes().startswith(b"\x89PNG")
    [envelope] = await receive_envelopes(settings, expected=1)
    assert envelope.id == message_id
