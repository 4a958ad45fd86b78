"""API throughput and latency against the queue server's own batch-send ceiling.

    .venv/bin/python -m bench.api_throughput [--quick] [--seconds S] [--clients N]

1. ceiling: this process sends SendMessageBatch calls of typical envelopes straight to SQS for
   S seconds, with as many emails in flight as the API gets (`--clients`; 64 = 7 senders of
   9 or 10 entries): the most emails/s the server takes at that concurrency.
2. API: a `gomail api` process; N concurrent clients in this process POST /email/send for
   S seconds: accepted emails/s and latency (p50/p99).
3. ceiling again (the machine is noisy: the ratio uses the mean of both).
   Its connections are kept alive, as the API's are (gomailpy.queues.aws._keep_alive: LocalStack
   closes every other one), so both pay the same per call.
4. half load: requests arrive at half the API's rate, evenly spaced (open loop): the API's p99.
5. the server at the same rate: SendMessageBatch calls of 10 straight to SQS, open loop, at
   the same emails/s, in turns with step 4 (a quarter of the time each, four times): the
   queue server's own p99 at that load, which the API's half-load p99 is compared with.
   (Calls shaped like the API's half-load ones, 3-6 entries, would be 400 calls/s and more,
   past what LocalStack serves here: an open loop then queues without bound, where the API's
   batcher waits and fills its calls instead.) The idle server's single-call p99 is printed
   too, for reference.

The API's own `/metrics` are read around each API run: its event loop's lag
(gomailpy_event_loop_lag_seconds) and its GC pauses. `--flame FILE.svg` records a py-spy flame
graph of the API during the full-load run.

Everything shares this machine's cores with LocalStack: the load generator and the API cost the
server CPU that the ceiling run gives it whole. Ratios are what to compare across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bench.common import (
    CpuMeter,
    SqsCalls,
    aws_cost_lines,
    bench_settings,
    child_pids,
    flame_graph,
    header,
    localstack,
    percentile,
    spawn,
    stop,
    table,
    temp_dir,
    typical_body,
    typical_request,
    write_config,
)
from gomailpy.config.settings import Settings
from gomailpy.operating import eventloop
from gomailpy.operating.loop_watch import freeze_heap, watch_event_loop
from gomailpy.queues.aws import open_aws_client
from gomailpy.queues.sqs import MAX_BATCH, create_queue_client
from gomailpy_local.localstack import free_port


async def fresh_queue(endpoint: str) -> tuple[Settings, str]:
    settings = bench_settings(endpoint, queue_count=1)
    async with create_queue_client(settings) as queues:
        url = await queues.ensure_queue(settings.queues.urls[0])
    return settings, url


def batch_sizes(in_flight: int) -> list[int]:
    """`in_flight` emails over as few SendMessageBatch callers as SQS allows, evenly."""
    callers = math.ceil(in_flight / MAX_BATCH)
    return [in_flight // callers + (i < in_flight % callers) for i in range(callers)]


async def ceiling(endpoint: str, seconds: float, in_flight: int, meter: CpuMeter) -> dict[str, Any]:
    """SendMessageBatch calls keeping `in_flight` emails in flight for `seconds`: emails/s and
    call latency."""
    settings, url = await fresh_queue(endpoint)
    body = typical_body()
    latencies: list[float] = []
    sent = 0
    async with AsyncExitStack() as stack:
        client = await open_aws_client(stack, "sqs", settings.aws, keep_alive=True)
        entries = [{"Id": str(i), "MessageBody": body} for i in range(MAX_BATCH)]
        await client.send_message_batch(QueueUrl=url, Entries=entries)  # warm the connection
        deadline = time.perf_counter() + seconds

        async def sender(size: int) -> None:
            nonlocal sent
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                answer = await client.send_message_batch(QueueUrl=url, Entries=entries[:size])
                latencies.append(time.perf_counter() - started)
                sent += len(answer.get("Successful", []))

        started = time.perf_counter()
        meter.start()
        await asyncio.gather(*(sender(size) for size in batch_sizes(in_flight)))
        meter.stop()
        elapsed = time.perf_counter() - started
    return {
        "rate": sent / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "count": sent,
        "cpu": meter.text(),
    }


class ServerAtRate:
    """SendMessageBatch calls of `per_call` entries, open loop, carrying a given emails/s: the
    queue server's own call latency at that load (each email waits one call).

    The calls are one request built once and posted again and again over kept-alive
    connections (aiohttp; the emulator checks no signature): botocore's CPU per call (~1 ms in
    this process, on a shared core) would otherwise queue the calls here, not at the server."""

    def __init__(self, endpoint: str, per_call: int) -> None:
        self.endpoint = endpoint
        self.per_call = per_call
        self.latencies: list[float] = []
        self._failures = 0
        self._payload = b""
        self._headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "AmazonSQS.SendMessageBatch",
            "X-Amz-Date": "20260101T000000Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/sqs/"
            "aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0",
        }
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))

    async def __aenter__(self) -> ServerAtRate:
        _, url = await fresh_queue(self.endpoint)
        body = typical_body()
        entries = [{"Id": str(i), "MessageBody": body} for i in range(self.per_call)]
        self._payload = json.dumps({"QueueUrl": url, "Entries": entries}).encode()
        await self._call()  # one connection open before the clock starts
        self.latencies.clear()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._session.close()

    async def _call(self) -> None:
        started = time.perf_counter()
        async with self._session.post(
            self.endpoint, data=self._payload, headers=self._headers
        ) as response:
            answer = await response.read()
            if response.status != 200 or json.loads(answer).get("Failed"):
                self._failures += 1
        self.latencies.append(time.perf_counter() - started)

    async def at_rate(self, rate: float, seconds: float) -> None:
        await open_loop(self._call, rate / self.per_call, seconds)
        if self._failures:
            raise SystemExit(f"the queue server refused {self._failures} of the baseline's calls")

    def result(self) -> dict[str, float]:
        return {
            "p50_ms": percentile(self.latencies, 50) * 1000,
            "p99_ms": percentile(self.latencies, 99) * 1000,
        }


async def single_calls(endpoint: str, seconds: float) -> dict[str, float]:
    """Single-entry SendMessageBatch calls, one at a time: the server's own call latency."""
    settings, url = await fresh_queue(endpoint)
    body = typical_body()
    latencies: list[float] = []
    async with AsyncExitStack() as stack:
        client = await open_aws_client(stack, "sqs", settings.aws, keep_alive=True)
        await client.send_message_batch(QueueUrl=url, Entries=[{"Id": "0", "MessageBody": body}])

        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await client.send_message_batch(
                QueueUrl=url, Entries=[{"Id": "0", "MessageBody": body}]
            )
            latencies.append(time.perf_counter() - started)
    return {"p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000}


async def open_loop(call: Any, rate: float, seconds: float) -> None:
    """Start `call()` every 1/rate s for `seconds`, whether earlier ones finished or not."""
    tasks = []
    started = time.perf_counter()
    count = max(1, int(rate * seconds))
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(call()))
    await asyncio.gather(*tasks)


async def wait_ready(api_url: str, timeout_s: float = 60) -> None:
    deadline = time.perf_counter() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() < deadline:
            try:
                async with session.get(api_url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"the API at {api_url} did not become ready")


LoopReading = dict[str, dict[str, float]]  # metric -> {"le=<bound>" | "sum" | "count": value}


HISTOGRAMS = (
    "gomailpy_event_loop_lag_seconds",
    "gomailpy_gc_pause_seconds",
    "gomailpy_enqueue_duration_seconds",
)


async def read_loop_metrics(api_url: str | None) -> LoopReading:
    """The event-loop lag, GC pause and enqueue-time histograms from the API's /metrics (None:
    this process's registry, where the bench watches its own loop), buckets summed over labels
    (every GC generation together)."""
    if api_url is None:
        text = generate_latest().decode()
    else:
        async with aiohttp.ClientSession() as session:
            async with session.get(api_url + "/metrics") as response:
                text = await response.text()
    reading: LoopReading = {}
    for family in text_string_to_metric_families(text):
        if family.name not in HISTOGRAMS:
            continue
        values = reading.setdefault(family.name, {})
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                key = "le=" + sample.labels["le"]
                values[key] = values.get(key, 0.0) + sample.value
            elif sample.name.endswith(("_sum", "_count")):
                key = sample.name.rsplit("_", 1)[1]
                values[key] = values.get(key, 0.0) + sample.value
    return reading


def describe_loop(before: LoopReading, after: LoopReading) -> str:
    """What the loop went through between two readings: lag p99 and worst (histogram bucket
    bounds), GC pauses' count, total and longest."""

    def delta(name: str) -> dict[str, float]:
        old = before.get(name, {})
        return {key: n - old.get(key, 0.0) for key, n in after.get(name, {}).items()}

    def bound(values: dict[str, float], share: float) -> str:
        total = values.get("count", 0.0)
        buckets = sorted((float(key[3:]), n) for key, n in values.items() if key.startswith("le="))
        for upper, cumulative in buckets:
            if total and cumulative >= share * total:
                return "> 2.5 s" if math.isinf(upper) else f"<= {upper * 1000:g} ms"
        return "-"

    lag, gc = delta("gomailpy_event_loop_lag_seconds"), delta("gomailpy_gc_pause_seconds")
    enqueue = delta("gomailpy_enqueue_duration_seconds")
    enqueued = (
        f"; enqueue (valid request to the queue's answer) p99 {bound(enqueue, 0.99)}, worst"
        f" {bound(enqueue, 1.0)}"
        if enqueue.get("count")
        else ""
    )
    return (
        f"event-loop lag p99 {bound(lag, 0.99)}, worst {bound(lag, 1.0)} over"
        f" {lag.get('count', 0):.0f} ticks of 0.1 s (mean"
        f" {1000 * lag.get('sum', 0) / max(lag.get('count', 0), 1):.1f} ms); GC"
        f" {gc.get('count', 0):.0f} pauses, {1000 * gc.get('sum', 0):.0f} ms in all, longest"
        f" {bound(gc, 1.0)}{enqueued}"
    )


def slow_requests(load: ApiLoad, over_s: float = 0.25) -> str:
    """How many answers took longer than `over_s`, and in how many bursts (posted within 1 s of
    each other): one stall somewhere delays every request in flight at once."""
    slow = sorted(t for t, took in zip(load.started, load.latencies, strict=True) if took > over_s)
    bursts = sum(1 for i, t in enumerate(slow) if i == 0 or t - slow[i - 1] > 1.0)
    return f"{len(slow)} answers over {over_s * 1000:.0f} ms, in {bursts} bursts"


SLICES = 4  # turns of the API and the queue server alone at half load


class ApiLoad:
    def __init__(self, api_url: str, clients: int) -> None:
        self.endpoint = api_url + "/email/send"
        self.clients = clients
        self.latencies: list[float] = []
        self.started: list[float] = []  # when each of `latencies` was posted
        self.statuses: Counter[int] = Counter()
        self._n = 0

    async def post(self, session: aiohttp.ClientSession) -> None:
        self._n += 1
        started = time.perf_counter()
        try:
            async with session.post(self.endpoint, json=typical_request(self._n)) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        self.statuses[status] += 1
        if status == 200:
            self.latencies.append(time.perf_counter() - started)
            self.started.append(started)

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.clients),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def closed_loop(self, seconds: float) -> float:
        """`clients` loops posting for `seconds`; returns the elapsed time."""
        async with self.session() as session:
            deadline = time.perf_counter() + seconds

            async def client() -> None:
                while time.perf_counter() < deadline:
                    await self.post(session)

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(self.clients)))
            return time.perf_counter() - started

    async def at_rate(self, rate: float, seconds: float, *, keep: bool = False) -> None:
        """Post at `rate` for `seconds`; `keep`: add to what earlier calls measured."""
        async with self.session() as session:
            await self.post(session)  # open the connection first
            if not keep:
                self.latencies.clear()
                self.started.clear()
                self.statuses.clear()
            else:  # the warm-up post is not counted
                self.latencies.pop()
                self.started.pop()
                self.statuses[200] -= 1
            await open_loop(lambda: self.post(session), rate, seconds)


async def run(args: argparse.Namespace) -> int:
    header("API throughput: gomail api vs the queue server's batch-send ceiling", args.quick)
    # The load generator's own collections stalled it for up to 100 ms, inflating what it
    # measured: its heap is frozen as the API's is (gomailpy.operating.loop_watch).
    freeze_heap()
    print(f"load average at the start: {load_average()}", flush=True)
    with localstack() as stack:
        endpoint = stack.endpoint_url
        direct_meter = CpuMeter({"localstack": stack.process.pid, "bench": None})
        first = await ceiling(endpoint, args.seconds, args.clients, direct_meter)

        settings = bench_settings(endpoint, queue_count=2, api={"port": free_port()})
        async with create_queue_client(settings) as queues:
            for entry in settings.queues.urls:
                await queues.ensure_queue(entry)
        work = temp_dir()
        config = write_config(settings, work, "api")
        if args.profile:
            # pyinstrument samples the API process; its report is written when the API exits.
            # FILE.pyisession keeps the whole session (`pyinstrument --load FILE -r text
            # --show-all`, or `-p flat`), any other name a text report.
            renderer = "pyisession" if args.profile.suffix == ".pyisession" else "text"
            profiler = ["-m", "pyinstrument", "-r", renderer, "-o", str(args.profile)]
        else:
            profiler = []
        calls_file = work / "api-calls.json"
        child = spawn(
            ["api", "--config", str(config), "--workers", str(args.workers)],
            work / "api.log",
            {"GOMAILPY_BENCH_CALLS": str(calls_file)},
            python_args=profiler,
        )
        api_url = f"http://127.0.0.1:{settings.api.port}"
        try:
            await wait_ready(api_url)
            await asyncio.sleep(1.0 if args.workers > 1 else 0)  # every worker listening
            api_pids = [child.pid, *child_pids(child.pid)]  # with --workers: its workers too
            warm = ApiLoad(api_url, args.clients)
            await warm.closed_loop(min(1.0, args.seconds))
            signal_all(api_pids, signal.SIGUSR1)
            await asyncio.sleep(0.5)
            calls_before, entries_before = SqsCalls.load(calls_file)
            load = ApiLoad(api_url, args.clients)
            api_meter = CpuMeter(
                {"localstack": stack.process.pid, "api": api_pids, "clients": None}
            ).start()
            loop_before = await read_loop_metrics(api_url)
            with flame_graph(api_pids[-1], args.flame):
                elapsed = await load.closed_loop(args.seconds)
            api_meter.stop()
            loop_full = describe_loop(loop_before, await read_loop_metrics(api_url))
            api_rate = load.statuses[200] / elapsed
            signal_all(api_pids, signal.SIGUSR1)
            await asyncio.sleep(0.5)
            calls_after, entries_after = SqsCalls.load(calls_file)
            sends = calls_after["SendMessageBatch"] - calls_before["SendMessageBatch"]
            entries = entries_after["SendMessageBatch"] - entries_before["SendMessageBatch"]

            half = ApiLoad(api_url, args.clients)
            loop_before = await read_loop_metrics(api_url)
            own_before = await read_loop_metrics(None)
            # The API and the queue server alone (calls of 10) at the same emails/s, in turns
            # of 1/SLICES of the time each, so that both meet the same moments of this shared
            # machine (a baseline run after the API's once met a stall of its own: p99 1 s).
            async with ServerAtRate(endpoint, MAX_BATCH) as direct, watch_event_loop():
                for i in range(SLICES):
                    await half.at_rate(api_rate / 2, args.seconds / SLICES, keep=i > 0)
                    await direct.at_rate(api_rate / 2, args.seconds / SLICES)
            direct_half = direct.result()
            loop_half = describe_loop(loop_before, await read_loop_metrics(api_url))
            own_half = describe_loop(own_before, await read_loop_metrics(None))
            signal_all(api_pids, signal.SIGUSR1)
            await asyncio.sleep(0.5)
            calls_half, entries_half = SqsCalls.load(calls_file)
            half_calls = calls_half["SendMessageBatch"] - calls_after["SendMessageBatch"]
            half_entries = entries_half["SendMessageBatch"] - entries_after["SendMessageBatch"]
        finally:
            stop(child)
        second = await ceiling(endpoint, args.seconds, args.clients, direct_meter)
        direct_one = await single_calls(endpoint, args.seconds)

    ceiling_rate = (first["rate"] + second["rate"]) / 2
    refused = sum(n for status, n in load.statuses.items() if status != 200)
    print(
        table(
            ["run", "emails/s", "p50 ms", "p99 ms", "emails", "not 200", "CPU (% of a core)"],
            [
                [
                    f"ceiling: SendMessageBatch, {args.clients} in flight, before",
                    first["rate"],
                    first["p50_ms"],
                    first["p99_ms"],
                    int(first["count"]),
                    0,
                    first["cpu"],
                ],
                [
                    "API: POST /email/send, full load",
                    api_rate,
                    percentile(load.latencies, 50) * 1000,
                    percentile(load.latencies, 99) * 1000,
                    load.statuses[200],
                    refused,
                    api_meter.text(),
                ],
                [
                    f"ceiling: SendMessageBatch, {args.clients} in flight, after",
                    second["rate"],
                    second["p50_ms"],
                    second["p99_ms"],
                    int(second["count"]),
                    0,
                    second["cpu"],
                ],
                [
                    f"API at half load ({api_rate / 2:,.0f}/s)",
                    float("nan"),
                    percentile(half.latencies, 50) * 1000,
                    percentile(half.latencies, 99) * 1000,
                    half.statuses[200],
                    sum(n for s, n in half.statuses.items() if s != 200),
                    "",
                ],
                [
                    f"server alone at that rate: {MAX_BATCH}-entry calls",
                    float("nan"),
                    direct_half["p50_ms"],
                    direct_half["p99_ms"],
                    "",
                    "",
                    "",
                ],
                [
                    "server idle: 1-entry call, one at a time",
                    float("nan"),
                    direct_one["p50_ms"],
                    direct_one["p99_ms"],
                    "",
                    "",
                    "",
                ],
            ],
        )
    )
    ratio = api_rate / ceiling_rate if ceiling_rate else float("nan")
    half_p99 = percentile(half.latencies, 99) * 1000
    p99_ratio = half_p99 / direct_half["p99_ms"]
    # CPU the API process spent per accepted email at full load: what decides how close one
    # process on a shared 2-core machine can get to the ceiling.
    cpu_ms = api_meter.percent["api"] / 100 * elapsed / max(load.statuses[200], 1) * 1000
    print(
        f"API SendMessageBatch calls at full load: {sends:,} for {entries:,} entries"
        f" ({entries / max(sends, 1):.1f} per call; {sends / max(load.statuses[200], 1):.2f}"
        " calls per accepted email)"
    )
    print(
        f"API CPU per accepted email at full load: {cpu_ms:.2f} ms (target <= 0.30);"
        f" event loop: {eventloop.loop_name()}"
    )
    print(f"API at full load: {loop_full}")
    print(f"API at half load: {loop_half}")
    print(f"load generator (this process) at half load: {own_half}")
    print(f"half load: {slow_requests(half)}")
    print(
        f"half-load p99 {half_p99:.1f} ms = ratio {p99_ratio:.2f} of the queue server's own p99"
        f" {direct_half['p99_ms']:.1f} ms at the same rate ({MAX_BATCH}-entry calls; target <="
        f" 2.0); the idle server's single-call p99: {direct_one['p99_ms']:.1f} ms; the API's"
        f" half-load calls carried {half_entries / max(half_calls, 1):.1f} entries each"
    )
    print(aws_cost_lines({"SQS": sends / max(load.statuses[200], 1)}, "the API alone, status off"))
    print(
        f"summary: API {api_rate:,.0f} emails/s = ratio {ratio:.2f} of the batch-send ceiling"
        f" {ceiling_rate:,.0f}/s (target >= 0.90); CPU {cpu_ms:.2f} ms per email (target <="
        f" 0.30); half-load p99 ratio {p99_ratio:.2f} to the queue server's at the same rate"
        f" (target <= 2.0); {args.clients} emails in flight in both, {args.seconds:g} s per run;"
        f" load average {load_average()}"
    )
    return 0


def load_average() -> str:
    """The machine's 1, 5 and 15 min load averages: it is shared, and the ratios move with it."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--clients", type=int, default=64, help="concurrent HTTP clients")
    parser.add_argument("--workers", type=int, default=1, help="gomail api --workers N")
    parser.add_argument(
        "--profile", type=Path, default=None, help="profile the API with pyinstrument into FILE"
    )
    parser.add_argument(
        "--flame", type=Path, default=None, help="py-spy flame graph of the API at full load"
    )
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 1.0 if args.quick else 10.0
    if args.quick:
        args.clients = min(args.clients, 8)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
