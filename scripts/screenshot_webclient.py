"""Take docs/webclient.png: the send form just after a successful send, at a desktop width.

Against a running API that serves the form (`make up` serves it at http://127.0.0.1:8000/):

    .venv/bin/python scripts/screenshot_webclient.py [--url http://127.0.0.1:8000/] [--out FILE]

The send is real: it puts one example email on the API's queues. The browser is Debian's chromium
(/usr/bin/chromium), driven by Playwright; tests/test_webclient.py runs `capture` too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from playwright.async_api import Browser, ViewportSize, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# No sandbox as root, no GPU, no background DNS look-ups (offline machines): shared/TESTBED.md.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
EXAMPLE = {
    "#fromEmail": "ada@example.org",
    "#fromName": "Ada Lovelace",
    "#toEmail": "charles@example.org",
    "#toName": "Charles Babbage",
    "#subject": "Notes on the Analytical Engine",
    "#body": "Dear Charles,\n\nThe notes on the Engine are ready; I will bring them on Thursday."
    "\n\nAda",
}
VIEWPORT: ViewportSize = {"width": 1100, "height": 900}


async def capture(
    browser: Browser, page_url: str, out: Path, *, wait_for_delivery: bool = False
) -> str:
    """Fill the form at `page_url`, send it, wait for the message id (and, if asked, for the
    page to show the email sent), save a PNG of the page to `out`; return the message id."""
    # Reduced motion: no colour transition caught half-way in the picture.
    context = await browser.new_context(viewport=VIEWPORT, reduced_motion="reduce")
    try:
        page = await context.new_page()
        await page.goto(page_url)
        for selector, value in EXAMPLE.items():
            await page.fill(selector, value)
        await page.click("#send")
        message_id = page.locator("#message-id")
        await message_id.wait_for(state="visible", timeout=15_000)
        if wait_for_delivery:  # the API has delivery status (`make up`): show the email sent
            delivery = page.locator("#delivery-status")
            with contextlib.suppress(PlaywrightTimeout):
                await delivery.filter(has_text="sent").wait_for(state="visible", timeout=20_000)
        # Keep the mouse off the button and the focus ring out of the picture.
        await page.mouse.move(0, 0)
        await page.evaluate("document.activeElement && document.activeElement.blur()")
        out.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(out), full_page=True)
        return await message_id.inner_text()
    finally:
        await context.close()


async def main(page_url: str, out: Path) -> str:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            return await capture(browser, page_url, out, wait_for_delivery=True)
        finally:
            await browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/", help="the form's address")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "webclient.png")
    args = parser.parse_args()
    message_id = asyncio.run(main(args.url, args.out))
    print(f"{args.out}: form after sending message {message_id}", file=sys.stderr)
