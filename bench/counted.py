"""Run a `gomail` command (api, pipeline) with its SQS calls counted, for the bench scripts.

    python -m bench.counted api --config FILE        # GOMAILPY_BENCH_CALLS=out.json

Every SQS call the process makes is counted by operation through botocore's event hooks
(`bench.common.SqsCalls`); the counts are written as JSON to $GOMAILPY_BENCH_CALLS when it exits,
and on SIGUSR1 (so a bench can read them while the process keeps running). SQS calls are also
counted per queue (`by_queue`: "queue name Operation" -> calls), with the messages each queue's
receives returned and how many of those were SNS notifications (`received`, `sns`: one SNS
publish each), for bench/features.py.
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


class QueueCalls(SqsCalls):
    """`SqsCalls`, and SQS calls by queue, and what each queue's receives returned."""

    def __init__(self) -> None:
        super().__init__()
        self.by_queue: dict[str, int] = {}
        self.received: dict[str, int] = {}
        self.sns: dict[str, int] = {}

    def __call__(self, event_name: str, params: dict[str, Any] | None = None, **kw: Any) -> None:
        super().__call__(event_name, params, **kw)
        _event, service, operation = event_name.split(".", 2)
        if service == "sqs" and params and "QueueUrl" in params:
            queue = str(params["QueueUrl"]).rsplit("/", 1)[-1]
            key = f"{queue} {operation}"
            self.by_queue[key] = self.by_queue.get(key, 0) + 1
            context = kw.get("context")
            if isinstance(context, dict):  # for the after-call hook of the same request
                context["bench_queue"] = queue
        elif service == "dynamodb" and params and "Key" in params:
            # which kind of item a single-item call is for: "msg#", "evt#m:", "whk#", ...
            pk = str(params["Key"].get("pk", {}).get("S", "?"))
            head, mark, rest = pk.partition("#")
            kind = head + mark + (rest[:2] if rest[1:2] == ":" else "")
            key = f"dynamodb {kind} {operation}"
            self.by_queue[key] = self.by_queue.get(key, 0) + 1

    def install(self) -> None:
        super().install()
        import gomailpy.queues.aws

        counting = gomailpy.queues.aws.get_session

        def session() -> Any:
            made = counting()
            made.register("after-call.sqs.ReceiveMessage", self._after_receive)
            return made

        setattr(gomailpy.queues.aws, "get_session", session)  # noqa: B010

    def _after_receive(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        queue = str(context.get("bench_queue", "?"))
        messages = parsed.get("Messages") or []
        self.received[queue] = self.received.get(queue, 0) + len(messages)
        # SES's reports reach the events queue through SNS: one publish per notification
        sns = sum(1 for m in messages if '"TopicArn"' in str(m.get("Body", "")))
        if sns:
            self.sns[queue] = self.sns.get(queue, 0) + sns

    def as_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {
            **super().as_dict(),
            "by_queue": self.by_queue,
            "received": self.received,
            "sns": self.sns,
        }


calls = QueueCalls()
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
