"""Run a `gomail` command (api, pipeline) with its SQS calls counted, for the bench scripts.

    python -m bench.counted api --config FILE        # GOMAILPY_BENCH_CALLS=out.json

Every SQS call the process makes is counted by operation through botocore's event hooks
(`bench.common.SqsCalls`); the counts are written as JSON to $GOMAILPY_BENCH_CALLS when it exits,
and on SIGUSR1 (so a bench can read them while the process keeps running).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bench.common import SqsCalls

calls = SqsCalls()
calls.install()


def write(*_: Any) -> None:
    out = os.environ.get("GOMAILPY_BENCH_CALLS")
    if out:
        if __name__ != "__main__":  # a worker of `gomail api --workers N`: a file of its own
            out = f"{out}.{os.getpid()}"
        Path(out).write_text(json.dumps(calls.as_dict()))


atexit.register(write)
signal.signal(signal.SIGUSR1, write)

from gomailpy_cli.main import cli  # noqa: E402

if __name__ == "__main__":
    sys.argv = ["gomail", *sys.argv[1:]]
    cli(prog_name="gomail")
