"""Bounce reading: messages read per second, the share read and the share classified, over the
corpora the tests use.

    .venv/bin/python -m bench.bounces [--quick] [--seconds S]

Corpora (all real messages no one here wrote, except `samples`):
- `flufl`: flufl.bounce's corpus (tests/data/bounces/flufl/, ~20 MTAs), 117 messages, 111 of
  them with addresses its own detectors expect (expected.json);
- `real`: a handful of Gmail, Yahoo, Outlook, Microsoft 365, Exim and qmail bounces
  (tests/data/bounces/real/);
- `samples`: the hand-written Postfix, Exchange, ARF and auto-reply samples of tests/test_dsn.py.

Per corpus: messages; **read** = the share of messages from which at least one recipient is
read (an event other than `unknown`); for flufl, also the share of the addresses its detectors
expect that are found; **classified** = the share of failure events (bounced, blocked,
deferred) whose reason is not `undefined`; hard/soft/blocked counts. Then the rate: every
message parsed by `gomailpy.feedback.dsn.read_message` in a loop for S seconds, in this process
(no queue, no LocalStack: this measures the reader alone).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from bench.common import bench_parser, default_sizes, header, table
from gomailpy.events import Event, EventType
from gomailpy.feedback.dsn import read_message

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "bounces"
FAILURES = (EventType.BOUNCED, EventType.BLOCKED, EventType.DEFERRED)


def corpora() -> dict[str, list[Path]]:
    return {
        "flufl": sorted((DATA / "flufl").glob("*.txt")),
        "real": sorted((DATA / "real").glob("*.eml")),
        "samples": sorted(DATA.glob("*.eml")),
    }


def measure(paths: list[Path]) -> tuple[Counter[str], list[list[Event]]]:
    results = [read_message(p.read_bytes()) for p in paths]
    read = sum(1 for events in results if any(e.type is not EventType.UNKNOWN for e in events))
    failures = [e for events in results for e in events if e.type in FAILURES]
    classified = sum(1 for e in failures if e.reason != "undefined")
    kinds = Counter(
        "blocked" if e.type is EventType.BLOCKED else f"{e.type.value}/{e.subtype or 'soft'}"
        for e in failures
    )
    others = [e for events in results for e in events if e.type not in FAILURES]
    return Counter(
        messages=len(paths),
        read=read,
        failures=len(failures),
        classified=classified,
        hard=kinds["bounced/hard"],
        soft=kinds["bounced/soft"] + kinds["deferred/soft"],
        blocked=kinds["blocked"],
        other=sum(1 for e in others if e.type is not EventType.UNKNOWN),
    ), results


def flufl_expected(paths: list[Path], results: list[list[Event]]) -> tuple[int, int]:
    expected = json.loads((DATA / "flufl" / "expected.json").read_text())
    wanted = found = 0
    for path, events in zip(paths, results, strict=True):
        addresses = {a.lower() for a in expected.get(path.name, {}).get("addresses", [])}
        read = {(e.recipient or "").lower() for e in events if e.type is not EventType.UNKNOWN}
        wanted += len(addresses)
        found += len(addresses & read)
    return found, wanted


def rate(paths: list[Path], seconds: float) -> tuple[float, int]:
    datas = [p.read_bytes() for p in paths]
    count, started = 0, time.perf_counter()
    while True:
        for data in datas:
            read_message(data)
        count += len(datas)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return count / elapsed, count


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=None, help="rate loop (default 5)")
    args = parser.parse_args()
    default_sizes(args, seconds=(0.5, 5.0))
    header("bounce reading", args.quick)

    rows, totals = [], Counter[str]()
    all_paths: list[Path] = []
    for name, paths in corpora().items():
        figures, results = measure(paths)
        all_paths += paths
        extra = ""
        if name == "flufl":
            found, wanted = flufl_expected(paths, results)
            extra = f"{found}/{wanted}"
        totals.update(figures)
        rows.append(_row(name, figures, extra))
    rows.append(_row("all", totals, ""))
    print(
        table(
            [
                "corpus",
                "messages",
                "read",
                "share read",
                "flufl addresses found",
                "failures",
                "classified",
                "share classified",
                "hard",
                "soft",
                "blocked",
                "other events",
            ],
            rows,
        )
    )
    per_second, count = rate(all_paths, args.seconds)
    print(f"\n{count:,} messages read in a loop: {per_second:,.0f} messages/s (one process)")
    share_read = totals["read"] / totals["messages"]
    share_classified = totals["classified"] / max(totals["failures"], 1)
    print(
        f"summary: {per_second:,.0f} messages/s; read ratio {share_read:.2f},"
        f" classified ratio {share_classified:.2f} over {totals['messages']} messages"
        f" (flufl, real, samples)"
    )


def _row(name: str, figures: Counter[str], extra: str) -> list[object]:
    messages, failures = figures["messages"], figures["failures"]
    read, classified = figures["read"], figures["classified"]
    return [
        name,
        messages,
        read,
        f"{read / max(messages, 1):.2f}",
        extra,
        failures,
        classified,
        f"{classified / max(failures, 1):.2f}",
        figures["hard"],
        figures["soft"],
        figures["blocked"],
        figures["other"],
    ]


if __name__ == "__main__":
    main()
