"""Serializer throughput: V2 items for primitive, JSON and Avro (logical types) values.

Each case is timed against a baseline in the same process, rounds interleaved (runtime, then
baseline, then runtime...), on thread CPU time so that other jobs on the machine matter less:

- Avro: `fastavro.schemaless_reader` of the same bytes with the same writer schema (fastavro's own
  logical-type decoding) + `json.dumps(default=str)` of the decoded record: the brief's baseline.
  The row's `extra.floorRatio` is also given against a floor that skips logical types entirely
  (schema stripped of them), i.e. decode + dumps and nothing else.
- JSON: `json.loads` + `json.dumps`. Primitives: `struct.unpack`/`bytes.decode` + `json.dumps`.

The runtime's side is the whole V2 item (`Serializer.v2_item`) with the default metadata fields
(topic, key, partitionIndex, sequence, properties, eventTime), as the pipeline calls it.
"""

from __future__ import annotations

import io
import json
import struct
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import fastavro

from lambdasink_runtime.config import SinkConfig
from lambdasink_runtime.record import Record, SchemaInfo
from lambdasink_runtime.serializer import Serializer

from .common import Row, median

GOAL_RATIO = 1.5

AVRO_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "bench",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "quantity", "type": "int"},
        {"name": "price", "type": "double"},
        {"name": "paid", "type": "boolean"},
        {"name": "createdAt", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "updatedAt", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {
            "name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2},
        },
        {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {
            "name": "address",
            "type": {
                "type": "record",
                "name": "Address",
                "fields": [
                    {"name": "street", "type": "string"},
                    {"name": "zip", "type": "string"},
                ],
            },
        },
    ],
}

JSON_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Event",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "kind", "type": "string"},
        {"name": "score", "type": "double"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "labels", "type": {"type": "array", "items": "string"}},
        {"name": "user", "type": ["null", "string"], "default": None},
    ],
}


def _avro_value(i: int) -> dict[str, Any]:
    return {
        "id": 1_000_000 + i,
        "customer": f"customer-{i % 997}",
        "quantity": i % 50,
        "price": 19.99 + i % 7,
        "paid": i % 2 == 0,
        "createdAt": 1_764_000_000_000 + i,
        "updatedAt": 1_764_000_000_000_000 + i,
        "day": 20_400 + i % 30,
        "amount": Decimal(f"{i % 100000}.{i % 100:02d}"),
        "ref": str(uuid.UUID(int=i)),
        "note": None if i % 3 else f"note {i}",
        "tags": ["a", "b", f"t{i % 10}"],
        "address": {"street": f"{i} Main St", "zip": f"{10000 + i % 9000}"},
    }


def _json_value(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "kind": "click" if i % 2 else "view",
        "score": i / 7,
        "at": 1_764_000_000_000 + i,
        "day": 20_400 + i % 30,
        "labels": ["x", f"l{i % 5}"],
        "user": None if i % 4 == 0 else f"user-{i}",
    }


def _record(i: int, value: bytes, schema: SchemaInfo | None) -> Record:
    return Record(
        topic="persistent://public/default/bench-topic",
        value=value,
        ledger_id=1234,
        entry_id=i,
        partition=-1,
        batch_index=-1,
        key=f"k{i % 100}",
        properties={"source": "bench"},
        event_time_ms=1_764_000_000_000 + i,
        schema=schema,
    )


Case = tuple[str, list[Record], Callable[[bytes], str]]


_PARSED = fastavro.parse_schema(AVRO_SCHEMA)
_I64 = struct.Struct(">q")
#: The decode step of each case's baseline (for the naive full-item comparison).
DECODERS: dict[str, Callable[[bytes], Any]] = {
    "avro": lambda d: fastavro.schemaless_reader(io.BytesIO(d), _PARSED, None),
    "json": json.loads,
    "primitive STRING": lambda d: d.decode("utf-8"),
    "primitive INT64": lambda d: _I64.unpack(d)[0],
}


def cases(n: int) -> list[Case]:
    """(name, records, baseline(bytes) -> JSON text) for every value kind."""
    out: list[Case] = []

    parsed = fastavro.parse_schema(AVRO_SCHEMA)
    avro_info = SchemaInfo("AVRO", json.dumps(AVRO_SCHEMA), "bench-avro")
    avro_records = []
    for i in range(n):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, _avro_value(i))
        avro_records.append(_record(i, buf.getvalue(), avro_info))
    reader = fastavro.schemaless_reader

    def avro_baseline(data: bytes) -> str:
        return json.dumps(reader(io.BytesIO(data), parsed, None), default=str)

    out.append(("avro (13 fields, logical types)", avro_records, avro_baseline))

    json_info = SchemaInfo("JSON", json.dumps(JSON_SCHEMA), "bench-json")
    json_records = [_record(i, json.dumps(_json_value(i)).encode(), json_info) for i in range(n)]
    json_base: Callable[[bytes], str] = lambda d: json.dumps(json.loads(d))  # noqa: E731
    out.append(("json (7 fields, logical types)", json_records, json_base))

    str_info = SchemaInfo("STRING")
    str_records = [_record(i, f"hello world, message {i}".encode(), str_info) for i in range(n)]
    out.append(("primitive STRING", str_records, lambda d: json.dumps(d.decode("utf-8"))))

    i64 = struct.Struct(">q")
    long_info = SchemaInfo("INT64")
    long_records = [_record(i, i64.pack(i * 7919), long_info) for i in range(n)]
    out.append(("primitive INT64", long_records, lambda d: json.dumps(i64.unpack(d)[0])))
    return out


def _floor_baseline() -> Callable[[bytes], str]:
    def strip(s: Any) -> Any:
        if isinstance(s, list):
            return [strip(x) for x in s]
        if isinstance(s, dict):
            return {k: strip(v) for k, v in s.items() if k != "logicalType"}
        return s

    parsed = fastavro.parse_schema(strip(AVRO_SCHEMA))
    reader = fastavro.schemaless_reader
    return lambda data: json.dumps(reader(io.BytesIO(data), parsed, None), default=str)


def _naive_item(records: list[Record], decode: Callable[[bytes], Any]) -> Callable[[Record], str]:
    """The same V2 item built the obvious way: a dict of the metadata + json.dumps (for scale)."""

    def item(r: Record) -> str:
        return json.dumps(
            {
                "topic": r.topic,
                "key": r.key,
                "sequence": r.sequence,
                "properties": dict(r.properties),
                "eventTime": r.event_time_ms,
                "value": decode(r.value),
            },
            default=str,
        )

    return item


def _time(fn: Callable[[Any], Any], items: list[Any]) -> float:
    t0 = time.thread_time()
    for x in items:
        fn(x)
    return time.thread_time() - t0


def run(n: int = 20_000, rounds: int = 5) -> list[Row]:
    sink = SinkConfig(aws_region="us-east-1", lambda_function_name="bench", payload_format="V2")
    rows: list[Row] = []
    floor = _floor_baseline()
    for name, records, baseline in cases(n):
        ser = Serializer(sink)
        values = [r.value for r in records]
        ser.v2_item(records[0])  # builds and caches the codec, as the first message would
        json.loads(ser.v2_item(records[-1]))  # sanity: the item is JSON
        ours: list[float] = []
        base: list[float] = []
        flo: list[float] = []
        naive_t: list[float] = []
        naive = _naive_item(
            records, DECODERS[name.split()[0] if not name.startswith("primitive") else name]
        )
        for _ in range(rounds):
            ours.append(_time(ser.v2_item, records))
            base.append(_time(baseline, values))
            naive_t.append(_time(naive, records))
            if name.startswith("avro"):
                flo.append(_time(floor, values))
        t_ours, t_base = median(ours), median(base)
        ratio = t_ours / t_base
        extra: dict[str, Any] = {
            "records": n,
            "rounds": rounds,
            "usPerRecord": round(t_ours / n * 1e6, 2),
            "baselineUsPerRecord": round(t_base / n * 1e6, 2),
            "roundRatios": [round(a / b, 2) for a, b in zip(ours, base, strict=True)],
        }
        extra["naiveItemRatio"] = round(t_ours / median(naive_t), 2)
        extra["naiveItemUsPerRecord"] = round(median(naive_t) / n * 1e6, 2)
        if flo:
            extra["floorRatio"] = round(t_ours / median(flo), 2)
            extra["floorUsPerRecord"] = round(median(flo) / n * 1e6, 2)
        rows.append(
            Row(
                bench="serializer V2",
                case=name,
                value=n / t_ours,
                unit="records/s (CPU)",
                baseline=n / t_base,
                ratio=ratio,
                goal=f"cost <= {GOAL_RATIO}x baseline",
                ok=ratio <= GOAL_RATIO,
                extra=extra,
            )
        )
    return rows
