"""Issue #28's walkthrough in Chromium against a real `gomail up`: a recipient opens a delivered
email, clicks its link and unsubscribes from its group through the confirmation page; the next
email of that group is dropped and another group's is sent. Then the List-Unsubscribe URL as
Gmail and curl use it: a GET changes nothing, `POST List-Unsubscribe=One-Click` unsubscribes.

The email goes through the SMTP stand-in, the path on which gomailpy itself rewrites the links
and adds the pixel (SES and SendGrid track on their side): the other two kinds get a weight too
small for any share. The HTML is the stand-in's captured message, served by a little page of the
test's own as a webmail would show it; the link's target is a page of that server too.
Chromium is Debian's package (/usr/bin/chromium; scripts/setup.sh installs it), driven by
Playwright, as in tests/test_webclient.py. Waits are for outcomes; no test asserts a time.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from playwright.async_api import Browser, expect
from sendgrid.helpers.mail import (
    Asm,
    ClickTracking,
    GroupId,
    GroupsToDisplay,
    OpenTracking,
    TrackingSettings,
)
from sendgrid.helpers.mail import Mail as SendGridMail

from gomailpy.operating.up_state import STATE_ENV
from gomailpy_local.localstack import free_port
from tests.test_sendgrid_v3 import send
from tests.test_up import read_banner

ROOT = Path(__file__).resolve().parent.parent
SECRET = "walkthrough-" + "s" * 32
ANN, BOB = "ann@example.org", "bob@example.org"
ONE_CLICK = "List-Unsubscribe=One-Click"

expect.set_options(timeout=30_000)  # a shared machine running a whole stack


class Webmail:
    """A page showing the delivered HTML (`show`), and the shop page its link points to."""

    def __init__(self) -> None:
        self.html = ""
        self.landed: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/mail", self._mail)
        app.router.add_get("/shop", self._shop)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _mail(self, request: web.Request) -> web.Response:
        return web.Response(text=self.html, content_type="text/html")

    async def _shop(self, request: web.Request) -> web.Response:
        self.landed.append(str(request.rel_url))
        return web.Response(text="<h1>The shop</h1>", content_type="text/html")


def up_config(tmp_path: Path, api_port: int) -> Path:
    """The README's config on ports of its own, bulk links on, SMTP carrying all the mail."""
    config = yaml.safe_load((ROOT / "config" / "gomailpy.yaml").read_text())
    config["aws"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"
    config["queues"]["wait_time_s"] = 1
    for entry in config["providers"]:
        # Largest remainder: with one email an iteration SMTP's share is always the one.
        entry["weight"] = 1 if entry["kind"] == "smtp" else 0.000001
    # machine_window_s 0: the browser's hits come within seconds of sending, and are a person's.
    config["bulk"] = {
        "public_url": f"http://127.0.0.1:{api_port}",
        "machine_window_s": 0,
        "flush_interval_s": 0.2,
    }
    path = tmp_path / "bulk-up.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 60) -> Any:
    """`check()`'s first truthy answer, asked again until then."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                found = await check()
                if found:
                    return found
                await asyncio.sleep(0.3)
    except TimeoutError:
        raise AssertionError(f"waited {timeout_s} s for {what}") from None


def official_mail(webmail: Webmail, group_a: int, group_b: int) -> SendGridMail:
    mail = SendGridMail(
        from_email=("news@example.com", "Example News"),
        to_emails=ANN,
        subject="This month's news",
        plain_text_content="News, and a shop.",
        html_content=(
            "<html><body><h1>News</h1>"
            f'<p><a id=shop href="{webmail.url}/shop?item=42">Visit the shop</a></p>'
            "</body></html>"
        ),
    )
    mail.asm = Asm(GroupId(group_a), GroupsToDisplay([group_a, group_b]))
    tracking = TrackingSettings()
    tracking.click_tracking = ClickTracking(True, False)
    tracking.open_tracking = OpenTracking(True)
    mail.tracking_settings = tracking
    return mail


async def test_open_click_and_unsubscribe_in_chromium_against_gomail_up(
    tmp_path: Path, browser: Browser
) -> None:
    api_port = free_port()
    config_path = up_config(tmp_path, api_port)
    webmail = Webmail()
    await webmail.start()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gomailpy_cli.main", "up", "--config", str(config_path)),
        *("--api-port", str(api_port), "--no-open", "--nodes", "1"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            STATE_ENV: str(tmp_path / "up.json"),
            "GOMAILPY_BULK__SECRET": SECRET,
        },
    )
    try:
        banner = await read_banner(process)
        standin = re.search(r"captured mail\s+SMTP: (http://\S+/messages)", banner)
        assert standin, banner
        api = f"http://127.0.0.1:{api_port}"
        async with aiohttp.ClientSession() as session:
            await walkthrough(session, api, standin.group(1), webmail, browser, tmp_path)
    finally:
        await webmail.stop()
        if process.returncode is None:
            process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        async with asyncio.timeout(60):
            rest = (await process.communicate())[0].decode()
    assert process.returncode == 0, rest


async def walkthrough(
    session: aiohttp.ClientSession,
    api: str,
    captured_url: str,
    webmail: Webmail,
    browser: Browser,
    tmp_path: Path,
) -> None:
    async def get_json(path: str) -> Any:
        async with session.get(api + path) as answer:
            assert answer.status == 200, await answer.text()
            return await answer.json()

    async def captured(message_id: str) -> EmailMessage | None:
        async with session.get(captured_url) as answer:
            for message in await answer.json():
                if message_id in message["data"]:
                    parsed = email.message_from_string(message["data"], policy=email.policy.default)
                    assert isinstance(parsed, EmailMessage)
                    return parsed
        return None

    async def timeline_entry(message_id: str, state: str) -> dict[str, Any] | None:
        record = await get_json(f"/email/{message_id}")
        return next((e for e in record["timeline"] if e["state"] == state), None)

    async def send_json(body: dict[str, Any]) -> str:
        async with session.post(api + "/email/send", json=body) as answer:
            assert answer.status == 200, await answer.text()
            return str((await answer.json())["messageId"])

    groups = []
    for name, about in (("Newsletter", "The monthly news"), ("Offers", "Deals from the shop")):
        async with session.post(
            api + "/asm/groups", json={"name": name, "description": about}
        ) as answer:
            assert answer.status == 201, await answer.text()
            groups.append((await answer.json())["id"])
    group_a, group_b = groups

    # The official SendGrid client, asm and tracking_settings as a SendGrid app sends them.
    response = await send(api, official_mail(webmail, group_a, group_b))
    assert response.status_code == 202
    first = response.headers["X-Message-Id"] + "_0"  # one personalization: part 0
    delivered = await until(lambda: captured(first), "the first email at the SMTP stand-in")
    html_part = delivered.get_body(("html",))
    assert html_part is not None
    webmail.html = html_part.get_content()
    assert f"{api}/t/o/" in webmail.html and f"{webmail.url}/shop" not in webmail.html
    [unsubscribe_url] = re.findall(r"<(http[^>]+)>", delivered["List-Unsubscribe"])
    assert delivered["List-Unsubscribe-Post"] == ONE_CLICK

    context = await browser.new_context(viewport={"width": 760, "height": 340})
    try:
        page = await context.new_page()
        # Opened: showing the mail fetches the pixel.
        async with page.expect_response(lambda r: "/t/o/" in r.url) as pixel:
            await page.goto(f"{webmail.url}/mail")
        assert (await pixel.value).status == 200
        opened = await until(lambda: timeline_entry(first, "opened"), "the opened event")
        assert opened["recipient"] == ANN and opened["machine"] is False
        assert "Chrome" in opened["userAgent"]

        # Clicked: the link leads through /t/c/ to where the email pointed.
        await page.click("#shop")
        await expect(page).to_have_url(f"{webmail.url}/shop?item=42")
        await expect(page.locator("h1")).to_have_text("The shop")
        clicked = await until(lambda: timeline_entry(first, "clicked"), "the clicked event")
        assert clicked["url"] == f"{webmail.url}/shop?item=42" and clicked["machine"] is False
        assert clicked["recipient"] == ANN and "Chrome" in clicked["userAgent"]

        # The unsubscribe link: a page that asks; its button unsubscribes from group A only.
        answer = await page.goto(unsubscribe_url)
        assert answer is not None and answer.status == 200
        assert answer.headers["referrer-policy"] == "same-origin"
        await expect(page.get_by_label("Newsletter — The monthly news")).to_be_checked()
        await expect(page.get_by_label("Offers — Deals from the shop")).not_to_be_checked()
        # docs/unsubscribe.png is this picture (copied from a run: pytest --basetemp=DIR).
        await page.screenshot(path=str(tmp_path / "unsubscribe.png"))
        await page.get_by_role("button", name="Unsubscribe").click()
        await expect(page.locator("h1")).to_have_text("Unsubscribed")
        await expect(page.locator("li")).to_have_text(["Newsletter"])
    finally:
        await context.close()
    assert (tmp_path / "unsubscribe.png").read_bytes().startswith(b"\x89PNG")
    await until(lambda: timeline_entry(first, "unsubscribed"), "the unsubscribed event")
    record = await get_json(f"/email/{first}")
    assert record["recipients"][ANN]["state"] == "unsubscribed"

    # The next email of group A to Ann is dropped; group B's is sent.
    html = "<p>More news</p>"
    dropped = await send_json(
        {**_email(ANN, "Group A again", html), "unsubscribe": {"groupId": group_a}}
    )
    sent = await send_json({**_email(ANN, "An offer", html), "unsubscribe": {"groupId": group_b}})
    assert await until(lambda: captured(sent), "group B's email at the stand-in")

    async def settled(message_id: str) -> dict[str, Any] | None:
        record = await get_json(f"/email/{message_id}")
        return record if record["state"] == "failed" else None

    refused = await until(lambda: settled(dropped), "group A's email dropped")
    assert f"suppressed for group {group_a}" in refused["reason"], refused
    assert await captured(dropped) is None

    await one_click_as_curl(session, api, send_json, captured, settled, group_b)


async def one_click_as_curl(
    session: aiohttp.ClientSession,
    api: str,
    send_json: Callable[[dict[str, Any]], Awaitable[str]],
    captured: Callable[[str], Awaitable[EmailMessage | None]],
    settled: Callable[[str], Awaitable[dict[str, Any] | None]],
    group: int,
) -> None:
    """The header's URL: what a scanner's GET does (nothing), what Gmail's POST does; told by
    whether Bob's next email of the group goes out."""

    async def offer(n: int) -> str:
        body = _email(BOB, f"Offer {n} for Bob", "<p>Offer</p>")
        return await send_json({**body, "unsubscribe": {"groupId": group}})

    first = await offer(1)
    delivered = await until(lambda: captured(first), "Bob's email at the stand-in")
    [url] = re.findall(r"<(http[^>]+)>", delivered["List-Unsubscribe"])
    async with session.get(url) as answer:
        assert answer.status == 200 and "<form" in await answer.text()
    after_get = await offer(2)
    assert await until(lambda: captured(after_get), "Bob's email after the GET")

    curl = await asyncio.create_subprocess_exec(
        *("curl", "-sS", "-X", "POST", "-d", ONE_CLICK, "-w", "\n%{http_code}", url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    printed = (await curl.communicate())[0].decode()
    assert curl.returncode == 0 and printed.splitlines()[-1] == "200", printed
    after_post = await offer(3)
    refused = await until(lambda: settled(after_post), "Bob's email after the POST dropped")
    assert f"suppressed for group {group}" in refused["reason"], refused
    assert await captured(after_post) is None
    record = await until(
        lambda: _state_of(session, api, first, BOB, "unsubscribed"), "Bob's unsubscribed event"
    )
    [event] = [e for e in record["timeline"] if e["state"] == "unsubscribed"]
    assert event["recipient"] == BOB


async def _state_of(
    session: aiohttp.ClientSession, api: str, message_id: str, recipient: str, state: str
) -> dict[str, Any] | None:
    async with session.get(f"{api}/email/{message_id}") as answer:
        record: dict[str, Any] = await answer.json()
    outcome = record.get("recipients", {}).get(recipient, {})
    return record if outcome.get("state") == state else None


def _email(to: str, subject: str, html: str) -> dict[str, Any]:
    return {
        "email": {
            "fromEmail": "news@example.com",
            "toEmail": to,
            "subject": subject,
            "body": "Plain text",
            "html": html,
        }
    }
