"""`python -m bench [--quick] [--only serializer,pipeline,...,inflight,autoscale] ...`

Prints a Markdown table, writes bench/results/<UTC timestamp>.json and (unless --no-readme)
replaces the results section of bench/README.md with the table.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import common

ALL = ("serializer", "pipeline", "latency", "operator", "memory", "inflight", "autoscale")
README = common.REPO / "bench" / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--only", default=",".join(ALL), help=f"comma list of {', '.join(ALL)}")
    p.add_argument("--quick", action="store_true", help="small sizes, a few minutes in all")
    p.add_argument("--serializer-records", type=int, help="records per timing round")
    p.add_argument("--batches", help="pipeline batch sizes, e.g. 10,100")
    p.add_argument("--inflights", help="pipeline maxInFlight values, e.g. 1,4,16,32")
    p.add_argument(
        "--endpoint",
        choices=("emulator", "lean", "both"),
        help="pipeline Lambda endpoint: the emulator gateway (real handler code), the lean "
        "stand-in for a remote endpoint (bench/endpoint.py), or both (default; quick: emulator)",
    )
    p.add_argument(
        "--replicas",
        help="pipeline scale-out: runtime processes on one Shared subscription at the largest "
        "maxInFlight, e.g. 2 (default 2; quick: none)",
    )
    p.add_argument("--seconds", type=float, help="target seconds per pipeline case")
    p.add_argument("--max-messages", type=int, help="cap on messages per pipeline case")
    p.add_argument("--latency-seconds", type=float, help="produce time per latency case")
    p.add_argument("--operator-sizes", help="LambdaSink counts, e.g. 100,500")
    p.add_argument("--memory-messages", type=int, help="messages of the sustained-load run")
    p.add_argument("--inflight-messages", type=int, help="messages per in-flight case")
    p.add_argument("--inflight-rounds", type=int, help="rounds of the in-flight A/B")
    p.add_argument("--no-readme", action="store_true", help="do not update bench/README.md")
    a = p.parse_args(argv)
    q = a.quick
    a.serializer_records = a.serializer_records or (3000 if q else 20000)
    a.batches = _ints(a.batches or ("10" if q else "10,100"))
    a.inflights = _ints(a.inflights or ("1,16" if q else "1,4,16,32"))
    a.replicas = _ints(a.replicas or ("1" if q else "2"))
    a.endpoint = a.endpoint or ("emulator" if q else "both")
    a.endpoints = ["emulator", "lean"] if a.endpoint == "both" else [a.endpoint]
    a.seconds = a.seconds or (5 if q else 15)
    a.max_messages = a.max_messages or (10000 if q else 150000)
    a.latency_seconds = a.latency_seconds or (6 if q else 30)
    a.operator_sizes = _ints(a.operator_sizes or ("20" if q else "100,500"))
    a.memory_messages = a.memory_messages or (10000 if q else 400000)
    a.inflight_messages = a.inflight_messages or (2000 if q else 6000)
    a.inflight_rounds = a.inflight_rounds or (1 if q else 2)
    a.only = [x.strip() for x in a.only.split(",") if x.strip()]
    unknown = set(a.only) - set(ALL)
    if unknown:
        p.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(ALL)}")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    meta: dict[str, Any] = {
        "started": started,
        "command": " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)]),
        "machine": common.machine(),
        "loadAtStart": common.load(),
        "quick": a.quick,
    }
    rows: list[common.Row] = []
    failures: list[str] = []
    stack: dict[str, Any] | None = None

    def need_stack() -> dict[str, Any]:
        nonlocal stack
        if stack is None:
            stack = common.stack_json()
        return stack

    def section(name: str, fn: Callable[[], list[common.Row]]) -> None:
        if name not in a.only:
            return
        print(f"== {name} (load {common.load()})", flush=True)
        t0 = time.monotonic()
        try:
            rows.extend(fn())
        except Exception as exc:
            traceback.print_exc()
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
        print(f"   {name} took {time.monotonic() - t0:.0f}s", flush=True)

    from . import autoscale, inflight, latency, operator_scale, pipeline, serializer  # noqa: PLC0415

    section("serializer", lambda: serializer.run(a.serializer_records, 3 if a.quick else 5))
    section(
        "pipeline",
        lambda: pipeline.run(
            need_stack(),
            batches=a.batches,
            inflights=a.inflights,
            seconds=a.seconds,
            max_messages=a.max_messages,
            endpoints=a.endpoints,
            replicas=a.replicas,
        ),
    )
    section("latency", lambda: latency.run(need_stack(), seconds=a.latency_seconds))
    with common.tempdir() as wd:
        section(
            "operator",
            lambda: operator_scale.run(need_stack(), sizes=a.operator_sizes, workdir=wd),
        )
        section("autoscale", lambda: autoscale.run(need_stack(), workdir=wd))
    section(
        "memory",
        lambda: pipeline.run_memory(
            need_stack(), messages=a.memory_messages, batch=100, inflight=16
        ),
    )
    section(
        "inflight",
        lambda: inflight.run(need_stack(), messages=a.inflight_messages, rounds=a.inflight_rounds),
    )
    meta["loadAtEnd"] = common.load()
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    meta["failures"] = failures
    text = common.table(rows)
    print()
    print(text)
    path = common.write_results(rows, meta)
    print(f"\nresults: {path}")
    if not a.no_readme:
        _update_readme(text, meta)
    for f in failures:
        print(f"FAILED {f}", file=sys.stderr)
    return 1 if failures else 0


def _update_readme(text: str, meta: dict[str, Any]) -> None:
    if not README.exists():
        return
    m = meta["machine"]
    block = (
        f"{BEGIN}\n"
        f"Run {meta['started']} to {meta['finished']}: `{meta['command']}`"
        f"{' (quick)' if meta['quick'] else ''}; {m['cpus']} x {m['cpuModel']}, "
        f"{m['memGiB']} GiB, Python {m['python']}; load average at start "
        f"{meta['loadAtStart']}, at end {meta['loadAtEnd']} (machine shared with other jobs)."
        f"\n\n{text}\n{END}"
    )
    doc = README.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if pattern.search(doc):
        doc = pattern.sub(lambda _m: block, doc)
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    README.write_text(doc)


if __name__ == "__main__":
    sys.exit(main())
