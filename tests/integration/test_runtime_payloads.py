"""What a Lambda function receives from a `lambdasink-runtime` process, byte for byte.

Real producers write every schema kind of the reference's tables to the real broker; the runtime
runs as its own process (as in a pod) and invokes the real `recorder` handler through the Lambda
gateway and AWS's runtime interface emulator; the handler writes each event it received to a
file the test reads. Expected JSON is computed from what was produced (values, message ids,
keys, properties, event times) by the rules of the reference and of README "Payloads".

Producers: the Python client (pulsar-client) for STRING, BYTES, no schema, JSON and AVRO. Its
C++ core registers no schema for INT8..DOUBLE (the message goes out schemaless) and has no
BOOLEAN, DATE, TIME, TIMESTAMP, LOCAL_DATE, LOCAL_TIME, LOCAL_DATE_TIME or INSTANT type at all,
so those are produced by the broker's own REST producer (PIP-64, POST /topics/...): it registers
the schema type on the topic and Pulsar's Java schemas encode the payload text
(`Integer.parseInt`, `LocalDate.parse`, `Instant.parse`, ...). No Java client is needed.
"""

from __future__ import annotations

import base64
import json
import math
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pulsar
import pytest
from pulsar.schema import (
    Array,
    AvroSchema,
    Boolean,
    BytesSchema,
    Double,
    Integer,
    JsonSchema,
    Long,
    Map,
    Record,
    String,
    StringSchema,
)
from runtime_support import (
    ALL_METADATA,
    EPOCH,
    Runtimes,
    Sent,
    admin,
    canonical,
    create_topic,
    free_port,
    iso_millis,
    publish_times,
    pulsar_client,
    received_items,
    rest_produce,
    runtime_config,
    send,
    unique_topic,
    v2_item,
    wait_for,
    wait_items,
)
from tests.stack import LambdaFunctions, Recorder, Stack

pytestmark = pytest.mark.integration


class RawAvro(AvroSchema):  # type: ignore[misc]
    """The AVRO schema `definition` on the topic, but the value bytes are sent as given."""

    def __init__(self, definition: dict[str, Any]) -> None:
        super().__init__(None, definition)

    def encode(self, obj: Any) -> bytes:
        return bytes(obj)


def json_number(x: float) -> Any:
    """README: non-finite numbers are sent as Jackson writes them, as strings."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def meta(i: int) -> dict[str, Any]:
    """Distinct metadata per message: key, properties and event time derived from `i`."""
    return {
        "partition_key": f"key-{i}",
        "properties": {"n": str(i), "kind": "test"},
        "event_timestamp": 1_698_617_628_000 + i,
    }


def by_message(items: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for item in items:
        k = (item["topic"], item["sequence"])
        assert k not in out, f"received twice: {item}"
        out[k] = item
    return out


# --- V2 with the Python client ---------------------------------------------------------------


class Address(Record):  # type: ignore[misc]
    street = String()
    zip = Integer()


class Customer(Record):  # type: ignore[misc]
    name = String()
    age = Integer()
    score = Double()
    active = Boolean()
    tags = Array(String())
    attrs = Map(String())
    address = Address()


AVRO_ORDER = {
    "type": "record",
    "name": "Order",
    "namespace": "lambdasink.test",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tMillis", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "tMicros", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "tsMillis", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tsMicros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "ltsMillis", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {"name": "ltsMicros", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
        {
            "name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
        },
        {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "ratio", "type": "float"},
        {"name": "blob", "type": "bytes"},
        {
            "name": "color",
            "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]},
        },
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "counts", "type": {"type": "map", "values": "long"}},
        {
            "name": "ship",
            "type": {
                "type": "record",
                "name": "Shipment",
                "fields": [
                    {"name": "city", "type": "string"},
                    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                ],
            },
        },
    ],
}


def hms(seconds: int, fraction: str) -> str:
    t = EPOCH + timedelta(seconds=seconds)
    return t.strftime("%H:%M:%S.") + fraction


def avro_order(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the record produced, the JSON object the reference's rules make of it)."""
    day = 19_647 + i
    t_millis = 49_721_123 + i
    t_micros = 49_721_123_456 + i
    ts_millis = 1_698_617_628_123 + i
    ts_micros = 1_698_617_628_123_456 + i
    amount = Decimal(f"{12 + i}.30")
    ref = f"0b5e2c1a-7d3f-4e8a-9c1b-{i:012d}"
    blob = bytes([0, 255, i])
    produced = {
        "id": f"o-{i}",
        "day": day,
        "tMillis": t_millis,
        "tMicros": t_micros,
        "tsMillis": ts_millis,
        "tsMicros": ts_micros,
        "ltsMillis": ts_millis,
        "ltsMicros": ts_micros,
        "amount": amount,
        "ref": ref,
        "ratio": 1.1,
        "blob": blob,
        "color": "GREEN" if i else "RED",
        "note": None if i else "first",
        "tags": ["a", f"t{i}"],
        "counts": {"x": i, "y": 2**40},
        "ship": {"city": "Zürich", "at": ts_millis},
    }
    micro_t = EPOCH + timedelta(microseconds=ts_micros)
    expected = {
        **produced,
        "day": (EPOCH + timedelta(days=day)).date().isoformat(),
        "tMillis": hms(t_millis // 1000, f"{t_millis % 1000:03d}"),
        "tMicros": hms(t_micros // 1_000_000, f"{t_micros // 1000 % 1000:03d}"),  # ms, per table
        "tsMillis": iso_millis(ts_millis),
        "tsMicros": micro_t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "ltsMillis": iso_millis(ts_millis)[:-1],
        "ltsMicros": micro_t.strftime("%Y-%m-%dT%H:%M:%S.%f"),
        "amount": f"{amount:.2f}",
        "blob": base64.b64encode(blob).decode(),
        "ship": {"city": "Zürich", "at": iso_millis(ts_millis)},
    }
    return produced, expected


def test_v2_every_python_client_schema_kind(
    stack: Stack, client: Any, runtimes: Runtimes, recorder: Recorder
) -> None:
    # INT8..DOUBLE are not here: the Python client's C++ core sends no schema for them (see
    # the REST producer test below).
    primitives: dict[str, tuple[Any, list[Any]]] = {
        "STRING": (StringSchema(), ["héllo wörld ✓", ""]),
        "BYTES": (BytesSchema(), [b"\x00\x01\xfe\xff", b"plain"]),
        "NONE": (None, [b'{"json": "but no schema"}', bytes(range(5))]),
    }
    expected: list[dict[str, Any]] = []
    topics = []
    i = 0
    for kind, (schema, values) in primitives.items():
        topic = unique_topic(f"rt-{kind.lower()}")
        topics.append(topic)
        producer = (
            client.create_producer(topic, schema=schema)
            if schema is not None
            else client.create_producer(topic)
        )
        for v in values:
            sent = send(producer, topic, v, **meta(i))
            i += 1
            # BYTES and no schema: base64 of the bytes; STRING: the text
            want = base64.b64encode(v).decode() if isinstance(v, bytes) else v
            expected.append(v2_item(sent, want))
        producer.close()

    json_topic = unique_topic("rt-json")
    topics.append(json_topic)
    producer = client.create_producer(json_topic, schema=JsonSchema(Customer))
    for n in range(2):
        c = Customer(
            name=f"Ada {n}",
            age=36 + n,
            score=0.5 + n,
            active=bool(n),
            tags=["x", f"y{n}"],
            attrs={"tier": f"t{n}"},
            address=Address(street=f"Main St {n}", zip=8000 + n),
        )
        sent = send(producer, json_topic, c, **meta(i))
        i += 1
        expected.append(
            v2_item(
                sent,
                {
                    "name": c.name,
                    "age": c.age,
                    "score": c.score,
                    "active": c.active,
                    "tags": c.tags,
                    "attrs": c.attrs,
                    "address": {"street": c.address.street, "zip": c.address.zip},
                },
            )
        )
    producer.close()

    avro_topic = unique_topic("rt-avro")
    topics.append(avro_topic)
    producer = client.create_producer(avro_topic, schema=AvroSchema(None, AVRO_ORDER))
    for n in range(2):
        produced, want = avro_order(n)
        sent = send(producer, avro_topic, produced, **meta(i))
        i += 1
        expected.append(v2_item(sent, want))
    producer.close()

    # Default metadataFields (the reference's default set), default batching limits but a short
    # time limit; several topics in one subscription.
    cfg = runtime_config(stack, recorder.function, topics=topics, sink={"batchMaxTimeMs": 300})
    runtimes.start(cfg)
    items = wait_items(recorder, len(expected))
    got = by_message(items)
    want_by = by_message(expected)
    assert set(got) == set(want_by)
    for k, item in want_by.items():
        assert got[k] == item, f"{k}: got {got[k]}, expected {item}"
    assert all(len(event) <= 10 for event in recorder.events())  # batchMaxSize default 10


# --- V2 with the broker's REST producer (the types the Python client cannot produce) ----------


def date_millis(stack: Stack, topic: str) -> int:
    """DATE is produced as the text 'Oct 17, 2023', which the broker's REST producer parses with
    java.text.DateFormat in the broker JVM's default time zone; read the stored millis back."""
    c = pulsar_client(stack)
    try:
        reader = c.create_reader(topic, pulsar.MessageId.earliest)
        data = reader.read_next(15_000).data()
        reader.close()
    finally:
        c.close()
    assert len(data) == 8, data
    millis = int.from_bytes(data, "big", signed=True)
    day = EPOCH + timedelta(milliseconds=millis)
    assert abs(day - (EPOCH + timedelta(days=19_647))) <= timedelta(hours=14), day  # 2023-10-17
    return millis


def test_v2_numeric_boolean_and_time_schemas_from_the_rest_producer(
    stack: Stack, runtimes: Runtimes, recorder: Recorder
) -> None:
    # (schema type, [(payload text, expected JSON value)]): Java-side parsing of the text, the
    # reference's table for the JSON (ISO 8601, UTC, fixed fraction digits).
    def numbers(*texts: str) -> list[tuple[str, Any]]:
        return [(t, json_number(float(t)) if "." in t or t.isalpha() else int(t)) for t in texts]

    cases: dict[str, list[tuple[str, Any]]] = {
        "INT8": numbers("-128", "127"),
        "INT16": numbers("-32768", "12345"),
        "INT32": numbers(str(-(2**31)), str(2**31 - 1)),
        "INT64": numbers(str(-(2**63)), str(2**63 - 1)),
        "FLOAT": numbers("0.25", "1.1", "-2.5"),  # float32: the shortest digits, as Java prints
        "DOUBLE": numbers("3.141592653589793", "-1.0e-300", "NaN", "Infinity"),
        "BOOLEAN": [("true", True), ("false", False)],
        "TIME": [("49721123", iso_millis(49_721_123))],
        "TIMESTAMP": [("1698617628123", iso_millis(1_698_617_628_123))],
        "INSTANT": [
            ("2023-10-30T06:13:48.123456789Z", "2023-10-30T06:13:48.123456789Z"),
            ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.500000000Z"),
        ],
        "LOCAL_DATE": [("2023-10-17", "2023-10-17")],
        "LOCAL_TIME": [
            ("04:30:33.123456789", "04:30:33.123456789"),
            ("23:59:59", "23:59:59.000000000"),
        ],
        "LOCAL_DATE_TIME": [
            ("2023-10-17T04:30:33.123456789", "2023-10-17T04:30:33.123456789"),
        ],
        "DATE": [("Oct 17, 2023", None)],  # expected computed from the stored millis below
    }
    expected: list[dict[str, Any]] = []
    topics = []
    i = 0
    for kind, rows in cases.items():
        topic = unique_topic(f"rt-{kind.lower().replace('_', '')}")
        topics.append(topic)
        messages = []
        for payload, _ in rows:
            m = meta(i)
            i += 1
            messages.append(
                {
                    "payload": payload,
                    "key": m["partition_key"],
                    "properties": m["properties"],
                    "eventTime": m["event_timestamp"],
                }
            )
        sent_list = rest_produce(stack, topic, kind, messages)
        status, info = admin(
            stack, "GET", f"/admin/v2/schemas/public/default/{topic.rsplit('/', 1)[1]}/schema"
        )
        assert status == 200 and info["type"] == kind, info
        for sent, (_, want) in zip(sent_list, rows, strict=True):
            value = iso_millis(date_millis(stack, topic)) if kind == "DATE" else want
            expected.append(v2_item(sent, value))

    runtimes.start(runtime_config(stack, recorder.function, topics=topics))
    got = by_message(wait_items(recorder, len(expected)))
    want_by = by_message(expected)
    assert set(got) == set(want_by)
    for k, item in want_by.items():
        assert got[k] == item, f"{k}: got {got[k]}, expected {item}"


# --- V1 ----------------------------------------------------------------------------------------


def optional(value: Any) -> dict[str, Any]:
    """README: Java's Optional as Jackson writes it, plus its value."""
    if value is None:
        return {"empty": True, "present": False}
    return {"empty": False, "present": True, "value": value}


# README: a message without schema is shown with Pulsar's BYTES schema, as the Java sink saw it.
BYTES_SCHEMA_INFO = {
    "name": "Bytes",
    "schema": "",
    "type": "BYTES",
    "timestamp": 0,
    "properties": {},
    "schemaDefinition": "",
}


def v1_record(stack: Stack, sent: Sent, value: Any, schema_type: str | None) -> dict[str, Any]:
    """The V1 payload (the record object as Jackson rendered the Java connector's record)."""
    local = re.sub(r"-partition-\d+$", "", sent.topic.rsplit("/", 1)[1])
    if schema_type is None:
        schema_info: dict[str, Any] = BYTES_SCHEMA_INFO
    else:
        status, info = admin(stack, "GET", f"/admin/v2/schemas/public/default/{local}/schema")
        assert status == 200, info
        definition = info["data"]
        schema_info = {
            "name": local,
            "schema": base64.b64encode(definition.encode()).decode(),
            "type": schema_type,
            "timestamp": 0,
            "properties": info.get("properties") or {},
            "schemaDefinition": definition,
        }
    partitioned = sent.partition >= 0
    fields = {
        "key": optional(sent.key),
        "topicName": optional(sent.topic),
        "partitionId": optional(sent.topic if partitioned else None),
        "partitionIndex": optional(sent.partition if partitioned else None),
        "recordSequence": optional(sent.sequence),
        "eventTime": optional(sent.event_time_ms),
        "properties": dict(sent.properties),
    }
    return {
        "sourceRecord": {**fields, "value": value},
        "value": value,
        "schema": {"schemaInfo": schema_info, "nativeSchema": optional(None)},
        **fields,
        "destinationTopic": optional(None),
    }


def test_v1_payloads_record_object_and_fallbacks(
    stack: Stack, client: Any, runtimes: Runtimes, recorder: Recorder
) -> None:
    expected: list[Any] = []
    string_topic = unique_topic("rt-v1-string")
    p = client.create_producer(string_topic, schema=StringSchema())
    for n, text in enumerate(["hello, AWS Lambda", "zweite Nachricht ✓"]):
        sent = send(p, string_topic, text, **meta(n))
        expected.append(v1_record(stack, sent, text, "STRING"))
    p.close()

    plain_topic = unique_topic("rt-v1-plain")  # no schema: BYTES, the value in base64
    p = client.create_producer(plain_topic)
    sent = send(p, plain_topic, b"\x00raw\xff", partition_key="k-plain")
    expected.append(v1_record(stack, sent, base64.b64encode(b"\x00raw\xff").decode(), None))
    p.close()

    parted_topic = unique_topic("rt-v1-parted")
    create_topic(stack, parted_topic, partitions=2)
    p = client.create_producer(parted_topic, schema=StringSchema())
    for n in range(2):
        sent = send(p, parted_topic, f"part {n}", **meta(10 + n))
        expected.append(v1_record(stack, sent, f"part {n}", "STRING"))
    p.close()

    avro_topic = unique_topic("rt-v1-avro")
    p = client.create_producer(avro_topic, schema=AvroSchema(None, AVRO_ORDER))
    produced, want = avro_order(7)
    sent = send(p, avro_topic, produced, properties={"only": "props"})
    expected.append(v1_record(stack, sent, want, "AVRO"))
    p.close()

    # An AVRO topic with values that are not Avro: the record cannot be converted, so the
    # reference falls back to the value itself when it is JSON, else metadata + the value.
    bad_topic = unique_topic("rt-v1-fallback")
    p = client.create_producer(bad_topic, schema=RawAvro(AVRO_ORDER))
    json_value = {"a": [1, 2], "b": "ü"}
    send(p, bad_topic, json.dumps(json_value).encode())
    expected.append(json_value)
    not_json = send(p, bad_topic, b"hello", partition_key="k", event_timestamp=1_698_617_628_123)
    expected.append(
        {
            "key": "k",
            "topicName": bad_topic,
            "recordSequence": not_json.sequence,
            "eventTime": 1_698_617_628_123,
            "properties": {},
            "value": "hello",
        }
    )
    binary = b"\xff\xfe\xfd"
    raw = send(p, bad_topic, binary, properties={"p": "1"})
    expected.append(
        {
            "topicName": bad_topic,
            "recordSequence": raw.sequence,
            "properties": {"p": "1"},
            "value": base64.b64encode(binary).decode(),
            "valueEncoding": "base64",
        }
    )
    p.close()

    cfg = runtime_config(
        stack,
        recorder.function,
        topics=[string_topic, plain_topic, parted_topic, avro_topic, bad_topic],
        sink={"payloadFormat": "V1"},
    )
    runtimes.start(cfg)
    entries = recorder.wait_for(len(expected), timeout=60)
    events = [e["event"] for e in entries]
    assert sorted(canonical(e) for e in events) == sorted(canonical(e) for e in expected)


# --- metadata field selection -------------------------------------------------------------------


def test_v2_metadata_field_selection(
    stack: Stack, client: Any, runtimes: Runtimes, lambda_functions: LambdaFunctions
) -> None:
    topic = unique_topic("rt-meta")
    p = client.create_producer(topic)
    sent = [
        send(p, topic, b"with everything", **meta(0)),
        send(p, topic, b"no key, no event time", properties={"only": "props"}),
        send(p, topic, b"bare"),
    ]
    p.close()
    parted = unique_topic("rt-meta-parted")
    create_topic(stack, parted, partitions=2)
    p = client.create_producer(parted)
    sent_parted = [send(p, parted, f"p{n}".encode(), **meta(n)) for n in range(4)]
    p.close()
    published = {**publish_times(stack, topic, len(sent)), **publish_times(stack, parted, 4)}

    cases = {
        "messageId,publishTime,key": [topic],
        "": [topic],  # no metadata at all: only the value
        ALL_METADATA: [parted],
    }
    started = []
    for fields, topics in cases.items():
        rec = lambda_functions.recorder()
        # `metaDataField` is the prose name of the reference; it is accepted as an alias.
        key = "metaDataField" if fields == ALL_METADATA else "metadataFields"
        runtimes.start(runtime_config(stack, rec.function, topics=topics, sink={key: fields}))
        started.append((fields, rec))

    for fields, rec in started:
        batch = sent if fields != ALL_METADATA else sent_parted
        items = wait_items(rec, len(batch))
        expected = [
            v2_item(
                s,
                base64.b64encode(v).decode(),
                fields,
                publish_time_ms=published[s.message_id],
            )
            for s, v in zip(
                batch,
                [b"with everything", b"no key, no event time", b"bare"]
                if fields != ALL_METADATA
                else [f"p{n}".encode() for n in range(4)],
                strict=True,
            )
        ]
        assert sorted(canonical(x) for x in items) == sorted(canonical(x) for x in expected), fields
        if fields == ALL_METADATA:
            assert {x["partitionIndex"] for x in items} == {0, 1}


# --- batching limits ----------------------------------------------------------------------------


def pack(sizes: list[int], limit: int) -> list[list[int]]:
    """Greedy batches by payload bytes: '[' + items joined by ',' + ']' must fit in `limit`."""
    batches: list[list[int]] = [[]]
    total = 2
    for i, size in enumerate(sizes):
        extra = size + (1 if batches[-1] else 0)
        if batches[-1] and total + extra > limit:
            batches.append([])
            total = 2
            extra = size
        batches[-1].append(i)
        total += extra
    return batches


def test_v2_batching_by_count_bytes_and_time(
    stack: Stack, client: Any, runtimes: Runtimes, lambda_functions: LambdaFunctions
) -> None:
    topic = unique_topic("rt-batch")
    p = client.create_producer(topic, schema=StringSchema())
    values = [f"value-{n:03d}" for n in range(10)]
    sent = [send(p, topic, v) for v in values]
    p.close()
    fields = "sequence"
    items = [v2_item(s, v, fields) for s, v in zip(sent, values, strict=True)]
    sizes = [len(json.dumps(x, separators=(",", ":")).encode()) for x in items]
    limit = 2 + sum(sizes[:3]) + 2  # exactly three of these items fit

    count_rec = lambda_functions.recorder()
    bytes_rec = lambda_functions.recorder()
    runtimes.start(
        runtime_config(
            stack,
            count_rec.function,
            topics=[topic],
            sink={"metadataFields": fields, "batchMaxSize": 4, "batchMaxTimeMs": 1500},
        )
    )
    runtimes.start(
        runtime_config(
            stack,
            bytes_rec.function,
            topics=[topic],
            sink={
                "metadataFields": fields,
                "batchMaxSize": 100,
                "batchMaxBytesSize": limit,
                "batchMaxTimeMs": 1500,
            },
        )
    )

    def batches(rec: Recorder, n: int) -> list[str]:
        wait_items(rec, n)
        return sorted(canonical(e) for e in rec.events())

    want_count = [[items[i] for i in range(k, min(k + 4, 10))] for k in range(0, 10, 4)]
    assert batches(count_rec, 10) == sorted(canonical(b) for b in want_count)
    want_bytes = [[items[i] for i in group] for group in pack(sizes, limit)]
    assert [len(b) for b in want_bytes] == [3, 3, 3, 1]
    assert batches(bytes_rec, 10) == sorted(canonical(b) for b in want_bytes)
    for event in bytes_rec.events():
        assert len(json.dumps(event, separators=(",", ":")).encode()) <= limit

    # Time: far below the count and byte limits, a batch closes after batchMaxTimeMs.
    time_topic = unique_topic("rt-batch-time")
    time_rec = lambda_functions.recorder()
    runtimes.start(
        runtime_config(
            stack,
            time_rec.function,
            topics=[time_topic],
            sink={"metadataFields": fields, "batchMaxSize": 100, "batchMaxTimeMs": 700},
        )
    )
    p = client.create_producer(time_topic, schema=StringSchema(), batching_enabled=False)
    first = [send(p, time_topic, f"first-{n}") for n in range(3)]
    wait_items(time_rec, 3)
    second = [send(p, time_topic, f"second-{n}") for n in range(2)]
    p.close()
    wait_items(time_rec, 5)
    want_time = [
        [v2_item(s, f"first-{n}", fields) for n, s in enumerate(first)],
        [v2_item(s, f"second-{n}", fields) for n, s in enumerate(second)],
    ]
    assert [canonical(e) for e in time_rec.events()] == [canonical(b) for b in want_time]
    assert received_items(time_rec) == [x for b in want_time for x in b]


# --- producer-side batching, compression and schema evolution ----------------------------------


class OrderV1(Record):  # type: ignore[misc]
    id = String()
    quantity = Integer()


def order_v2() -> type[Record]:
    """Version 2 of the same record (same name, an added field with a default)."""

    class OrderV1(Record):  # type: ignore[misc]
        id = String()
        quantity = Integer()
        placed = Long(required_default=True)

    return OrderV1


def send_batched(producer: Any, topic: str, values: list[Any], keys: list[str]) -> list[Sent]:
    """send_async into producer batches; the ids (with batch indexes) come from the callbacks."""
    ids: dict[int, Any] = {}

    def callback(i: int) -> Any:
        def done(result: Any, msg_id: Any) -> None:
            assert result == pulsar.Result.Ok, result
            ids[i] = msg_id

        return done

    for i, (value, key) in enumerate(zip(values, keys, strict=True)):
        producer.send_async(value, callback(i), partition_key=key, properties={"i": str(i)})
    producer.flush()
    wait_for("all send callbacks", lambda: len(ids) == len(values), 30)
    return [
        Sent(
            topic=topic,
            ledger=ids[i].ledger_id(),
            entry=ids[i].entry_id(),
            partition=ids[i].partition(),
            batch_index=ids[i].batch_index(),
            key=keys[i],
            properties={"i": str(i)},
        )
        for i in range(len(values))
    ]


def test_v2_producer_batches_compression_and_two_schema_versions(
    stack: Stack, client: Any, runtimes: Runtimes, recorder: Recorder
) -> None:
    topic = unique_topic("rt-evolve")
    batching = {
        "batching_enabled": True,
        "batching_max_messages": 4,
        "batching_max_publish_delay_ms": 100,
        "compression_type": pulsar.CompressionType.LZ4,
    }
    p1 = client.create_producer(topic, schema=AvroSchema(OrderV1), **batching)
    v1 = [OrderV1(id=f"a{i}", quantity=i) for i in range(6)]
    sent = send_batched(p1, topic, v1, [f"k{i % 2}" for i in range(6)])
    p1.close()
    order2 = order_v2()
    p2 = client.create_producer(topic, schema=AvroSchema(order2), **batching)
    v2 = [order2(id=f"b{i}", quantity=10 + i, placed=1_698_617_628_123 + i) for i in range(3)]
    sent += send_batched(p2, topic, v2, ["k9"] * 3)
    p2.close()
    assert any(s.batch_index > 0 for s in sent), "the producer did not batch"

    fields = "topic,key,sequence,properties,messageId"
    values = [{"id": o.id, "quantity": o.quantity} for o in v1] + [
        {"id": o.id, "quantity": o.quantity, "placed": o.placed} for o in v2
    ]
    expected = [v2_item(s, v, fields) for s, v in zip(sent, values, strict=True)]
    runtimes.start(
        runtime_config(stack, recorder.function, topics=[topic], sink={"metadataFields": fields})
    )
    items = wait_items(recorder, len(expected))
    # Messages of one producer batch share Pulsar IO's sequence ((ledger << 28) | entry) and
    # differ in their messageId's batch index.
    assert sorted(canonical(x) for x in items) == sorted(canonical(x) for x in expected)


def test_messages_without_schema_version_need_no_admin_url(
    stack: Stack, client: Any, runtimes: Runtimes, recorder: Recorder
) -> None:
    """Schemaless topics, and versionless messages on a topic with a schema (the REST producer's),
    are resolved over the broker connection: an unreachable adminUrl does not matter to them."""
    plain = unique_topic("rt-noadmin-plain")
    p = client.create_producer(plain)
    expected = [
        v2_item(send(p, plain, b"raw-bytes", **meta(0)), base64.b64encode(b"raw-bytes").decode())
    ]
    p.close()
    typed = unique_topic("rt-noadmin-int32")
    (sent,) = rest_produce(stack, typed, "INT32", [{"payload": "-42", "key": "k"}])
    expected.append(v2_item(sent, -42))
    cfg = runtime_config(
        stack,
        recorder.function,
        topics=[plain, typed],
        pulsar={"adminUrl": f"http://127.0.0.1:{free_port()}"},  # nothing listens there
    )
    runtimes.start(cfg)
    items = wait_items(recorder, len(expected))
    assert sorted(canonical(x) for x in items) == sorted(canonical(x) for x in expected)
