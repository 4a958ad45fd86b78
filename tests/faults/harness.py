"""The fault suite's system under test: the real thing, in processes, with handles for faults.

    LocalStack (session) <- TcpProxy (cut / restore) <- `gomail api` process
                                                     <- `pipeline` processes (N)
    SMTP stand-in + SendGrid stand-in (this process; modes ok / fail / hang)

Every scenario posts emails over HTTP, injects a fault, waits for the mail to arrive at the
stand-ins and counts: acknowledged (200), delivered, lost (acknowledged, never delivered),
duplicates, HTTP 500s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from gomailpy.providers.sendgrid import MESSAGE_ID_ARG
from gomailpy_cli.api_client import SendTally, post_emails
from gomailpy_local.localstack import free_port
from gomailpy_local.standins import SendGridStandIn, SmtpStandIn
from tests.support import email_request, unique

SENDGRID_KEY = "SG.fault-suite"
_MESSAGE_ID = re.compile(r"<([^@>]+)@")


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; `cut()` refuses and drops every connection."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)
        self._pipes.difference_update(pipes)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    async def stop(self) -> None:
        await self.cut()


@dataclass
class Counts:
    acknowledged: int
    delivered: int
    lost: int
    duplicates: int
    http_500: int
    statuses: dict[int, int]
    per_provider: dict[str, int]

    def line(self, name: str) -> str:
        providers = " ".join(f"{k}={v}" for k, v in sorted(self.per_provider.items()))
        return (
            f"[fault suite] {name}: acknowledged {self.acknowledged}, delivered {self.delivered},"
            f" lost {self.lost}, duplicates {self.duplicates}, HTTP 500 {self.http_500}"
            f" (statuses {dict(sorted(self.statuses.items()))}; {providers})"
        )


@dataclass
class System:
    workdir: Path
    localstack_url: str
    proxy: TcpProxy
    smtp: SmtpStandIn
    sendgrid: SendGridStandIn
    config: Path
    settings_data: dict[str, Any]
    api_url: str = ""
    api: asyncio.subprocess.Process | None = None
    nodes: list[asyncio.subprocess.Process] = field(default_factory=list)
    admin_urls: list[str] = field(default_factory=list)
    tallies: list[SendTally] = field(default_factory=list)
    seen_states: dict[str, set[str]] = field(default_factory=dict)

    # -- processes ---------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "GOMAILPY_PROVIDERS__SENDGRID__API_KEY": SENDGRID_KEY,
            **extra,
        }

    async def _spawn(
        self, name: str, args: list[str], niceness: int = 0, **env: str
    ) -> asyncio.subprocess.Process:
        log = (self.workdir / f"{name}.log").open("ab")
        nice = ["nice", "-n", str(niceness)] if niceness else []
        try:
            return await asyncio.create_subprocess_exec(
                *nice, sys.executable, "-m", "gomailpy_cli.main", *args, "--config", str(self.config),
                env=self.env(**env), stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            log.close()

    async def start_api(self) -> None:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.api = await self._spawn("api", ["api"], GOMAILPY_API__PORT=str(port))
        await wait_http(self.api_url + "/healthz")

    async def start_node(self, niceness: int = 0) -> asyncio.subprocess.Process:
        port = free_port()
        number = len(self.nodes) + 1
        node = await self._spawn(
            f"pipeline-{number}", ["pipeline"], niceness, GOMAILPY_PIPELINE__ADMIN_PORT=str(port)
        )
        self.nodes.append(node)
        self.admin_urls.append(f"http://127.0.0.1:{port}")
        await wait_http(self.admin_urls[-1] + "/healthz")
        return node

    async def stop_all(self) -> None:
        for process in [*self.nodes, *([self.api] if self.api else [])]:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        for process in [*self.nodes, *([self.api] if self.api else [])]:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # -- load and counting -------------------------------------------------------------------

    async def post(self, count: int, *, concurrency: int = 32) -> SendTally:
        bodies = [email_request(i, subject=f"fault {i}") for i in range(count)]
        tally = await post_emails(self.api_url, bodies, concurrency=concurrency, timeout_s=60)
        self.tallies.append(tally)
        return tally

    def delivered_ids(self) -> tuple[Counter[str], dict[str, int]]:
        ids: Counter[str] = Counter()
        per_provider: dict[str, int] = {"smtp": 0, "sendgrid": 0}
        for mail in self.smtp.messages:
            match = _MESSAGE_ID.search(mail.message_id or "")
            if match:
                ids[match.group(1)] += 1
                per_provider["smtp"] += 1
        for sent in self.sendgrid.messages:
            message_id = sent.payload.get("custom_args", {}).get(MESSAGE_ID_ARG)
            if message_id:
                ids[message_id] += 1
                per_provider["sendgrid"] += 1
        return ids, per_provider

    def delivered_total(self) -> int:
        return len(self.smtp.messages) + len(self.sendgrid.messages)

    def acknowledged(self) -> set[str]:
        return {i for tally in self.tallies for i in tally.message_ids}

    async def wait_delivered(self, timeout_s: float = 180.0) -> None:
        """Until every acknowledged email reached a stand-in, or the time is up."""
        deadline = time.monotonic() + timeout_s
        wanted = self.acknowledged()
        while time.monotonic() < deadline:
            delivered, _ = self.delivered_ids()
            if wanted <= set(delivered):
                return
            await self.sample_states()
            await asyncio.sleep(0.5)

    def counts(self) -> Counts:
        delivered, per_provider = self.delivered_ids()
        acknowledged = self.acknowledged()
        statuses: Counter[int] = Counter()
        for tally in self.tallies:
            statuses.update(tally.statuses)
        return Counts(
            acknowledged=len(acknowledged),
            delivered=len(acknowledged & set(delivered)),
            lost=len(acknowledged - set(delivered)),
            duplicates=sum(n - 1 for n in delivered.values() if n > 1),
            http_500=statuses.get(500, 0),
            statuses=dict(statuses),
            per_provider=per_provider,
        )

    async def sample_states(self) -> dict[str, set[str]]:
        """Record the provider states the nodes report now (for 'the circuit opened')."""
        timeout = aiohttp.ClientTimeout(total=1)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for url in self.admin_urls:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    async with session.get(url + "/status") as response:
                        for name, p in (await response.json())["providers"].items():
                            self.seen_states.setdefault(name, set()).add(p["state"])
        return self.seen_states

    async def in_doubt(self) -> int:
        """Sends counted in doubt (`gomailpy_sends_in_doubt_total`) by the nodes still up."""
        total = 0.0
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for url in self.admin_urls:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url + "/metrics") as response:
                        for line in (await response.text()).splitlines():
                            if line.startswith("gomailpy_sends_in_doubt_total "):
                                total += float(line.split()[1])
        return int(total)

    async def watch_states(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sample_states()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)


async def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s:g} s")


def fault_settings(proxy_url: str, smtp_port: int, sendgrid_url: str, **over: Any) -> dict[str, Any]:
    queues = [unique("fq"), unique("fq")]
    data: dict[str, Any] = {
        "aws": {"endpoint_url": proxy_url, "region": "us-east-1", "client_timeout_s": 5},
        "queues": {
            "urls": queues,
            "visibility_timeout_s": 6,
            "wait_time_s": 1,
            "max_receive_count": 50,
        },
        "api": {"host": "127.0.0.1", "depth_refresh_s": 0.5, "serve_webclient": False},
        "pipeline": {
            # Half the visibility timeout, the most it may be: a send that times out may have
            # been delivered (an unknown outcome, retried: a duplicate), and on a loaded machine
            # the stand-ins, in the test process, can take more than a second to answer.
            "send_timeout_s": 3,
            "healthy_threshold": 2,
            "unhealthy_threshold": 2,
            "retry_base_delay_s": 0.2,
            "retry_max_delay_s": 2,
            "min_iteration_duration_s": 0.05,
            "max_in_flight": 100,
            "shutdown_grace_s": 5,
        },
        "providers": {
            "ses": {"enabled": False},
            "smtp": {"enabled": True, "host": "127.0.0.1", "port": smtp_port, "timeout_s": 3},
            "sendgrid": {"enabled": True, "base_url": sendgrid_url, "timeout_s": 3},
        },
        "logging": {"level": "INFO"},
    }
    for section, values in over.items():
        data[section].update(values)
    return data


@contextlib.asynccontextmanager
async def running_system(
    localstack_url: str,
    workdir: Path,
    *,
    nodes: int = 2,
    status: dict[str, Any] | None = None,
    niceness: int = 0,
    **over: Any,
) -> AsyncIterator[System]:
    """The whole system on fresh queues: proxy, stand-ins, API, `nodes` pipeline processes
    (at `niceness`); with the delivery store `status` (settings) when given."""
    from gomailpy.config.settings import Settings
    from gomailpy.queues.sqs import create_queue_client
    from gomailpy.store.deliveries import DynamoDeliveryStore

    host, port = localstack_url.removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    smtp = SmtpStandIn()
    await smtp.start()
    sendgrid = SendGridStandIn(api_key=SENDGRID_KEY, controls={"smtp": smtp})
    await sendgrid.start()
    data = fault_settings(proxy.url, smtp.port, sendgrid.base_url, **over)
    if status:
        data["status"] = status
    config = workdir / "faults.yaml"
    config.write_text(yaml.safe_dump(data))
    settings = Settings.model_validate(
        {**data, "providers": {**data["providers"], "sendgrid": {"enabled": False}}}
    )
    async with create_queue_client(settings) as queues:
        for entry in settings.queues.urls:
            await queues.ensure_queue(entry)
    if settings.status.backend == "dynamodb":
        async with DynamoDeliveryStore(settings) as store:
            await store.ensure_table()
    system = System(workdir, localstack_url, proxy, smtp, sendgrid, config, data)
    try:
        await system.start_api()
        for _ in range(nodes):
            await system.start_node(niceness)
        yield system
    finally:
        await system.stop_all()
        await sendgrid.stop()
        await smtp.stop()
        await proxy.stop()
