"""Smoke run of every benchmark script (bench/*.py, run as `python -m bench.<script>` from the
repository's root, as the Makefile and bench/README.md run them) with --quick: it runs to the end
and prints a summary line with a ratio. Nothing here judges a number: benchmarks are not run by
CI, and a time is never asserted; this only keeps the scripts from rotting."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
# The scripts that report a ratio against a ceiling (bench/soak.py, a fault soak, does not;
# bench/form_timeout.py counts answers against no ceiling and starts a whole gomail up).
SCRIPTS = [
    "api_throughput.py",
    "bounces.py",
    "events.py",
    "features.py",
    "pipeline_drain.py",
    "provider_cpu.py",
    "scale.py",
    "sqs_calls.py",
    "status_store.py",
    "webhooks.py",
]
SUMMARY = re.compile(r"^summary: .*\bratio \d+\.\d+", re.MULTILINE)

pytestmark = pytest.mark.slow  # each script starts a LocalStack of its own


def test_every_documented_script_is_smoke_tested() -> None:
    readme = (BENCH / "README.md").read_text()
    assert SCRIPTS, "no bench scripts found"
    for script in SCRIPTS:
        assert f"bench/{script}" in readme, f"bench/README.md does not describe {script}"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_runs_quick_and_prints_a_ratio(script: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{script.removesuffix('.py')}", "--quick"],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=BENCH.parent,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert SUMMARY.search(done.stdout), f"{script} printed no summary with a ratio:\n{done.stdout}"
