"""Shared helpers: the stack description, process statistics, result rows and the table.

Every figure is a ratio against a baseline measured in the same run, because the machine
(2 cores) is shared with other jobs: absolute numbers drift, ratios much less.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Row:
    """One result line: `value` (in `unit`) and, when there is one, its same-run baseline."""

    bench: str
    case: str
    value: float | None
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    goal: str = ""
    ok: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stack_json() -> dict[str, Any]:
    state = Path(os.environ.get("LAMBDASINK_STATE_DIR") or REPO / ".stack")
    path = state / "stack.json"
    if not path.exists():
        raise SystemExit(f"{path} not found: start the stack first (make stack-up)")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process (utime + stime of /proc/<pid>/stat)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields_ = raw[raw.rindex(")") + 2 :].split()
    return (int(fields_[11]) + int(fields_[12])) / CLK_TCK


def proc_rss_mib(pid: int) -> float:
    """Resident set size in MiB (/proc/<pid>/statm)."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE / 2**20


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem_kib = int(first.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpuModel": model,
        "memGiB": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    if v != v:  # NaN
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def table(rows: list[Row]) -> str:
    """A Markdown table (printed, and pasted into bench/README.md)."""
    head = ["benchmark", "case", "value", "unit", "baseline", "ratio", "goal", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        met = "-" if r.ok is None else ("yes" if r.ok else "NO")
        cells = [
            r.bench,
            r.case,
            fmt(r.value),
            r.unit,
            fmt(r.baseline),
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.goal,
            met,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(rows: list[Row], meta: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS_DIR / f"{stamp}.json"
    doc = {**meta, "rows": [r.as_dict() for r in rows]}
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


@contextlib.contextmanager
def tempdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="lambdasink-bench-") as d:
        yield Path(d)
