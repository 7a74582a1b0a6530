"""Serializer throughput: V2 items for primitive, JSON and Avro (logical types) values.

Each case is timed against baselines in the same process, rounds interleaved (runtime, then
each baseline, then runtime...), on thread CPU time so that other jobs on the machine matter less.

The runtime's side is the whole V2 item (`Serializer.v2_item`) with the default metadata fields
(topic, key, partitionIndex, sequence, properties, eventTime), as the pipeline calls it.

Two rows per value kind:

- the goal row, the issue's baseline "decoding plus `json.dumps` of the decoded record": the
  whole V2 item as a dict — the value decoded with the standard tool plus the same metadata
  fields — through `json.dumps` (`default=str` for Avro only, where fastavro's datetime,
  Decimal and UUID need it). Decoders: `fastavro.schemaless_reader` with the same writer schema
  (fastavro's own logical types) for Avro, `json.loads` for JSON, `struct.unpack`/
  `bytes.decode` for primitives. For Avro, `extra.floorRatio` is also given against a floor
  that skips logical types entirely (schema stripped of them);
- `...: value-only baseline` (informational, no goal): the decoded value alone through
  `json.dumps`, i.e. what the runtime's metadata costs on top.
"""

from __future__ import annotations

import functools
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


#: (row name, records, baseline(record) -> JSON text); one row per case, in this order.
Case = tuple[str, list[Record], Callable[[Record], str]]

VALUE_ONLY = ": value-only baseline"
Dumps = Callable[[Any], str]
#: `default=str` only where the decoded value needs it (fastavro's datetime, Decimal, UUID):
#: any keyword makes json.dumps build a new encoder per call, which would flatter the runtime.
_DUMPS_STR: Dumps = functools.partial(json.dumps, default=str)
_I64 = struct.Struct(">q")


def _full_item(decode: Callable[[bytes], Any], dumps: Dumps) -> Callable[[Record], str]:
    """The goal's baseline: the decoded record (the V2 item as a dict) through json.dumps.

    The runtime's default metadata fields with the same omissions, as the Pulsar client hands
    them over (eventTime stays its epoch-millis number: rendering it in ISO 8601 is extra work
    on the runtime's side of the ratio).
    """

    def item(r: Record) -> str:
        out: dict[str, Any] = {"topic": r.topic}
        if r.key is not None:
            out["key"] = r.key
        if r.partition >= 0:
            out["partitionIndex"] = r.partition
        out["sequence"] = r.sequence
        out["properties"] = dict(r.properties)
        if r.event_time_ms:
            out["eventTime"] = r.event_time_ms
        out["value"] = decode(r.value)
        return dumps(out)

    return item


def _value_only(decode: Callable[[bytes], Any], dumps: Dumps) -> Callable[[Record], str]:
    """Informational: the value alone, decoded and dumped (no metadata)."""
    return lambda r: dumps(decode(r.value))


def cases(n: int) -> list[Case]:
    """Per value kind: the goal row (full-item baseline), then the value-only row."""
    kinds: list[tuple[str, list[Record], Callable[[bytes], Any], Dumps]] = []

    parsed = fastavro.parse_schema(AVRO_SCHEMA)
    avro_info = SchemaInfo("AVRO", json.dumps(AVRO_SCHEMA), "bench-avro")
    avro_records = []
    for i in range(n):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, _avro_value(i))
        avro_records.append(_record(i, buf.getvalue(), avro_info))
    reader = fastavro.schemaless_reader
    avro_decode: Callable[[bytes], Any] = lambda d: reader(io.BytesIO(d), parsed, None)  # noqa: E731
    kinds.append(("avro (13 fields, logical types)", avro_records, avro_decode, _DUMPS_STR))

    json_info = SchemaInfo("JSON", json.dumps(JSON_SCHEMA), "bench-json")
    json_records = [_record(i, json.dumps(_json_value(i)).encode(), json_info) for i in range(n)]
    kinds.append(("json (7 fields, logical types)", json_records, json.loads, json.dumps))

    str_info = SchemaInfo("STRING")
    str_records = [_record(i, f"hello world, message {i}".encode(), str_info) for i in range(n)]
    kinds.append(("primitive STRING", str_records, lambda d: d.decode("utf-8"), json.dumps))

    long_info = SchemaInfo("INT64")
    long_records = [_record(i, _I64.pack(i * 7919), long_info) for i in range(n)]
    kinds.append(("primitive INT64", long_records, lambda d: _I64.unpack(d)[0], json.dumps))

    out: list[Case] = []
    for name, records, decode, dumps in kinds:
        out.append((name, records, _full_item(decode, dumps)))
        out.append((name + VALUE_ONLY, records, _value_only(decode, dumps)))
    return out


def _floor_baseline() -> Callable[[Record], str]:
    """Avro with no logical types at all (schema stripped of them): decode + dumps, no more."""

    def strip(s: Any) -> Any:
        if isinstance(s, list):
            return [strip(x) for x in s]
        if isinstance(s, dict):
            return {k: strip(v) for k, v in s.items() if k != "logicalType"}
        return s

    parsed = fastavro.parse_schema(strip(AVRO_SCHEMA))
    reader = fastavro.schemaless_reader
    return lambda r: _DUMPS_STR(reader(io.BytesIO(r.value), parsed, None))


def _time(fn: Callable[[Any], Any], items: list[Any]) -> float:
    t0 = time.thread_time()
    for x in items:
        fn(x)
    return time.thread_time() - t0


def run(n: int = 20_000, rounds: int = 5) -> list[Row]:
    sink = SinkConfig(aws_region="us-east-1", lambda_function_name="bench", payload_format="V2")
    floor = _floor_baseline()
    groups: list[tuple[list[Record], list[tuple[str, Callable[[Record], str]]]]] = []
    for name, records, baseline in cases(n):  # the cases of one value kind share their records
        if groups and groups[-1][0] is records:
            groups[-1][1].append((name, baseline))
        else:
            groups.append((records, [(name, baseline)]))
    rows: list[Row] = []
    for records, baselines in groups:
        full_name, full_item = baselines[0]
        ser = Serializer(sink)
        ser.v2_item(records[0])  # builds and caches the codec, as the first message would
        ours_fields = list(json.loads(ser.v2_item(records[-1])))  # sanity: JSON, and the
        if ours_fields != list(json.loads(full_item(records[-1]))):  # baseline's fields
            raise AssertionError(f"{full_name}: the baseline item lacks fields of {ours_fields}")
        ours: list[float] = []
        base: dict[str, list[float]] = {name: [] for name, _ in baselines}
        flo: list[float] = []
        for _ in range(rounds):
            ours.append(_time(ser.v2_item, records))
            for name, baseline in baselines:
                base[name].append(_time(baseline, records))
            if full_name.startswith("avro"):
                flo.append(_time(floor, records))
        t_ours = median(ours)
        for name, _ in baselines:
            goal_row = name == full_name
            t_base = median(base[name])
            ratio = t_ours / t_base
            extra: dict[str, Any] = {
                "records": n,
                "rounds": rounds,
                "baseline": "full item" if goal_row else "value only",
                "usPerRecord": round(t_ours / n * 1e6, 2),
                "baselineUsPerRecord": round(t_base / n * 1e6, 2),
                "roundRatios": [round(a / b, 2) for a, b in zip(ours, base[name], strict=True)],
            }
            if goal_row:
                extra["naiveItemRatio"] = round(ratio, 2)  # the key earlier runs used
                extra["naiveItemUsPerRecord"] = extra["baselineUsPerRecord"]
                if flo:
                    extra["floorRatio"] = round(t_ours / median(flo), 2)
                    extra["floorUsPerRecord"] = round(median(flo) / n * 1e6, 2)
            else:
                extra["fullItemRatio"] = round(t_ours / median(base[full_name]), 2)
            rows.append(
                Row(
                    bench="serializer V2",
                    case=name,
                    value=n / t_ours,
                    unit="records/s (CPU)",
                    baseline=n / t_base,
                    ratio=ratio,
                    goal=f"cost <= {GOAL_RATIO}x baseline" if goal_row else "-",
                    ok=ratio <= GOAL_RATIO if goal_row else None,
                    extra=extra,
                )
            )
    return rows
