"""The reference's V1 payload: the record object as Jackson rendered it, and its fallbacks.

The three steps are in the serializer's docstring; `Serializer.v1_payload` picks the step.
"""

from __future__ import annotations

from typing import Any

from .json_text import b64, dumps, loads
from .record import Record
from .record_fields import partition_index, properties_of

_BYTES_SCHEMA_INFO = {
    "name": "Bytes",
    "schema": "",
    "type": "BYTES",
    "timestamp": 0,
    "properties": {},
    "schemaDefinition": "",
}


def _optional(value: Any) -> dict[str, Any]:
    """Java's Optional as Jackson rendered it, plus the value it used to drop."""
    if value is None:
        return {"empty": True, "present": False}
    return {"empty": False, "present": True, "value": value}


def v1_record(r: Record, value: Any) -> dict[str, Any]:
    """Step 1: the record object around a value its schema decoded."""
    partition = partition_index(r)
    props = properties_of(r)
    fields_ = {
        "key": _optional(r.key),
        "topicName": _optional(r.topic),
        "partitionId": _optional(r.topic if partition is not None else None),
        "partitionIndex": _optional(partition),
        "recordSequence": _optional(r.sequence),
        "eventTime": _optional(r.event_time_ms or None),
        "properties": props,
    }
    if r.schema is None:
        info: dict[str, Any] = _BYTES_SCHEMA_INFO
    else:
        info = {
            "name": r.schema.name,
            "schema": b64(r.schema.definition.encode()),
            "type": r.schema.type,
            "timestamp": 0,
            "properties": dict(r.schema.properties),
            "schemaDefinition": r.schema.definition,
        }
    return {
        "sourceRecord": {**fields_, "value": value},
        "value": value,
        "schema": {"schemaInfo": info, "nativeSchema": _optional(None)},
        **fields_,
        "destinationTopic": _optional(None),
    }


def v1_fallback(r: Record) -> bytes:
    """Steps 2 and 3, for a value its schema cannot decode; never fails."""
    try:  # step 2: the value itself, when it is JSON
        return dumps(loads(r.value)).encode()
    except ValueError:
        pass
    partition = partition_index(r)
    out: dict[str, Any] = {}  # step 3: metadata + the value as a string
    if r.key is not None:
        out["key"] = r.key
    out["topicName"] = r.topic
    if partition is not None:
        out["partitionId"] = r.topic
    out["recordSequence"] = r.sequence
    if r.event_time_ms:
        out["eventTime"] = r.event_time_ms
    out["properties"] = properties_of(r)
    try:
        out["value"] = r.value.decode("utf-8")
    except UnicodeDecodeError:
        out["value"] = b64(r.value)
        out["valueEncoding"] = "base64"
    return dumps(out).encode()
