"""What the bench scripts share: a LocalStack of their own, settings, SQS call counting, tables.

Every script starts its own LocalStack (gomailpy_local.localstack) on a free port and stops it on
exit, so the numbers of one run are measured against one server, warmed up the same way. Settings,
requests and the provider at the network boundary are the tests' own (tests.support,
tests.boundary), with the bench's defaults on top.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent

# The emulator takes any credentials; never send a real key to it.
os.environ.update(
    AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
)
for leaked in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(leaked, None)

from gomailpy.config.settings import Settings  # noqa: E402
from gomailpy_local.localstack import LocalStack  # noqa: E402
from tests.support import email_request, make_envelope, make_settings, merge  # noqa: E402


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """A script's parser: described by the first line of its docstring, with `--quick` (the
    smoke test's tiny run, bench's test) for sizes left unset (`default_sizes`)."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    return parser


def default_sizes(args: argparse.Namespace, **sizes: tuple[Any, Any]) -> None:
    """Give each size not set on the command line its (quick, full) default."""
    for name, (quick, full) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)


@contextlib.contextmanager
def localstack() -> Iterator[LocalStack]:
    """A LocalStack of this script's own (`.endpoint_url`, `.process.pid`)."""
    with LocalStack.start(progress=lambda line: print(line, file=sys.stderr)) as stack:
        yield stack


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) a process has used so far; None: this process."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu(pid: int | None | list[int]) -> float:
    return sum(cpu_seconds(p) for p in pid) if isinstance(pid, list) else cpu_seconds(pid)


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (Linux)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


class CpuMeter:
    """CPU used by some processes between `start()` and `stop()`, as % of one core."""

    def __init__(self, pids: dict[str, int | None | list[int]]) -> None:
        self.pids = pids
        self._before: dict[str, float] = {}
        self._t0 = 0.0
        self.percent: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self._t0 = time.perf_counter()
        self._before = {name: _cpu(pid) for name, pid in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self._t0
        self.percent = {
            name: 100 * (_cpu(pid) - self._before[name]) / elapsed
            for name, pid in self.pids.items()
        }
        return self.percent

    def text(self) -> str:
        return " ".join(f"{name} {value:.0f}%" for name, value in self.percent.items())


def bench_settings(endpoint: str, queue_count: int = 2, **sections: dict[str, Any]) -> Settings:
    """The tests' settings (tests.support.make_settings: fresh queue names, loopback ports) on
    this script's LocalStack, with the bench's defaults; `sections` override keys."""
    defaults: dict[str, Any] = {
        "aws": {"client_timeout_s": 10},
        "queues": {"visibility_timeout_s": 60},
        "pipeline": {"send_timeout_s": 10},  # production's default
        "logging": {"level": "WARNING"},  # a log line per email would be measured too
    }
    return make_settings(endpoint, queue_count, **merge(defaults, sections))


def write_config(settings: Settings, directory: Path, name: str) -> Path:
    """`settings` as a YAML file a child process can take with --config (no secrets in it)."""
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    return path


def temp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="gomailpy-bench-"))


def spawn(
    args: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    *,
    python_args: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """A `gomail ...` child process of this interpreter (through bench/counted.py, which counts
    its SQS calls into $GOMAILPY_BENCH_CALLS), its output in `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *python_args, "-m", "bench.counted", *args],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )


def stop(child: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextlib.contextmanager
def flame_graph(pid: int | None, svg: Path | None, rate_hz: int = 100) -> Iterator[None]:
    """Sample `pid` (None: this process) with py-spy while the block runs and write a flame graph
    to `svg`; nothing when `svg` is None. py-spy needs ptrace rights on the process (root, or
    kernel.yama.ptrace_scope 0); without them it says so in its log (a temporary file, named
    on stderr) and the bench goes on."""
    if svg is None:
        yield
        return
    svg.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    with tempfile.NamedTemporaryFile(prefix="py-spy-", suffix=".log", delete=False) as log:
        print(f"py-spy: recording {svg} (log: {log.name})", file=sys.stderr)
        recorder = subprocess.Popen(
            [str(spy), "record", "--pid", str(pid or os.getpid()), "--rate", str(rate_hz)]
            + ["--format", "flamegraph", "--output", str(svg), "--nonblocking"],
            stdout=log,
            stderr=log,
        )
        try:
            yield
        finally:
            recorder.send_signal(signal.SIGINT)  # py-spy writes the graph when interrupted
            try:
                recorder.wait(30)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait()


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- counting SQS calls -----------------------------------------------------------------------


# The services whose requests the bench counts, by botocore's service name, and how a request
# is shown ("SQS", ...). Keys of `AwsCalls.by_operation` are "Operation" for SQS (as before) and
# "service:Operation" for the others.
COUNTED_SERVICES = {"sqs": "SQS", "dynamodb": "DynamoDB", "s3": "S3"}


class SqsCalls:
    """Counts AWS calls by operation through botocore's event hooks (one event per call;
    retries of a call are not counted again): SQS operations under their own name, DynamoDB
    and S3 ones as "dynamodb:Operation" and "s3:Operation". `entries` counts the entries of
    batch calls (SQS `Entries`, DynamoDB items), so DynamoDB's request units can be told from
    its calls."""

    def __init__(self) -> None:
        self.by_operation: Counter[str] = Counter()
        self.entries: Counter[str] = Counter()  # batch entries (or messages asked), per operation

    def __call__(self, event_name: str, params: dict[str, Any] | None = None, **_: Any) -> None:
        # before-parameter-build.<service>.<Operation>
        _event, service, operation = event_name.split(".", 2)
        key = operation if service == "sqs" else f"{service}:{operation}"
        self.by_operation[key] += 1
        if params:
            if "Entries" in params:
                self.entries[key] += len(params["Entries"])
            elif "RequestItems" in params:  # BatchWriteItem / BatchGetItem
                self.entries[key] += sum(
                    len(v if isinstance(v, list) else v.get("Keys", []))
                    for v in params["RequestItems"].values()
                )
            elif "TransactItems" in params:
                self.entries[key] += len(params["TransactItems"])

    def by_service(self) -> Counter[str]:
        """Calls per service ("SQS", "DynamoDB", "S3")."""
        return calls_by_service(self.by_operation)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"calls": dict(self.by_operation), "entries": dict(self.entries)}

    @staticmethod
    def load(path: Path) -> tuple[Counter[str], Counter[str]]:
        """The counts written to `path`, plus those of `gomail api --workers N`'s workers
        (`path`.PID)."""
        import json

        calls: Counter[str] = Counter()
        entries: Counter[str] = Counter()
        for found in [path, *path.parent.glob(path.name + ".*")]:
            data = json.loads(found.read_text()) if found.exists() else {}
            calls.update(data.get("calls", {}))
            entries.update(data.get("entries", {}))
        return calls, entries

    @property
    def total(self) -> int:
        return sum(self.by_operation.values())

    def snapshot(self) -> Counter[str]:
        return Counter(self.by_operation)

    def install(self) -> None:
        """Count every SQS client this process opens from now on
        (gomailpy.queues.aws.get_session)."""
        import aiobotocore.session

        import gomailpy.queues.aws

        def counting_session() -> aiobotocore.session.AioSession:
            session = aiobotocore.session.get_session()
            for service in COUNTED_SERVICES:
                session.register(f"before-parameter-build.{service}", self)
            return session

        setattr(gomailpy.queues.aws, "get_session", counting_session)  # noqa: B010


def calls_by_service(by_operation: Counter[str]) -> Counter[str]:
    """Calls per service from counts keyed as `SqsCalls.by_operation` is."""
    out: Counter[str] = Counter()
    for key, n in by_operation.items():
        service = key.split(":", 1)[0] if ":" in key else "sqs"
        out[COUNTED_SERVICES.get(service, service)] += n
    return out


# -- what the requests cost ---------------------------------------------------------------------

# AWS list prices per request, us-east-1, as of 2026-11 (list prices, before any free tier or
# discount): SQS standard $0.40 per million requests (after the first million each month; a
# request of up to 64 KiB, which a batch of 10 typical emails is); DynamoDB on-demand $1.25 per
# million write request units and $0.25 per million read request units (one unit per item of up
# to 1 KiB written, or up to 4 KiB read strongly consistently); S3 Standard PUT $0.005 and GET
# $0.0004 per 1,000 requests.
PRICES_AS_OF = "2026-11"
PRICE_PER_REQUEST = {
    "SQS": 0.40 / 1e6,
    "DynamoDB write": 1.25 / 1e6,
    "DynamoDB read": 0.25 / 1e6,
    "S3 PUT": 0.005 / 1e3,
    "S3 GET": 0.0004 / 1e3,
}
# gomail (Go, 2016): a SendMessage, a share of a ReceiveMessage (10) and a DeleteMessage per email
GOMAIL_SQS_CALLS_PER_EMAIL = 2.1


def cost_per_million(per_email: dict[str, float]) -> float:
    """Dollars per million emails for requests per email keyed as PRICE_PER_REQUEST is."""
    return sum(PRICE_PER_REQUEST[kind] * n * 1e6 for kind, n in per_email.items())


def priced_kinds(by_operation: Counter[str], entries: Counter[str]) -> Counter[str]:
    """Requests (DynamoDB: request units, one per item) per priced kind, from call counts."""
    out: Counter[str] = Counter()
    for key, calls in by_operation.items():
        service, _, operation = key.rpartition(":")
        if not service:
            out["SQS"] += calls
        elif service == "dynamodb":
            units = entries.get(key, 0) or calls
            reading = operation.startswith(("Get", "BatchGet", "Query", "Scan", "Describe"))
            out["DynamoDB read" if reading else "DynamoDB write"] += units
        elif service == "s3":
            reading = operation.startswith(("Get", "Head", "List"))
            out["S3 GET" if reading else "S3 PUT"] += calls
    return out


def aws_cost_lines(per_email: dict[str, float], what: str) -> str:
    """Requests per email by service and what a million emails cost in them, at list prices,
    next to gomail's ~2.1 SQS calls per email."""
    shown = {kind: per_email.get(kind, 0.0) for kind in PRICE_PER_REQUEST}
    requests = ", ".join(f"{kind} {n:.3f}" for kind, n in shown.items())
    gomail = cost_per_million({"SQS": GOMAIL_SQS_CALLS_PER_EMAIL})
    return (
        f"AWS requests per email ({what}): {requests}\n"
        f"cost of those requests per million emails: ${cost_per_million(shown):.3f}"
        f" (gomail: {GOMAIL_SQS_CALLS_PER_EMAIL} SQS calls per email = ${gomail:.2f});"
        f" us-east-1 list prices as of {PRICES_AS_OF}: SQS $0.40/M requests, DynamoDB on-demand"
        " $1.25/M write units and $0.25/M read units, S3 PUT $0.005/1k and GET $0.0004/1k"
    )


# -- numbers ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.rjust(w) if n and i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def header(title: str, quick: bool) -> None:
    print(
        f"# {title}  ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores"
        f"{', --quick' if quick else ''})",
        flush=True,
    )


def typical_request(n: int) -> dict[str, Any]:
    """A typical small email request: the tests' valid request with a notification-sized body."""
    body = f"Body of email {n}: a short text of about the size of a notification."
    return email_request(n, body=body)


def typical_body(n: int = 0) -> str:
    """An encoded envelope of a typical small email, as the API puts it on a queue: a message id
    of its own on every call (a node sends an id it holds twice only once)."""
    body = typical_request(n)["email"]["body"]
    return make_envelope(n, body=body).encode()
