"""The web form as users judge it: answers within a 1 s client timeout while the API is loaded.

    .venv/bin/python -m bench.form_timeout [--submits 8] [--count 3000] [--concurrency 64]

1. Uses the `gomail up` listening on 127.0.0.1:8000 (`ss -ltn`), or starts one itself
   (`gomail up --no-open`, its fixed ports) and stops it at the end.
2. A headless Chromium (Debian's /usr/bin/chromium, driven by playwright as
   tests/test_webclient.py does) opens the form, with the page's send timeout set to 1 s (as
   gomail's original client had; the shipped page waits 15 s): app.js is served with
   `SEND_TIMEOUT_MS = 1_000`.
3. `gomail send --count 3000 --concurrency 64` loads the API; once it is under way the form is
   submitted `--submits` times, one after another. A submit counts as answered when its
   POST /email/send finished with 200 within 1 s of the click; otherwise the page aborted it
   (or it was refused).

No ceiling: the target is all of them (8 of 8) answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from playwright.async_api import Request, Route, async_playwright

from bench.common import header, percentile, temp_dir

PORT = 8000
API = f"http://127.0.0.1:{PORT}"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [  # as tests/test_webclient.py: root, no GPU, offline
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
CLIENT_TIMEOUT_S = 1.0
FORM = {
    "From email": "ada@example.org",
    "To email": "someone@example.org",
    "Subject": "Form under load",
    "Body": "Sent from the form while gomail send runs.",
}
GOMAIL = str(Path(sys.executable).with_name("gomail"))


def listening(port: int) -> bool:
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=False).stdout
    return any(line.split()[3].endswith(f":{port}") for line in out.splitlines() if line.split())


async def wait_ready(timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(API + "/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.5)
    raise SystemExit(f"no API became ready at {API} within {timeout_s:g} s")


async def submit_all(args: argparse.Namespace) -> list[tuple[bool, float, str]]:
    """Each submit's (answered within 1 s, seconds to the end of its POST, how it ended)."""
    results: list[tuple[bool, float, str]] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        page = await (await browser.new_context()).new_page()

        async def short_timeout(route: Route) -> None:
            response = await route.fetch()
            script = (await response.text()).replace(
                "SEND_TIMEOUT_MS = 15_000", f"SEND_TIMEOUT_MS = {int(CLIENT_TIMEOUT_S * 1000)}"
            )
            await route.fulfill(response=response, body=script)

        await page.route("**/app.js", short_timeout)
        await page.goto(API + "/")
        for label, value in FORM.items():
            await page.get_by_role("textbox", name=label, exact=True).fill(value)
        ended: asyncio.Queue[tuple[str, Request]] = asyncio.Queue()
        page.on("requestfinished", lambda r: ended.put_nowait(("finished", r)))
        page.on("requestfailed", lambda r: ended.put_nowait(("failed", r)))

        load = await asyncio.create_subprocess_exec(
            GOMAIL, "send", "--api", API, "--count", str(args.count),
            "--concurrency", str(args.concurrency),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await asyncio.sleep(args.ramp_s)  # the load under way
            for _ in range(args.submits):
                if load.returncode is not None:
                    print("note: gomail send finished before the last submit", flush=True)
                clicked = time.perf_counter()
                await page.get_by_role("button", name="Send").click()
                while True:
                    how, request = await asyncio.wait_for(ended.get(), 30)
                    if request.url.endswith("/email/send"):
                        break
                took = time.perf_counter() - clicked
                status = 0
                if how == "finished":
                    response = await request.response()
                    status = response.status if response is not None else 0
                answered = how == "finished" and status == 200 and took <= CLIENT_TIMEOUT_S
                results.append((answered, took, f"HTTP {status}" if status else "aborted"))
                await asyncio.sleep(args.gap_s)
        finally:
            if load.returncode is None:
                load.terminate()
            await load.wait()
            await browser.close()
    return results


async def run(args: argparse.Namespace) -> int:
    header("Form under load: answers within a 1 s client timeout", args.quick)
    started_up: subprocess.Popen[bytes] | None = None
    if listening(PORT):
        print(f"using the API already listening on {API}")
    else:
        log = temp_dir() / "up.log"
        print(f"starting gomail up (log: {log})", flush=True)
        with log.open("wb") as out:
            started_up = subprocess.Popen(
                [GOMAIL, "up", "--no-open"], stdout=out, stderr=out, stdin=subprocess.DEVNULL
            )
    try:
        await wait_ready(300)
        results = await submit_all(args)
    finally:
        if started_up is not None:
            started_up.terminate()
            try:
                started_up.wait(60)
            except subprocess.TimeoutExpired:
                started_up.kill()
                started_up.wait()
    for i, (answered, took, how) in enumerate(results, 1):
        print(f"submit {i}: {how} after {took * 1000:,.0f} ms{'' if answered else '  (missed)'}")
    count = sum(ok for ok, _, _ in results)
    times = [took for _, took, _ in results]
    print(
        f"summary: {count} of {len(results)} form submits answered within"
        f" {CLIENT_TIMEOUT_S:g} s (target: all) during gomail send --count {args.count}"
        f" -c {args.concurrency}; p50 {percentile(times, 50) * 1000:,.0f} ms, slowest"
        f" {max(times) * 1000:,.0f} ms"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 submits, 300 emails")
    parser.add_argument("--submits", type=int, default=8)
    parser.add_argument("--count", type=int, default=3000, help="gomail send --count")
    parser.add_argument("--concurrency", type=int, default=64, help="gomail send -c")
    parser.add_argument("--ramp-s", type=float, default=1.0, help="load before the first submit")
    parser.add_argument("--gap-s", type=float, default=0.5, help="between submits")
    args = parser.parse_args()
    if args.quick:
        args.submits, args.count = 2, 300
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
