"""Lambda handler that records every event it receives (tests read the file).

Each event is appended as one JSON line to $LAMBDASINK_RECORD_DIR/<function name>.jsonl under an
exclusive file lock, because several runtime processes (one per emulator) write concurrently.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any


def handler(event: Any, context: Any) -> dict[str, Any]:
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "recorder")
    record_dir = Path(os.environ.get("LAMBDASINK_RECORD_DIR", "/tmp/lambda-sink-records"))
    record_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps(
        {
            "ts": time.time(),
            "function": name,
            "requestId": getattr(context, "aws_request_id", None),
            "event": event,
        },
        separators=(",", ":"),
    )
    with (record_dir / f"{name}.jsonl").open("a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.write(line + "\n")
            f.flush()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    size = len(event) if isinstance(event, list) else 1
    return {"recorded": size}
