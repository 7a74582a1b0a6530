"""Reserved concurrency (GetFunctionConcurrency, PutFunctionConcurrency,
DeleteFunctionConcurrency) in the shapes botocore parses. Kept per function in memory: the
emulator has no such setting; the operator's autoscaler reads it to cap its workers, and the
gateway does not enforce it (throttles are injected through /_gateway/faults)."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from .wire import parse_function_name

#: Lambda's API versions for these operations differ from Invoke's 2015-03-31.
CONCURRENCY_RE = re.compile(r"^/(?:2017-10-31|2019-09-30)/functions/(?P<name>[^/]+)/concurrency/?$")
ACCOUNT_LIMIT = 1000  # Lambda's default concurrent executions per account and region

_reserved: dict[str, int] = {}
_lock = threading.Lock()


def reserved(name: str) -> int | None:
    with _lock:
        return _reserved.get(name)


def handle(
    method: str, path: str, body: bytes, known: set[str]
) -> tuple[int, dict[str, Any]] | None:
    """(status, JSON answer) when `path` is one of these operations, else None. Errors carry
    AWS's type in the answer's `__type` (the caller turns it into x-amzn-ErrorType)."""
    m = CONCURRENCY_RE.match(path)
    if not m:
        return None
    name, _ = parse_function_name(m["name"])
    if name not in known:
        return 404, {
            "__type": "ResourceNotFoundException",
            "Message": f"Function not found: {name}",
        }
    if method == "GET":
        value = reserved(name)
        return 200, ({} if value is None else {"ReservedConcurrentExecutions": value})
    if method == "DELETE":
        with _lock:
            _reserved.pop(name, None)
        return 204, {}
    if method == "PUT":
        try:
            doc = json.loads(body or b"{}")
            value = int(doc["ReservedConcurrentExecutions"])
        except (ValueError, KeyError, TypeError):
            return 400, {
                "__type": "InvalidParameterValueException",
                "message": "ReservedConcurrentExecutions: an integer is required",
            }
        if not 0 <= value <= ACCOUNT_LIMIT:
            return 400, {
                "__type": "InvalidParameterValueException",
                "message": f"ReservedConcurrentExecutions must be between 0 and {ACCOUNT_LIMIT}",
            }
        with _lock:
            _reserved[name] = value
        return 200, {"ReservedConcurrentExecutions": value}
    return 405, {"__type": "UnknownOperationException", "message": "Unknown operation"}
