"""What the bench scripts share: a LocalStack of their own, settings, SQS call counting, tables.

Every script starts its own LocalStack (gomailpy_local.localstack) on a free port and stops it on
exit, so the numbers of one run are measured against one server, warmed up the same way. Settings,
requests and the provider at the network boundary are the tests' own (tests.support,
tests.boundary), with the bench's defaults on top.
"""

from __future__ import annotations

import contextlib
import math
import os
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

from gomailpy.settings import Settings  # noqa: E402
from gomailpy_local.localstack import LocalStack  # noqa: E402
from tests.support import email_request, make_envelope, make_settings, merge  # noqa: E402


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


class CpuMeter:
    """CPU used by some processes between `start()` and `stop()`, as % of one core."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self._before: dict[str, float] = {}
        self._t0 = 0.0
        self.percent: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self._t0 = time.perf_counter()
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self._t0
        self.percent = {
            name: 100 * (cpu_seconds(pid) - self._before[name]) / elapsed
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


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- counting SQS calls -----------------------------------------------------------------------


class SqsCalls:
    """Counts SQS calls by operation through botocore's event hooks (one event per call;
    retries of a call are not counted again)."""

    def __init__(self) -> None:
        self.by_operation: Counter[str] = Counter()
        self.entries: Counter[str] = Counter()  # batch entries (or messages asked), per operation

    def __call__(self, event_name: str, params: dict[str, Any] | None = None, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        self.by_operation[operation] += 1
        if params:
            if "Entries" in params:
                self.entries[operation] += len(params["Entries"])

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"calls": dict(self.by_operation), "entries": dict(self.entries)}

    @staticmethod
    def load(path: Path) -> tuple[Counter[str], Counter[str]]:
        import json

        data = json.loads(path.read_text()) if path.exists() else {}
        return Counter(data.get("calls", {})), Counter(data.get("entries", {}))

    @property
    def total(self) -> int:
        return sum(self.by_operation.values())

    def snapshot(self) -> Counter[str]:
        return Counter(self.by_operation)

    def install(self) -> None:
        """Count every SQS client this process opens from now on (gomailpy.aws.get_session)."""
        import aiobotocore.session

        import gomailpy.aws

        def counting_session() -> aiobotocore.session.AioSession:
            session = aiobotocore.session.get_session()
            session.register("before-parameter-build.sqs", self)
            return session

        setattr(gomailpy.aws, "get_session", counting_session)  # noqa: B010


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


def typical_body() -> str:
    """An encoded envelope of a typical small email, as the API puts it on a queue."""
    body = typical_request(0)["email"]["body"]
    return make_envelope(0, body=body).encode()
