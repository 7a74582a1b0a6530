"""Serializer: the reference's primitive-schema table, V2 metadata, the V1 payload's 3 steps.

Expected values are the reference's examples moved to UTC (pods run in UTC: offset `Z`).
"""

from __future__ import annotations

import base64
import json
import math
import struct
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambdasink_runtime.config import SinkConfig
from lambdasink_runtime.errors import SerializationError
from lambdasink_runtime.record import Record, SchemaInfo
from lambdasink_runtime.serializer import Serializer

ALL_META = "topic,key,partitionIndex,sequence,properties,eventTime,messageId,publishTime"


def serializer(**sink: Any) -> Serializer:
    return Serializer(
        SinkConfig.from_mapping({"awsRegion": "r", "lambdaFunctionName": "f", **sink})
    )


VALUE_ONLY = serializer(payloadFormat="V2", metadataFields="")


def record(value: bytes, kind: str | None = None, definition: str = "", **kw: Any) -> Record:
    fields: dict[str, Any] = {
        "topic": "persistent://public/default/t",
        "ledger_id": 1,
        "entry_id": 1,
        "partition": -1,
        "batch_index": -1,
    }
    fields.update(kw)
    schema = None if kind is None else SchemaInfo(kind, definition, name=kind.title())
    return Record(value=value, schema=schema, **fields)


def item(value: bytes, kind: str | None = None) -> str:
    return VALUE_ONLY.v2_item(record(value, kind)).decode()


def value_of(value: bytes, kind: str | None = None) -> Any:
    return json.loads(item(value, kind))["value"]


# --------------------------------------------------------------------------- primitive table


@pytest.mark.parametrize(
    ("raw", "expected"), [(b"\x01", "true"), (b"\x00", "false"), (b"\x02", "true")]
)
def test_boolean(raw: bytes, expected: str) -> None:
    assert item(raw, "BOOLEAN") == '{"value":' + expected + "}"


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("INT8", b"\x7f", "127"),
        ("INT8", b"\xff", "-1"),
        ("INT16", b"\x80\x00", "-32768"),
        ("INT16", b"\x04\xd2", "1234"),
        ("INT32", (1234).to_bytes(4, "big"), "1234"),
        ("INT32", (-2).to_bytes(4, "big", signed=True), "-2"),
        ("INT64", (2**62 + 5).to_bytes(8, "big"), str(2**62 + 5)),
        ("INT64", (-(2**63)).to_bytes(8, "big", signed=True), str(-(2**63))),
    ],
)
def test_integers_big_endian(kind: str, raw: bytes, expected: str) -> None:
    assert item(raw, kind) == '{"value":' + expected + "}"


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_int32_round_trip(n: int) -> None:
    assert value_of(struct.pack(">i", n), "INT32") == n


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_int64_round_trip(n: int) -> None:
    assert value_of(struct.pack(">q", n), "INT64") == n


def test_float_prints_shortest_float32_digits() -> None:
    assert item(struct.pack(">f", 1.1), "FLOAT") == '{"value":1.1}'
    assert item(struct.pack(">f", -0.5), "FLOAT") == '{"value":-0.5}'
    assert item(struct.pack(">f", 3.4028234663852886e38), "FLOAT") == '{"value":3.4028235e+38}'


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float_round_trip(x: float) -> None:
    back = value_of(struct.pack(">f", x), "FLOAT")
    assert struct.unpack(">f", struct.pack(">f", back))[0] == x


def test_double() -> None:
    assert item(struct.pack(">d", 0.1), "DOUBLE") == '{"value":0.1}'
    assert item(struct.pack(">d", 1e300), "DOUBLE") == '{"value":1e+300}'


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_double_round_trip(x: float) -> None:
    assert value_of(struct.pack(">d", x), "DOUBLE") == x


@pytest.mark.parametrize(
    ("kind", "x", "expected"),
    [
        ("DOUBLE", math.nan, '"NaN"'),
        ("DOUBLE", math.inf, '"Infinity"'),
        ("FLOAT", -math.inf, '"-Infinity"'),
        ("FLOAT", math.nan, '"NaN"'),
    ],
)
def test_non_finite_floats_as_jackson_strings(kind: str, x: float, expected: str) -> None:
    raw = struct.pack(">d" if kind == "DOUBLE" else ">f", x)
    assert item(raw, kind) == '{"value":' + expected + "}"


def test_string() -> None:
    assert item(b"Hello", "STRING") == '{"value":"Hello"}'
    assert item('héllo ✓ "q"'.encode(), "STRING") == '{"value":"héllo ✓ \\"q\\""}'


def test_string_with_invalid_utf8_is_replaced_like_java() -> None:
    assert value_of(b"a\xffb", "STRING") == "a\ufffdb"


def test_bytes_base64() -> None:
    assert item(b"Hello", "BYTES") == '{"value":"SGVsbG8="}'
    assert item(b"\x00\xff\xfe", "BYTES") == '{"value":"AP/+"}'


@pytest.mark.parametrize(
    "kind", [None, "NONE", "KEY_VALUE", "PROTOBUF", "PROTOBUF_NATIVE", "AUTO_CONSUME", "WHATEVER"]
)
def test_no_schema_and_undecodable_types_are_base64(kind: str | None) -> None:
    assert item(b"Hello", kind) == '{"value":"SGVsbG8="}'


@pytest.mark.parametrize("kind", ["DATE", "TIME", "TIMESTAMP"])
def test_date_time_timestamp(kind: str) -> None:
    # reference example '2023-10-30T06:13:48.123+08:00', in UTC
    raw = (1698617628123).to_bytes(8, "big")
    assert item(raw, kind) == '{"value":"2023-10-29T22:13:48.123Z"}'
    assert value_of((-1).to_bytes(8, "big", signed=True), kind) == "1969-12-31T23:59:59.999Z"
    assert value_of((0).to_bytes(8, "big"), kind) == "1970-01-01T00:00:00.000Z"


@given(st.integers(min_value=-62135596800000, max_value=253402300799999))
def test_timestamp_round_trip(ms: int) -> None:
    text = value_of(struct.pack(">q", ms), "TIMESTAMP")
    assert len(text) == 24
    assert text.endswith("Z")
    back = datetime.fromisoformat(text.replace("Z", "+00:00"))
    delta = back - datetime(1970, 1, 1, tzinfo=UTC)
    assert (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000 == ms


@given(
    st.integers(min_value=-62135596800, max_value=253402300799),
    st.integers(min_value=0, max_value=999_999_999),
)
def test_instant_round_trip(seconds: int, nanos: int) -> None:
    text = value_of(struct.pack(">qi", seconds, nanos), "INSTANT")
    assert len(text) == 30
    assert text.endswith("Z")
    assert text[20:29] == f"{nanos:09d}"
    back = datetime.fromisoformat(text[:19] + "+00:00")
    assert back == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


@given(st.integers(-719162, 2932896), st.integers(0, 86_400 * 10**9 - 1))
def test_local_date_time_round_trip(day: int, nano_of_day: int) -> None:
    text = value_of(struct.pack(">qq", day, nano_of_day), "LOCAL_DATE_TIME")
    date_part, time_part = text.split("T")
    assert date.fromisoformat(date_part) == date(1970, 1, 1) + timedelta(days=day)
    h, m, s = time_part.split(":")
    assert ((int(h) * 60 + int(m)) * 60) * 10**9 + int(s.replace(".", "")) == nano_of_day


def test_local_date() -> None:
    assert item((19647).to_bytes(8, "big"), "LOCAL_DATE") == '{"value":"2023-10-17"}'
    assert value_of((-1).to_bytes(8, "big", signed=True), "LOCAL_DATE") == "1969-12-31"


def test_local_time() -> None:
    nanos = ((4 * 60 + 30) * 60 + 33) * 10**9 + 123456789
    assert item(nanos.to_bytes(8, "big"), "LOCAL_TIME") == '{"value":"04:30:33.123456789"}'
    assert value_of((5).to_bytes(8, "big"), "LOCAL_TIME") == "00:00:00.000000005"


def test_local_date_time() -> None:
    nanos = ((4 * 60 + 30) * 60 + 33) * 10**9 + 123456789
    raw = struct.pack(">qq", 19647, nanos)
    assert item(raw, "LOCAL_DATE_TIME") == '{"value":"2023-10-17T04:30:33.123456789"}'


def test_instant() -> None:
    # reference example '2023-10-30T06:13:48.123456789+08:00', in UTC
    raw = struct.pack(">qi", 1698617628, 123456789)
    assert item(raw, "INSTANT") == '{"value":"2023-10-29T22:13:48.123456789Z"}'
    assert value_of(struct.pack(">qi", 0, 0), "INSTANT") == "1970-01-01T00:00:00.000000000Z"


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("BOOLEAN", b""),
        ("BOOLEAN", b"\x01\x00"),
        ("INT8", b"\x00\x00"),
        ("INT16", b"\x00"),
        ("INT32", b"\x00" * 8),
        ("INT64", b"\x00" * 4),
        ("FLOAT", b"\x00" * 8),
        ("DOUBLE", b"\x00" * 4),
        ("TIMESTAMP", b"\x00" * 4),
        ("LOCAL_DATE", b"\x00"),
        ("LOCAL_TIME", (86_400 * 10**9).to_bytes(8, "big")),
        ("LOCAL_DATE_TIME", b"\x00" * 8),
        ("INSTANT", struct.pack(">qi", 0, 1_000_000_000)),
        ("INSTANT", b"\x00" * 16),
        ("DATE", (2**62).to_bytes(8, "big")),
    ],
)
def test_bad_wire_values_raise_not_retriable(kind: str, raw: bytes) -> None:
    with pytest.raises(SerializationError) as info:
        VALUE_ONLY.v2_item(record(raw, kind))
    assert info.value.retriable is False
    assert kind in str(info.value)
    assert "1:1:-1:-1" in str(info.value)


def test_schema_type_is_case_insensitive() -> None:
    assert item(b"\x01", "boolean") == '{"value":true}'


# --------------------------------------------------------------------------- V2 metadata


FULL: dict[str, Any] = dict(
    topic="persistent://public/default/orders-partition-3",
    ledger_id=12,
    entry_id=34,
    partition=3,
    batch_index=-1,
    key="my-key",
    properties={"a": "1", "b": "ü"},
    event_time_ms=1697530931263,
    publish_time_ms=1698617628123,
)


def test_v2_item_with_every_metadata_field() -> None:
    s = serializer(payloadFormat="V2", metadataFields=ALL_META)
    out = s.v2_item(record(b"hi", "STRING", **FULL))
    assert out == (
        b'{"topic":"persistent://public/default/orders-partition-3","key":"my-key",'
        b'"partitionIndex":3,"sequence":3221225506,"properties":{"a":"1","b":"\xc3\xbc"},'
        b'"eventTime":"2023-10-17T08:22:11.263Z","messageId":"12:34:3:-1",'
        b'"publishTime":"2023-10-29T22:13:48.123Z","value":"hi"}'
    )
    assert (12 << 28) | 34 == 3221225506


def test_v2_item_default_metadata_fields() -> None:
    s = serializer(payloadFormat="V2")
    out = json.loads(s.v2_item(record(b"hi", "STRING", **FULL)))
    assert list(out) == [
        "topic",
        "key",
        "partitionIndex",
        "sequence",
        "properties",
        "eventTime",
        "value",
    ]


def test_v2_metadata_order_is_canonical_whatever_the_config_order() -> None:
    s = serializer(payloadFormat="V2", metadataFields="messageId,topic")
    out = json.loads(s.v2_item(record(b"hi", "STRING", **FULL)))
    assert list(out) == ["topic", "messageId", "value"]


def test_v2_absent_metadata_is_omitted() -> None:
    s = serializer(payloadFormat="V2", metadataFields=ALL_META)
    out = s.v2_item(record(b"hi", "STRING"))
    assert out == (
        b'{"topic":"persistent://public/default/t","sequence":268435457,"properties":{},'
        b'"messageId":"1:1:-1:-1","value":"hi"}'
    )


def test_v2_event_time_zero_is_absent() -> None:
    s = serializer(payloadFormat="V2", metadataFields="eventTime,publishTime")
    assert s.v2_item(record(b"x", "STRING", event_time_ms=0, publish_time_ms=0)) == b'{"value":"x"}'


def test_v2_time_outside_datetime_range_is_raw_millis() -> None:
    s = serializer(payloadFormat="V2", metadataFields="eventTime")
    assert s.v2_item(record(b"x", "STRING", event_time_ms=2**62)) == (
        b'{"eventTime":' + str(2**62).encode() + b',"value":"x"}'
    )


@pytest.mark.parametrize(
    ("topic", "partition", "expected"),
    [
        ("persistent://public/default/t-partition-7", -1, 7),
        ("persistent://public/default/t-partition-7", 7, 7),
        ("persistent://public/default/t", -1, None),
        ("persistent://public/default/t-partition-x", -1, None),
    ],
)
def test_v2_partition_index(topic: str, partition: int, expected: int | None) -> None:
    s = serializer(payloadFormat="V2", metadataFields="partitionIndex")
    out = json.loads(s.v2_item(record(b"x", "STRING", topic=topic, partition=partition)))
    assert out.get("partitionIndex") == expected


def test_encode_follows_payload_format() -> None:
    rec = record(b"x", "STRING")
    v2 = serializer(payloadFormat="V2")
    v1 = serializer(payloadFormat="V1")
    assert v2.encode(rec) == v2.v2_item(rec)
    assert v1.encode(rec) == v1.v1_payload(rec)


# --------------------------------------------------------------------------- V1


def optional(value: Any = None) -> dict[str, Any]:
    if value is None:
        return {"empty": True, "present": False}
    return {"empty": False, "present": True, "value": value}


def test_v1_step1_bytes_matches_reference_example_shape() -> None:
    out = serializer().v1_payload(record(b"hello"))
    fields = {
        "key": optional(),
        "topicName": optional("persistent://public/default/t"),
        "partitionId": optional(),
        "partitionIndex": optional(),
        "recordSequence": optional(268435457),
        "eventTime": optional(),
        "properties": {},
    }
    assert json.loads(out) == {
        "sourceRecord": {**fields, "value": "aGVsbG8="},
        "value": "aGVsbG8=",
        "schema": {
            "schemaInfo": {
                "name": "Bytes",
                "schema": "",
                "type": "BYTES",
                "timestamp": 0,
                "properties": {},
                "schemaDefinition": "",
            },
            "nativeSchema": {"empty": True, "present": False},
        },
        **fields,
        "destinationTopic": optional(),
    }
    assert out.startswith(b'{"sourceRecord":{"key":{"empty":true,"present":false},')


def test_v1_step1_with_metadata_and_schema() -> None:
    out = json.loads(serializer().v1_payload(record(b"hi", "STRING", **FULL)))
    assert out["value"] == "hi"
    assert out["key"] == optional("my-key")
    assert out["partitionId"] == optional("persistent://public/default/orders-partition-3")
    assert out["partitionIndex"] == optional(3)
    assert out["eventTime"] == optional(1697530931263)
    assert out["properties"] == {"a": "1", "b": "ü"}
    assert out["sourceRecord"]["value"] == "hi"
    assert out["schema"]["schemaInfo"] == {
        "name": "String",
        "schema": "",
        "type": "STRING",
        "timestamp": 0,
        "properties": {},
        "schemaDefinition": "",
    }


def test_v1_step1_schema_definition_is_base64_bytes_and_text() -> None:
    definition = '{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}'
    out = json.loads(serializer().v1_payload(record(b"\x04", "AVRO", definition)))
    assert out["value"] == {"a": 2}
    info = out["schema"]["schemaInfo"]
    assert info["schemaDefinition"] == definition
    assert info["schema"] == base64.b64encode(definition.encode()).decode()


def test_v1_step2_value_itself_when_schema_decoding_fails_and_value_is_json() -> None:
    # 8 bytes of JSON cannot be an INT32: step 1 fails, the value is JSON → the value itself
    out = serializer().v1_payload(record(b'{"a": 1}', "INT32", **FULL))
    assert out == b'{"a":1}'


def test_v1_step3_metadata_and_utf8_value() -> None:
    out = serializer().v1_payload(record(b"hello", "INT32", **FULL))
    assert out == (
        b'{"key":"my-key","topicName":"persistent://public/default/orders-partition-3",'
        b'"partitionId":"persistent://public/default/orders-partition-3",'
        b'"recordSequence":3221225506,"eventTime":1697530931263,'
        b'"properties":{"a":"1","b":"\xc3\xbc"},"value":"hello"}'
    )


def test_v1_step3_omits_absent_metadata() -> None:
    out = serializer().v1_payload(record(b"hello", "INT32"))
    assert out == (
        b'{"topicName":"persistent://public/default/t","recordSequence":268435457,'
        b'"properties":{},"value":"hello"}'
    )


def test_v1_step3_binary_value_is_base64_not_corrupted() -> None:
    """The reference decoded binary as UTF-8 (lossy); we send base64 and say so."""
    out = json.loads(serializer().v1_payload(record(b"\xff\xfe\x00\x01", "INT64")))
    assert out["value"] == "//4AAQ=="
    assert out["valueEncoding"] == "base64"


def test_v1_never_raises_on_undecodable_avro() -> None:
    definition = '{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}'
    out = json.loads(serializer().v1_payload(record(b"\x0a", "AVRO", definition)))
    assert out["value"] == "\n"
