"""Lambda handler that records every event and fails on purpose for marked records.

A V2 item whose decoded value starts with `poison` (or, for a structured value, has a field
starting with it) is a poison record. What the handler does
with one depends on the function's environment variable FAIL_MODE:
- `raise` (default): raises PoisonRecord for the whole batch (an Unhandled function error);
- `partial`: returns `{"batchItemFailures": [{"itemIdentifier": <messageId>}]}` listing the
  poison items only (the SQS/Kinesis partial batch response shape);
- `malformed`: returns a batchItemFailures list with an identifier that is in no batch.
Every event is appended to <record dir>/<function name>.jsonl first, like recorder.py, so tests
count exactly how often each record reached the function.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import os
from typing import Any

# The Lambda runtime imports handlers by module name from this folder.
record = importlib.import_module("recorder").handler


class PoisonRecord(Exception):
    """Raised for a batch holding a poison record."""


def _value(item: Any) -> bytes:
    if isinstance(item, dict) and isinstance(item.get("value"), dict):
        return json.dumps(item["value"]).encode()  # a decoded Avro/JSON record
    if not isinstance(item, dict) or not isinstance(item.get("value"), str):
        return b""
    try:
        return base64.b64decode(item["value"], validate=True)
    except (binascii.Error, ValueError):
        return str(item["value"]).encode()


def handler(event: Any, context: Any) -> dict[str, Any]:
    record(event, context)
    items = event if isinstance(event, list) else [event]
    poison = [i for i in items if _value(i).startswith(b"poison") or b'"poison' in _value(i)]
    if not poison:
        return {"batchItemFailures": []}
    mode = os.environ.get("FAIL_MODE", "raise")
    if mode == "partial":
        return {"batchItemFailures": [{"itemIdentifier": i.get("messageId")} for i in poison]}
    if mode == "malformed":
        return {"batchItemFailures": [{"itemIdentifier": "0:0:0:0-not-in-this-batch"}]}
    raise PoisonRecord(f"poison record {_value(poison[0])[:40]!r}")
