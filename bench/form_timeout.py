"""The web form as users judge it: answers within a 1 s client timeout while the API is loaded.

    .venv/bin/python -m bench.form_timeout [--submits 8] [--count 3000] [--concurrency 64]

1. Starts a `gomail up` of its own with the config `make up` uses (config/gomailpy.yaml), on
   free ports: a copy of the config with LocalStack on a free port, `--api-port 0`, and a state
   file of its own, as tests/test_up.py does, so a run never meets (nor disturbs) a `make up`
   on port 8000 or another bench. It is stopped at the end, LocalStack with it.
2. A headless Chromium (Debian's /usr/bin/chromium, driven by playwright as
   tests/test_webclient.py does) opens the form, with the page's send timeout set to 1 s (as
   gomail's original client had; the shipped page waits 15 s): app.js is served with
   `SEND_TIMEOUT_MS = 1_000`.
3. `gomail send --count 3000 --concurrency 64` loads the API; once it is under way the form is
   submitted `--submits` times, one after another. A submit counts as answered when its
   POST /email/send finished with 200 within 1 s of the click; otherwise the page aborted it
   (or it was refused). With 8 submits one miss moves the count by an eighth: `--submits 40`
   tells runs apart.

No ceiling: the target is all of them answered. The load average is printed with the summary:
the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import yaml
from playwright.async_api import Request, Route, async_playwright

from bench.common import ROOT, header, percentile, temp_dir
from gomailpy.operating.up_state import STATE_ENV
from gomailpy_local.localstack import free_port

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


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


class OwnUp:
    """A `gomail up` of this bench's own, on free ports; its output goes to `log`."""

    def __init__(self, work: Path) -> None:
        config = yaml.safe_load((ROOT / "config" / "gomailpy.yaml").read_text())
        config["aws"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"
        self.config = work / "up.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.state = work / "up.json"
        self.log = work / "up.log"
        self.api_url = ""
        self._process: asyncio.subprocess.Process | None = None
        self._copy: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float) -> str:
        """Start it and return the API's URL once the banner names it."""
        self._process = await asyncio.create_subprocess_exec(
            GOMAIL, "up", "--config", str(self.config), "--api-port", "0", "--no-open",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", STATE_ENV: str(self.state)},
        )  # fmt: skip
        found: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._copy = asyncio.create_task(self._read_output(found))
        try:
            self.api_url = await asyncio.wait_for(found, timeout_s)
        except TimeoutError:
            raise SystemExit(
                f"gomail up did not come up within {timeout_s:g} s; see {self.log}"
            ) from None
        return self.api_url

    async def _read_output(self, found: asyncio.Future[str]) -> None:
        # Read to the end, not only to the banner: its status lines would fill the pipe and
        # stop it.
        assert self._process is not None and self._process.stdout is not None
        with self.log.open("wb") as log:
            while line := await self._process.stdout.readline():
                log.write(line)
                log.flush()
                match = re.search(rb"web form\s+(http://\S+)/", line)
                if match and not found.done():
                    found.set_result(match.group(1).decode())
        if not found.done():
            found.set_exception(SystemExit(f"gomail up exited early; see {self.log}"))

    async def stop(self) -> None:
        if self._process is None:
            return
        if self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)  # as Ctrl-C: it stops everything it started
            try:
                await asyncio.wait_for(self._process.wait(), 90)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        if self._copy is not None:
            await self._copy


async def wait_ready(api: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(api + "/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.5)
    raise SystemExit(f"no API became ready at {api} within {timeout_s:g} s")


async def submit_all(api: str, args: argparse.Namespace) -> list[tuple[bool, float, str]]:
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
        await page.goto(api + "/")
        for label, value in FORM.items():
            await page.get_by_role("textbox", name=label, exact=True).fill(value)
        ended: asyncio.Queue[tuple[str, Request]] = asyncio.Queue()
        page.on("requestfinished", lambda r: ended.put_nowait(("finished", r)))
        page.on("requestfailed", lambda r: ended.put_nowait(("failed", r)))

        async def start_load() -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                GOMAIL, "send", "--api", api, "--count", str(args.count),
                "--concurrency", str(args.concurrency),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

        load = await start_load()
        runs = 1
        try:
            await asyncio.sleep(args.ramp_s)  # the load under way
            for _ in range(args.submits):
                if load.returncode is not None:
                    # Every submit meets a `gomail send` under way: with many submits one run
                    # of 3,000 emails ends first, and the rest would measure an idle API.
                    await load.wait()
                    load = await start_load()
                    runs += 1
                    await asyncio.sleep(args.ramp_s)
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
    print(f"gomail send runs (one restarted whenever it finished): {runs}", flush=True)
    return results


async def run(args: argparse.Namespace) -> int:
    header("Form under load: answers within a 1 s client timeout", args.quick)
    up = OwnUp(temp_dir())
    print(f"starting gomail up on free ports (config {up.config}, log {up.log})", flush=True)
    try:
        api = await up.start(300)  # LocalStack may be installed on first use
        print(f"its API: {api}", flush=True)
        await wait_ready(api, 120)
        print(f"load average before the load: {load_average()}", flush=True)
        results = await submit_all(api, args)
        load_after = load_average()
    finally:
        await up.stop()
    for i, (answered, took, how) in enumerate(results, 1):
        print(f"submit {i}: {how} after {took * 1000:,.0f} ms{'' if answered else '  (missed)'}")
    count = sum(ok for ok, _, _ in results)
    times = [took for _, took, _ in results]
    print(
        f"summary: {count} of {len(results)} form submits answered within"
        f" {CLIENT_TIMEOUT_S:g} s (target: all) during gomail send --count {args.count}"
        f" -c {args.concurrency}; p50 {percentile(times, 50) * 1000:,.0f} ms, slowest"
        f" {max(times) * 1000:,.0f} ms; load average {load_after}"
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
