"""`gomail up` as a person runs it: a subprocess, an email over HTTP, the mail captured, Ctrl-C.

Also the operator's view: /metrics of the API and of each pipeline node, scraped after traffic,
moved by exactly the right amounts (each is its own process, so counters start at zero); and
`gomail up` where the local stack (local/) is not installed, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gomailpy.operating.up_state import STATE_ENV
from gomailpy_local.localstack import free_port
from tests.support import email_request

ROOT = Path(__file__).resolve().parent.parent


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def read_banner(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(240):  # LocalStack may be installed on first use
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise AssertionError("gomail up exited early:\n" + "".join(lines))
            lines.append(line)
            if line.startswith("Ctrl-C stops everything"):
                return "".join(lines)


async def test_gomail_up_runs_the_whole_system(tmp_path: Path) -> None:
    # The README's config, on ports of its own so the test never meets a running `make up`.
    config = yaml.safe_load((ROOT / "config" / "gomailpy.yaml").read_text())
    config["aws"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"
    config["queues"]["wait_time_s"] = 1
    config_path = tmp_path / "up.yaml"
    config_path.write_text(yaml.safe_dump(config))
    # Its state file of its own too, so a user's `make up` keeps its own.
    state_file = tmp_path / "up.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gomailpy_cli.main", "up", "--config", str(config_path),
        "--api-port", "0", "--no-open", "--nodes", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", STATE_ENV: str(state_file)},
    )
    started: dict[int, str] = {}
    try:
        banner = await read_banner(process)
        started = descendants(process.pid)  # what this test started: checked after Ctrl-C
        assert started, "gomail up started no child process"
        api = re.search(r"web form\s+(http://\S+)/", banner)
        standin = re.search(r"captured mail\s+SMTP: (http://\S+)/_standin/smtp/messages", banner)
        nodes = re.findall(r"pipeline \d\s+(http://\S+)/metrics", banner)
        assert api and standin and len(nodes) == 2, banner
        api_url, standin_url = api.group(1), standin.group(1)
        ports = [int(url.rsplit(":", 1)[1]) for url in (api_url, standin_url, *nodes)]

        async with aiohttp.ClientSession() as session:
            async with session.get(api_url + "/") as page:
                assert page.status == 200 and "<form" in await page.text()
            ids = []
            for n in range(6):
                async with session.post(api_url + "/email/send", json=email_request(n)) as r:
                    assert r.status == 200
                    ids.append((await r.json())["messageId"])
            async with session.post(api_url + "/email/send", json={"email": {}}) as r:
                assert r.status == 422

            # every email arrives at one of the providers: SMTP, SendGrid (stand-ins) or SES
            async def captured() -> str:
                texts = []
                for path in ("/_standin/smtp/messages", "/_standin/messages"):
                    async with session.get(standin_url + path) as answer:
                        texts.append(await answer.text())
                async with session.get(config["aws"]["endpoint_url"] + "/_aws/ses") as answer:
                    texts.append(await answer.text())
                return "".join(texts)

            async with asyncio.timeout(60):
                while True:
                    seen = await captured()
                    if all(i in seen for i in ids):
                        break
                    await asyncio.sleep(0.3)

            # delivery status: the local config keeps it in DynamoDB (moto, started by `up`)
            async with session.get(f"{api_url}/email/{ids[0]}") as answer:
                assert answer.status == 200
                record = await answer.json()
            assert record["state"] == "sent", record
            assert [event["state"] for event in record["timeline"]][0] == "queued"

            # webhooks: the local receiver (verifying with standardwebhooks) got each `sent`
            hooks = re.search(r"^\s+webhooks\s+(http://\S+/)", banner, re.MULTILINE)
            assert hooks, banner
            async with asyncio.timeout(30):
                while True:
                    async with session.get(hooks.group(1) + "events.json") as answer:
                        got = await answer.json()
                    sent = {e["data"]["messageId"] for e in got if e["type"] == "email.sent"}
                    if set(ids) <= sent:
                        break
                    await asyncio.sleep(0.3)

            # the operator page, and its data: both nodes read, the six sends counted
            assert f"operator page   {api_url}/operator" in banner
            async with session.get(api_url + "/operator") as page:
                assert page.status == 200 and "operator.js" in await page.text()
            async with session.get(api_url + "/admin/overview") as answer:
                overview = await answer.json()
            assert [node["url"] for node in overview["nodes"] if node["ok"]] == nodes
            assert sum(p["sent"] for p in overview["providers"].values()) == 6
            assert overview["local_controls"] is True

            async with session.get(api_url + "/metrics") as answer:
                api_metrics = await answer.text()
            node_metrics = []
            for node in nodes:
                async with session.get(node + "/metrics") as answer:
                    node_metrics.append(await answer.text())

        # the API counted exactly what it answered
        assert metric(api_metrics, "gomailpy_http_requests_total", route="/email/send", status="200") == 6
        assert metric(api_metrics, "gomailpy_http_requests_total", route="/email/send", status="422") == 1
        assert metric(api_metrics, "gomailpy_emails_enqueued_total") == 6
        assert metric(api_metrics, "gomailpy_enqueue_duration_seconds_count") == 6
        # the nodes together received and sent exactly the six
        received = sum(metric(t, "gomailpy_messages_received_total") for t in node_metrics)
        accepted = sum(
            metric(t, "gomailpy_provider_sends_total", outcome="accepted") for t in node_metrics
        )
        assert received >= 6 and accepted == 6
        assert all("gomailpy_provider_healthy" in t for t in node_metrics)

        # The operator commands find this stack by its state file, with no flags (and no
        # credentials: the emulator's dummy ones are used for a loopback endpoint).
        state = json.loads(state_file.read_text())
        assert state["pid"] == process.pid and state["api_url"] == api_url
        assert state["admin_urls"] == nodes
        await operator_commands_work(tmp_path, state_file, config_path, config, nodes)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        async with asyncio.timeout(60):
            rest = (await process.communicate())[0].decode()
    assert process.returncode == 0, rest
    assert "stopped; nothing left running." in rest
    for port in ports:
        assert not listening(port), f"port {port} still listening after Ctrl-C"
    endpoint_port = int(config["aws"]["endpoint_url"].rsplit(":", 1)[1])
    assert not listening(endpoint_port)  # LocalStack stopped too
    assert not state_file.exists()  # removed on the way out
    # None of the processes it started (LocalStack, moto, the API, the nodes) is left. Only
    # those: a user's own `make up` may be running beside the suite.
    assert started
    left = {pid: line for pid, line in started.items() if process_start(pid) == line}
    assert not left, f"still running after Ctrl-C: {left}"


async def operator_commands_work(
    tmp_path: Path, state_file: Path, config_path: Path, config: dict[str, Any], nodes: list[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOMAILPY_"))}
    env.update({STATE_ENV: str(state_file), "HOME": str(tmp_path)})  # no ~/.aws either

    async def gomail(*args: str) -> str:
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gomailpy_cli.main", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out = (await done.communicate())[0].decode()
        assert done.returncode == 0, (args, out)
        return out

    for args in (["status"], ["status", "--config", str(config_path)]):
        out = await gomail(*args)
        for queue in config["queues"]["urls"]:
            assert re.search(rf"^{queue}\s+\d+\s+\d+\s+\d+\s+\d+$", out, re.M), out
        for node in nodes:
            assert f"node {node}: " in out and "not answering" not in out, out
    assert (await gomail("dlq", "list")).endswith("0 dead letter(s)\n")
    assert "queued: messageId " in await gomail("send", "--to", "up@example.org")


def descendants(root: int) -> dict[int, str]:
    """Every process descended from `root`: pid -> its start time (a pid reused later by
    another process has another start time)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = process_start(pid) or "?"
                frontier.append(pid)
    return found


def process_start(pid: int) -> str | None:
    """The process's start time (clock ticks after boot), None when there is no such process."""
    with contextlib.suppress(OSError, IndexError):
        return _stat_fields(pid)[19]
    return None


def _stat_fields(pid: int) -> list[str]:
    # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def test_gomail_up_without_the_local_stack_says_in_one_line_how_to_get_it() -> None:
    # As if gomailpy_local were not installed: importing it fails as it would in production.
    hide_local_stack = (
        "import sys; sys.modules['gomailpy_local'] = None;"
        " from gomailpy_cli.main import cli; cli(['up'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide_local_stack], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "gomail up needs the local stack: pip install -e ./local from a gomailpy checkout"
        " (make up installs it)"
    ]
