"""The cost of every feature on: `gomail up` as shipped (events, webhooks, status) against bare.

    .venv/bin/python -m bench.features [--quick] [--count 2000] [--concurrency 64] [--nodes 2]

Runs the stack twice, each time a `gomail up` of its own (its own LocalStack, moto and stand-ins,
every port a free one, so a running `make up` on 8000 is not touched), from
config/gomailpy.yaml with `logging.level: WARNING` (an INFO line per email would be measured):

- **shipped**: as `make up` runs it: events on (SES's configuration set publishing to SNS and the
  events queue, SendGrid's signed event webhook), webhooks on (the local receiver), delivery
  status on (DynamoDB on moto's server);
- **bare**: events, webhooks and status off.

Each run warms up, then times `gomail send --count N --concurrency C` until the email queues are
empty (end to end: posted, sent by a provider, settled), waits for the events and webhook queues
to drain, and counts what the N emails cost: every process of the stack runs through
bench/counted.py, which counts its AWS calls (SQS split by queue: email, events, webhook;
DynamoDB read and write units) and the SNS notifications its receives returned (one SNS
publish each: SES's reports reach the events queue that way); the webhook receiver counts
the POSTs it got. Prices: `bench.common.PRICE_PER_REQUEST` (list prices) and SNS's publish
price, `SNS_PRICE_PER_PUBLISH`. SES's own per-email price is the same in both runs and left out.

The summary's ratio is shipped end-to-end emails/s over bare's (target >= 0.85).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    PRICE_PER_REQUEST,
    ROOT,
    CpuMeter,
    bench_parser,
    cost_per_million,
    default_sizes,
    header,
    priced_kinds,
    table,
    temp_dir,
)

# SNS standard topics, us-east-1 list price as of 2026-11: $0.50 per million publishes (each 64 KiB
# of payload one publish); deliveries to SQS are free.
SNS_PRICE_PER_PUBLISH = 0.50 / 1e6
RUNS = ("shipped", "bare")
UP_START_S = 240.0  # LocalStack, moto, the children: slow on a loaded machine
SETTLE_QUIET_S = 4.0  # the events and webhook queues empty this long: nothing more is coming


# -- the stack, in a child process of its own --------------------------------------------------


def serve_up(config: Path, bare: bool, out: Path, nodes: int) -> None:
    """`gomail up` with its children counted (bench/counted.py) and its webhook receiver's POSTs
    counted; SIGUSR1 writes every count (the children's to out/<child>.json, the receiver's to
    out/receiver.json); SIGTERM stops it as Ctrl-C does."""
    import gomailpy_local.up as up
    from gomailpy.config.settings import load_settings
    from gomailpy.operating.eventloop import run
    from gomailpy_local.receiver import WebhookReceiver

    children: list[asyncio.subprocess.Process] = []
    receivers: list[WebhookReceiver] = []

    class CountedReceiver(WebhookReceiver):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            receivers.append(self)

    async def spawn(
        args: list[str], env: dict[str, str], log_path: Path
    ) -> asyncio.subprocess.Process:
        counted = {**env, "GOMAILPY_BENCH_CALLS": str(out / f"{log_path.stem}.json")}
        command = ["-m", "bench.counted", *args]
        if bare and args[0] == "bounces":
            # the SMTP bounce listener feeds the events queue, which bare has not: a stand-in
            # that idles, so that `gomail up` does not stop for a child that exited
            command = ["-c", "import signal as s; s.signal(s.SIGUSR1, s.SIG_IGN); s.pause()"]
        with log_path.open("ab") as log:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                *command,
                env=counted,
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        children.append(child)
        return child

    def dump(*_: Any) -> None:
        for child in children:
            if child.returncode is None:
                child.send_signal(signal.SIGUSR1)
        posts = sum(r.requests for r in receivers)
        events = sum(len(r.webhook_ids) for r in receivers)
        (out / "receiver.json").write_text(json.dumps({"posts": posts, "deliveries": events}))

    setattr(up, "_spawn", spawn)  # noqa: B010
    setattr(up, "WebhookReceiver", CountedReceiver)  # noqa: B010
    if bare:  # `gomail up` turns events and webhooks on by itself: here it does not
        setattr(up, "_with_events", lambda settings, keys: settings)  # noqa: B010
        setattr(up, "with_local_receiver", lambda settings, receiver: settings)  # noqa: B010
    settings = load_settings(config)
    options = up.UpOptions(
        nodes=nodes,
        api_port=0,
        open_browser=False,
        status_interval_s=5.0,
        state_file=out / "up.json",
    )

    async def main() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)
        await up.run_up(settings, options, echo=lambda line: print(line, flush=True))

    run(main())


# -- the bench ---------------------------------------------------------------------------------


def config_for(run: str, directory: Path) -> Path:
    data = yaml.safe_load((ROOT / "config" / "gomailpy.yaml").read_text())
    data["aws"]["endpoint_url"] = None  # a LocalStack of this run's own, on a free port
    data["logging"]["level"] = "WARNING"
    if run == "bare":
        data["status"]["backend"] = "none"
        data["webhooks"]["enabled"] = False
        data.setdefault("events", {})["enabled"] = False
    path = directory / f"{run}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Counts:
    """What the stack's processes counted, summed (bench/counted.py's files, the receiver's)."""

    def __init__(self, out: Path) -> None:
        self.calls: Counter[str] = Counter()
        self.entries: Counter[str] = Counter()
        self.by_queue: Counter[str] = Counter()
        self.sns = 0
        self.posts = 0
        for path in out.glob("*.json"):
            if path.name in ("up.json", "receiver.json"):
                continue
            data = json.loads(path.read_text())
            self.calls.update(data.get("calls", {}))
            self.entries.update(data.get("entries", {}))
            self.by_queue.update(data.get("by_queue", {}))
            self.sns += sum(data.get("sns", {}).values())
        receiver = out / "receiver.json"
        if receiver.exists():
            self.posts = int(json.loads(receiver.read_text())["posts"])

    def minus(self, before: Counts) -> Counts:
        done = Counts.__new__(Counts)
        done.calls = self.calls - before.calls
        done.entries = self.entries - before.entries
        done.by_queue = self.by_queue - before.by_queue
        done.sns = self.sns - before.sns
        done.posts = self.posts - before.posts
        return done


def read_counts(up: subprocess.Popen[bytes], out: Path, children: int) -> Counts:
    for path in out.glob("*.json"):
        if path.name != "up.json":
            path.unlink()
    up.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        present = {p.name for p in out.glob("*.json")} - {"up.json"}
        # the receiver, the API, SMTP submission, the nodes (and the bounce listener) each
        if len(present) >= children:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # the last writers finish their files
    return Counts(out)


async def depths(queues: Any, state: dict[str, Any], settings: Any) -> dict[str, int]:
    """Messages in each kind of queue (visible + in flight + delayed): email, events, webhook."""
    kinds = {"email": list(state["queues"])}
    if settings.events.enabled:
        kinds["events"] = [settings.events.queue]
    if settings.webhooks.enabled:
        kinds["webhook"] = [settings.webhooks.queue]
    found: dict[str, int] = {}
    for kind, names in kinds.items():
        total = 0
        for name in names:
            try:
                total += (await queues.depth(await queues.resolve(name))).total
            except Exception:  # not created (yet): nothing in it
                pass
        found[kind] = total
    return found


def stack_settings(config: Path, state: dict[str, Any], run: str) -> Any:
    from gomailpy.config.settings import Settings

    data = yaml.safe_load(config.read_text())
    data["aws"]["endpoint_url"] = state["endpoint_url"]
    if run == "shipped":
        data.setdefault("events", {})["enabled"] = True
        data["webhooks"]["enabled"] = True
    return Settings.model_validate(data)


def wait_until(
    settings: Any, state: dict[str, Any], empty: tuple[str, ...], limit_s: float
) -> float:
    """Seconds until the queues of the kinds in `empty` hold nothing (SETTLE_QUIET_S long when
    the events or webhook queues are among them: reports keep coming after the sends)."""
    from gomailpy.queues.sqs import create_queue_client

    async def wait() -> float:
        t0 = time.perf_counter()
        quiet_since: float | None = None
        quiet_for = SETTLE_QUIET_S if set(empty) - {"email"} else 0.0
        found: dict[str, int] = {}
        async with create_queue_client(settings) as queues:  # one client: polls are cheap
            while time.perf_counter() - t0 < limit_s:
                found = await depths(queues, state, settings)
                now = time.perf_counter()
                if all(found.get(kind, 0) == 0 for kind in empty):
                    quiet_since = quiet_since or now
                    if now - quiet_since >= quiet_for:
                        return quiet_since - t0
                else:
                    quiet_since = None
                await asyncio.sleep(0.2)
        print(f"  (queues not empty after {limit_s:.0f} s: {found})", file=sys.stderr)
        return time.perf_counter() - t0

    return asyncio.run(wait())


def children_of(pid: int) -> list[int]:
    """Children of every thread of a process (LocalStack is started from a worker thread, and
    /proc lists a child under the thread that started it)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def stack_pids(root: int) -> dict[str, int | None | list[int]]:
    """The stack's processes by part: LocalStack, moto, the API, the nodes, and `gomail up`'s
    own (stand-ins, webhook receiver) with anything else it runs."""
    parts: dict[str, list[int]] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        todo += children_of(pid)
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "localstack" in command.lower():
            part = "localstack"
        elif "moto.server" in command:
            part = "moto"
        elif "bench.counted pipeline" in command:
            part = "nodes"
        elif "bench.counted api" in command:
            part = "api"
        else:
            part = "up"
        parts.setdefault(part, []).append(pid)
    return dict(parts)  # type: ignore[arg-type]


def send(api_url: str, count: int, concurrency: int, log: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    with log.open("ab") as out:
        done = subprocess.run(
            [sys.executable, "-m", "gomailpy_cli.main", "send", "--api", api_url]
            + ["--count", str(count), "--concurrency", str(concurrency)],
            stdout=subprocess.PIPE,
            stderr=out,
            cwd=ROOT,
            env={**os.environ, "GOMAILPY_UP_STATE": str(log.parent / "none.json")},
        )
    return time.perf_counter() - t0, done.stdout.decode().strip().splitlines()[-1]


class StackDied(Exception):
    """The run is not one to measure: the stack stopped under it (a child exited: a free port
    taken by another process between `gomail up` choosing it and the child binding it, on a
    shared machine), or the API refused some of the emails (503: the queue server too slow for
    the enqueue deadline)."""


def measure(run: str, args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    for attempt in range(1, 4):
        try:
            return measure_once(run, args, directory / f"{run}-{attempt}")
        except StackDied as exc:
            print(f"  {run}: not a clean run ({exc}); again", file=sys.stderr)
    raise SystemExit(f"gomail up ({run}) stopped under three runs; see {directory}")


def measure_once(run: str, args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    directory.mkdir()
    config = config_for(run, directory)
    out = directory / run
    out.mkdir()
    log = directory / f"{run}-up.log"
    with log.open("ab") as up_log:
        up = subprocess.Popen(
            [sys.executable, "-m", "bench.features", "--serve-up", str(config)]
            + ["--out", str(out), "--nodes", str(args.nodes)]
            + (["--bare"] if run == "bare" else []),
            stdout=up_log,
            stderr=up_log,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + UP_START_S
        while not (out / "up.json").exists():
            if up.poll() is not None or time.monotonic() > deadline:
                raise StackDied(f"did not start; see {log}")
            time.sleep(0.5)
        state = json.loads((out / "up.json").read_text())
        settings = stack_settings(config, state, run)
        kinds = ("email", "events", "webhook") if run == "shipped" else ("email",)
        files = 3 + args.nodes + (run == "shipped")  # receiver, API, submission, nodes, bounces
        send(state["api_url"], args.warmup, args.concurrency, directory / "send.log")
        wait_until(settings, state, kinds, 120)
        if up.poll() is not None:
            raise StackDied(f"see {log}")
        before = read_counts(up, out, files)
        load = os.getloadavg()[0]
        cpu = CpuMeter(stack_pids(up.pid)).start()
        t0 = time.perf_counter()
        sent_s, answer = send(
            state["api_url"], args.count, args.concurrency, directory / "send.log"
        )
        drained_s = (time.perf_counter() - t0) + wait_until(settings, state, ("email",), 600)
        cpu.stop()
        if up.poll() is not None or not answer.startswith(f"{args.count} of"):
            raise StackDied(f"{answer}; see {log}")
        wait_until(settings, state, kinds, 180)
        counts = read_counts(up, out, files).minus(before)
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
    print(f"  {run}: gomail send: {answer}; load average {load:.1f}", file=sys.stderr)
    return {
        "run": run,
        "posted_s": sent_s,
        "e2e_s": drained_s,
        "counts": counts,
        "load": load,
        "cpu": cpu.text(),
        "queues": queue_kinds(settings, state),
    }


def queue_kinds(settings: Any, state: dict[str, Any]) -> dict[str, str]:
    """Queue name -> kind (email, events, webhook; their dead-letter queues "dlq")."""
    from gomailpy.queues.sqs import queue_name

    kinds = {queue_name(q): "email" for q in state["queues"]}
    kinds[queue_name(settings.events.queue)] = "events"
    kinds[queue_name(settings.webhooks.queue)] = "webhook"
    suffix = settings.queues.dlq_suffix
    kinds.update({name + suffix: "dlq" for name in list(kinds)})
    return kinds


def per_email(result: dict[str, Any], count: int) -> dict[str, float]:
    counts: Counts = result["counts"]
    by_kind: Counter[str] = Counter()
    for key, n in counts.by_queue.items():
        queue = key.rsplit(" ", 1)[0]
        by_kind[result["queues"].get(queue, "other")] += n
    priced = priced_kinds(counts.calls, counts.entries)
    return {
        "SQS email": by_kind["email"] / count,
        "SQS events": by_kind["events"] / count,
        "SQS webhook": by_kind["webhook"] / count,
        "SQS other": (priced["SQS"] - sum(by_kind[k] for k in ("email", "events", "webhook")))
        / count,
        "SNS publish": counts.sns / count,
        "DynamoDB read": priced["DynamoDB read"] / count,
        "DynamoDB write": priced["DynamoDB write"] / count,
        "webhook POST": counts.posts / count,
    }


def dollars(row: dict[str, float]) -> float:
    sqs = sum(v for k, v in row.items() if k.startswith("SQS "))
    priced = {
        "SQS": sqs,
        "DynamoDB read": row["DynamoDB read"],
        "DynamoDB write": row["DynamoDB write"],
    }
    return cost_per_million(priced) + SNS_PRICE_PER_PUBLISH * row["SNS publish"] * 1e6


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--count", type=int, default=None, help="emails per run (2000)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--nodes", type=int, default=2, help="pipeline nodes (make up's 2)")
    parser.add_argument("--warmup", type=int, default=None, help="emails sent first (100)")
    parser.add_argument("--serve-up", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_up is not None:
        serve_up(args.serve_up, args.bare, args.out, args.nodes)
        return
    default_sizes(args, count=(200, 2000), warmup=(20, 100))
    header(f"bench.features: gomail up shipped vs bare, {args.count:,} emails", args.quick)
    directory = temp_dir()
    results = {run: measure(run, args, directory) for run in RUNS}
    rows = {run: per_email(results[run], args.count) for run in RUNS}
    kinds = list(rows["shipped"])
    print(
        table(
            ["per email", *RUNS],
            [[kind, *(f"{rows[run][kind]:.3f}" for run in RUNS)] for kind in kinds]
            + [["cost per million emails", *(f"${dollars(rows[run]):.2f}" for run in RUNS)]],
        )
    )
    rates = {run: args.count / results[run]["e2e_s"] for run in RUNS}
    print(
        table(
            ["run", "posted/s", "end to end/s", "load average", "CPU until drained (% of a core)"],
            [
                [
                    run,
                    args.count / results[run]["posted_s"],
                    rates[run],
                    f"{results[run]['load']:.1f}",
                    results[run]["cpu"],
                ]
                for run in RUNS
            ],
        )
    )
    for run in RUNS:
        counts = results[run]["counts"]
        print(f"{run} calls: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.calls.items())))
        if counts.by_queue:
            print(
                f"{run} by queue / item kind: "
                + ", ".join(f"{k} {n}" for k, n in sorted(counts.by_queue.items()))
            )
    prices = ", ".join(f"{k} ${v * 1e6:.2f}/M" for k, v in PRICE_PER_REQUEST.items())
    print(f"prices: {prices}, SNS publish ${SNS_PRICE_PER_PUBLISH * 1e6:.2f}/M (list, us-east-1)")
    ratio = rates["shipped"] / rates["bare"]
    shipped, bare = dollars(rows["shipped"]), dollars(rows["bare"])
    loads = f"{results['shipped']['load']:.1f}/{results['bare']['load']:.1f}"
    print(
        f"summary: shipped {rates['shipped']:,.0f} vs bare {rates['bare']:,.0f} emails/s end to"
        f" end = ratio {ratio:.2f} (target >= 0.85); cost per million emails ${shipped:.2f}"
        f" shipped vs ${bare:.2f} bare; {args.count:,} emails, concurrency {args.concurrency},"
        f" load average {loads}"
    )


if __name__ == "__main__":
    main()
