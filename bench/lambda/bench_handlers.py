"""Bench-only Lambda handlers, served by the bench's own gateway (dev/lambda_gateway.py).

`count`: counts the records of each event; the running total of this process is rewritten
(fixed width, one pwrite) to <record dir>/count-<function>-<pid> so the bench can sum them.
`busy`: `count` after holding its execution environment for BENCH_BUSY_MS (default 20) ms, so
that a function's concurrency is what limits it (the gateway's added latency is spent before an
environment is taken).
`arrival`: for each V2 item, writes "<produce time> <arrival time>" (epoch seconds) to
<record dir>/arrival-<function>-<pid>; the produce time is the "t" of the item's JSON value.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

_DIR = os.environ.get("LAMBDASINK_RECORD_DIR", "/tmp")
_NAME = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "bench")
_state: dict[str, int] = {"total": 0}  # also the open file descriptors, "count"/"arrival"


def count(event: Any, context: Any) -> dict[str, int]:
    n = len(event) if isinstance(event, list) else 1
    _state["total"] += n
    fd = _state.get("count")
    if fd is None:
        path = os.path.join(_DIR, f"count-{_NAME}-{os.getpid()}")
        fd = _state["count"] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.pwrite(fd, f"{_state['total']:20d}\n".encode(), 0)
    return {"count": n}


def busy(event: Any, context: Any) -> dict[str, int]:
    time.sleep(float(os.environ.get("BENCH_BUSY_MS", "20")) / 1000)
    return count(event, context)


def arrival(event: Any, context: Any) -> dict[str, int]:
    now = time.time()
    items = event if isinstance(event, list) else [event]
    fd = _state.get("arrival")
    if fd is None:
        path = os.path.join(_DIR, f"arrival-{_NAME}-{os.getpid()}")
        fd = _state["arrival"] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lines = []
    for item in items:
        value = item.get("value") if isinstance(item, dict) else None
        try:
            produced = float(json.loads(value)["t"])  # type: ignore[arg-type]  # TypeError: skipped
        except (TypeError, ValueError, KeyError):
            continue
        lines.append(f"{produced:.6f} {now:.6f}\n")
    if lines:
        os.write(fd, "".join(lines).encode())
    return {"count": len(items)}
