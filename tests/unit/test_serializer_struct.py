"""Serializer: struct schemas (AVRO, JSON) and the reference's logical-type table.

Avro test data is written with fastavro from a copy of the schema without `logicalType`, so each
test states the exact wire value (millis, micros, unscaled decimal bytes...).
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambdasink_runtime.config import SinkConfig
from lambdasink_runtime.errors import SerializationError
from lambdasink_runtime.record import Record, SchemaInfo
from lambdasink_runtime.serializer import Serializer

SER = Serializer(
    SinkConfig.from_mapping(
        {"awsRegion": "r", "lambdaFunctionName": "f", "payloadFormat": "V2", "metadataFields": ""}
    )
)


def strip(schema: Any) -> Any:
    if isinstance(schema, list):
        return [strip(s) for s in schema]
    if isinstance(schema, dict):
        return {k: strip(v) for k, v in schema.items() if k != "logicalType"}
    return schema


def avro(schema: Any, value: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(strip(schema)), value)
    return buf.getvalue()


def rec(value: bytes, kind: str, definition: str) -> Record:
    return Record(
        topic="persistent://public/default/t",
        value=value,
        ledger_id=1,
        entry_id=2,
        partition=-1,
        batch_index=-1,
        schema=SchemaInfo(kind, definition, name="t"),
    )


def avro_item(schema: Any, value: Any) -> str:
    return SER.v2_item(rec(avro(schema, value), "AVRO", json.dumps(schema))).decode()


def json_item(schema: Any, text: str) -> str:
    definition = schema if isinstance(schema, str) else json.dumps(schema)
    return SER.v2_item(rec(text.encode(), "JSON", definition)).decode()


def record_schema(*fields: tuple[str, Any], name: str = "R") -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": [{"name": n, "type": t} for n, t in fields]}


def logical(base: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"type": base, "logicalType": name, **extra}


# --------------------------------------------------------------------------- reference example


EXAMPLE = record_schema(("message", "string"), ("time", logical("long", "timestamp-millis")))


def test_avro_reference_struct_example() -> None:
    out = avro_item(EXAMPLE, {"message": "hello", "time": 1697530931263})
    assert out == '{"value":{"message":"hello","time":"2023-10-17T08:22:11.263Z"}}'


def test_json_reference_struct_example() -> None:
    out = json_item(EXAMPLE, '{"message": "hello", "time": 1697530931263}')
    assert out == '{"value":{"message":"hello","time":"2023-10-17T08:22:11.263Z"}}'


# --------------------------------------------------------------------------- logical types


LOGICAL_ROWS = [
    # (reference row / our choice, schema, wire value, JSON text)
    ("time-millis", logical("int", "time-millis"), 49721123, '"13:48:41.123"'),
    ("time-micros", logical("long", "time-micros"), 49721123456, '"13:48:41.123"'),
    (
        "timestamp-millis",
        logical("long", "timestamp-millis"),
        1698617628123,
        '"2023-10-29T22:13:48.123Z"',
    ),
    (
        "timestamp-micros",
        logical("long", "timestamp-micros"),
        1698617628123456,
        '"2023-10-29T22:13:48.123456Z"',
    ),
    (
        "local-timestamp-millis",
        logical("long", "local-timestamp-millis"),
        1698617628123,
        '"2023-10-29T22:13:48.123"',
    ),
    (
        "local-timestamp-micros",
        logical("long", "local-timestamp-micros"),
        1698617628123456,
        '"2023-10-29T22:13:48.123456"',
    ),
    (
        "timestamp-nanos",
        logical("long", "timestamp-nanos"),
        1698617628123456789,
        '"2023-10-29T22:13:48.123456789Z"',
    ),
    (
        "local-timestamp-nanos",
        logical("long", "local-timestamp-nanos"),
        1698617628123456789,
        '"2023-10-29T22:13:48.123456789"',
    ),
    ("date", logical("int", "date"), 19647, '"2023-10-17"'),
    ("date before epoch", logical("int", "date"), -1, '"1969-12-31"'),
    (
        "timestamp before epoch",
        logical("long", "timestamp-millis"),
        -1,
        '"1969-12-31T23:59:59.999Z"',
    ),
    (
        "uuid string",
        logical("string", "uuid"),
        "0b7f3c39-2f0c-4a5e-8f7e-1d1d1d1d1d1d",
        '"0b7f3c39-2f0c-4a5e-8f7e-1d1d1d1d1d1d"',
    ),
    ("decimal", logical("bytes", "decimal", precision=10, scale=2), b"\x04\xd2", '"12.34"'),
    (
        "decimal trailing zero",
        logical("bytes", "decimal", precision=10, scale=2),
        b"\x04\xce",
        '"12.30"',
    ),
    ("decimal negative", logical("bytes", "decimal", precision=4, scale=2), b"\xfb", '"-0.05"'),
    ("decimal scale 0", logical("bytes", "decimal", precision=4), b"\x01\x00", '"256"'),
    (
        "decimal fixed",
        {
            "type": "fixed",
            "name": "D",
            "size": 4,
            "logicalType": "decimal",
            "precision": 9,
            "scale": 3,
        },
        b"\x00\x01\xe2\x40",
        '"123.456"',
    ),
    (
        "uuid fixed",
        {"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"},
        uuid.UUID("0b7f3c39-2f0c-4a5e-8f7e-1d1d1d1d1d1d").bytes,
        '"0b7f3c39-2f0c-4a5e-8f7e-1d1d1d1d1d1d"',
    ),
    ("unknown logical type", logical("long", "my-own"), 5, "5"),
    ("logical type on the wrong base type", logical("string", "timestamp-millis"), "x", '"x"'),
]


@pytest.mark.parametrize(
    ("row", "schema", "wire", "expected"), LOGICAL_ROWS, ids=[r[0] for r in LOGICAL_ROWS]
)
def test_avro_logical_types(row: str, schema: Any, wire: Any, expected: str) -> None:
    out = avro_item(record_schema(("f", schema)), {"f": wire})
    assert out == '{"value":{"f":' + expected + "}}"


def test_avro_decimal_keeps_every_digit() -> None:
    unscaled = 123456789012345678901234567890123
    wire = unscaled.to_bytes(16, "big", signed=True)
    schema = record_schema(("d", logical("bytes", "decimal", precision=38, scale=5)))
    out = json.loads(avro_item(schema, {"d": wire}))["value"]["d"]
    assert out == "1234567890123456789012345678.90123"
    assert out.replace(".", "") == str(unscaled)  # exact, whatever the decimal context


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.integers(0, 12))
def test_avro_decimal_round_trip(unscaled: int, scale: int) -> None:
    wire = unscaled.to_bytes(9, "big", signed=True)
    schema = record_schema(("d", logical("bytes", "decimal", precision=30, scale=scale)))
    text = json.loads(avro_item(schema, {"d": wire}))["value"]["d"]
    assert "E" not in text
    assert len(text.partition(".")[2]) == scale
    assert int(text.replace(".", "")) == unscaled


@pytest.mark.parametrize(
    ("schema", "text", "expected"),
    [
        (logical("int", "time-millis"), "49721123", '"13:48:41.123"'),
        (logical("long", "timestamp-micros"), "1698617628123456", '"2023-10-29T22:13:48.123456Z"'),
        (logical("long", "local-timestamp-millis"), "1698617628123", '"2023-10-29T22:13:48.123"'),
        (logical("int", "date"), "19647", '"2023-10-17"'),
        (
            logical("long", "timestamp-millis"),
            '"2023-10-17T08:22:11.263Z"',
            '"2023-10-17T08:22:11.263Z"',
        ),
        (logical("bytes", "decimal", scale=2), "12.34", "12.34"),
        ("bytes", '"SGVsbG8="', '"SGVsbG8="'),
        (
            ["null", logical("long", "timestamp-millis")],
            "1698617628123",
            '"2023-10-29T22:13:48.123Z"',
        ),
        (["null", logical("long", "timestamp-millis")], "null", "null"),
    ],
)
def test_json_schema_logical_types(schema: Any, text: str, expected: str) -> None:
    out = json_item(record_schema(("f", schema)), '{"f": ' + text + "}")
    assert json.loads(out) == {"value": {"f": json.loads(expected)}}


# --------------------------------------------------------------------------- Avro structure


ADDRESS = {
    "type": "record",
    "name": "Address",
    "namespace": "com.example",
    "fields": [
        {"name": "city", "type": "string"},
        {"name": "since", "type": logical("int", "date")},
    ],
}


def test_avro_primitive_fields() -> None:
    schema = record_schema(
        ("b", "boolean"),
        ("i", "int"),
        ("l", "long"),
        ("f", "float"),
        ("d", "double"),
        ("s", "string"),
        ("raw", "bytes"),
        ("fx", {"type": "fixed", "name": "F2", "size": 2}),
        ("e", {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}),
        ("n", "null"),
    )
    value = {
        "b": True,
        "i": -7,
        "l": 2**40,
        "f": 1.1,
        "d": 0.1,
        "s": "ü",
        "raw": b"Hello",
        "fx": b"\x00\xff",
        "e": "GREEN",
        "n": None,
    }
    assert avro_item(schema, value) == (
        '{"value":{"b":true,"i":-7,"l":1099511627776,"f":1.1,"d":0.1,"s":"ü",'
        '"raw":"SGVsbG8=","fx":"AP8=","e":"GREEN","n":null}}'
    )


def test_avro_non_finite_double() -> None:
    schema = record_schema(("d", "double"), ("ds", {"type": "array", "items": "double"}))
    out = avro_item(schema, {"d": float("nan"), "ds": [float("inf"), 1.5]})
    assert out == '{"value":{"d":"NaN","ds":["Infinity",1.5]}}'


def test_avro_nested_records_arrays_maps_and_named_references() -> None:
    schema = {
        "type": "record",
        "name": "Person",
        "namespace": "com.example",
        "fields": [
            {"name": "home", "type": ADDRESS},
            {"name": "previous", "type": {"type": "array", "items": "Address"}},
            {"name": "byName", "type": {"type": "map", "values": "com.example.Address"}},
            {"name": "work", "type": ["null", "Address"]},
            {
                "name": "stamps",
                "type": {"type": "array", "items": logical("long", "timestamp-millis")},
            },
        ],
    }
    value = {
        "home": {"city": "Oslo", "since": 19647},
        "previous": [{"city": "Bergen", "since": 0}],
        "byName": {"x": {"city": "Tromsø", "since": 1}},
        "work": None,
        "stamps": [0, 1000],
    }
    assert avro_item(schema, value) == (
        '{"value":{"home":{"city":"Oslo","since":"2023-10-17"},'
        '"previous":[{"city":"Bergen","since":"1970-01-01"}],'
        '"byName":{"x":{"city":"Tromsø","since":"1970-01-02"}},"work":null,'
        '"stamps":["1970-01-01T00:00:00.000Z","1970-01-01T00:00:01.000Z"]}}'
    )
    value["work"] = {"city": "Lund", "since": 2}
    out = json.loads(avro_item(schema, value))
    assert out["value"]["work"] == {"city": "Lund", "since": "1970-01-03"}


def test_avro_union_of_two_records() -> None:
    a = record_schema(("t", logical("long", "timestamp-millis")), name="A")
    b = record_schema(("d", logical("int", "date")), name="B")
    schema = record_schema(("u", ["null", a, b]))
    assert avro_item(schema, {"u": {"d": 1}}) == '{"value":{"u":{"d":"1970-01-02"}}}'
    assert avro_item(schema, {"u": {"t": 0}}) == '{"value":{"u":{"t":"1970-01-01T00:00:00.000Z"}}}'
    assert avro_item(schema, {"u": None}) == '{"value":{"u":null}}'


def test_avro_union_of_two_records_without_conversions_is_unwrapped() -> None:
    a = record_schema(("x", "int"), name="A")
    b = record_schema(("y", "string"), name="B")
    schema = record_schema(("u", [a, b]))
    assert avro_item(schema, {"u": {"y": "s"}}) == '{"value":{"u":{"y":"s"}}}'
    assert avro_item([a, b], {"x": 1}) == '{"value":{"x":1}}'


def test_avro_union_of_primitives() -> None:
    schema = record_schema(
        ("u", ["null", "string", "bytes", logical("long", "timestamp-millis"), "float"])
    )
    assert avro_item(schema, {"u": "s"}) == '{"value":{"u":"s"}}'
    assert avro_item(schema, {"u": b"\x01"}) == '{"value":{"u":"AQ=="}}'
    assert avro_item(schema, {"u": 0}) == '{"value":{"u":"1970-01-01T00:00:00.000Z"}}'
    assert avro_item(schema, {"u": 1.1}) == '{"value":{"u":1.1}}'
    bytes_first = record_schema(("u", ["bytes", "string"]))
    assert avro_item(bytes_first, {"u": "s"}) == '{"value":{"u":"s"}}'
    assert avro_item(bytes_first, {"u": b"s"}) == '{"value":{"u":"cw=="}}'


def test_avro_recursive_record() -> None:
    schema = {
        "type": "record",
        "name": "Node",
        "fields": [
            {"name": "at", "type": logical("long", "timestamp-millis")},
            {"name": "next", "type": ["null", "Node"]},
        ],
    }
    value = {"at": 0, "next": {"at": 1, "next": None}}
    assert avro_item(schema, value) == (
        '{"value":{"at":"1970-01-01T00:00:00.000Z",'
        '"next":{"at":"1970-01-01T00:00:00.001Z","next":null}}}'
    )


def test_avro_top_level_non_record() -> None:
    assert avro_item({"type": "array", "items": "bytes"}, [b"a"]) == '{"value":["YQ=="]}'
    assert avro_item("string", "plain") == '{"value":"plain"}'
    assert (
        avro_item(logical("long", "timestamp-millis"), 0) == '{"value":"1970-01-01T00:00:00.000Z"}'
    )


def test_avro_writer_schema_versions_decoded_with_their_own_definition() -> None:
    v1 = record_schema(("a", "int"))
    v2 = record_schema(("a", "int"), ("b", ["null", "string"]))
    assert avro_item(v1, {"a": 1}) == '{"value":{"a":1}}'
    assert avro_item(v2, {"a": 1, "b": "x"}) == '{"value":{"a":1,"b":"x"}}'


def test_avro_codec_cached_per_definition() -> None:
    s = Serializer(SER.sink)
    definition = json.dumps(EXAMPLE)
    for _ in range(3):
        s.v2_item(rec(avro(EXAMPLE, {"message": "m", "time": 0}), "AVRO", definition))
    assert len(s._codecs) == 1


@pytest.mark.parametrize(
    ("definition", "data"),
    [
        (json.dumps(record_schema(("s", "string"))), b"\x0a"),  # string of 5 bytes, 0 given
        (json.dumps(record_schema(("i", "int"))), b"\x02\x00"),  # one byte too many
        ("not json", b"\x00"),
        (json.dumps({"type": "record", "name": "R"}), b"\x00"),  # no fields
        (json.dumps(record_schema(("x", "Unknown"))), b"\x00"),
        (
            json.dumps(record_schema(("t", logical("long", "timestamp-millis")))),
            b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        ),
    ],
)
def test_avro_undecodable_raises_not_retriable(definition: str, data: bytes) -> None:
    with pytest.raises(SerializationError) as info:
        SER.v2_item(rec(data, "AVRO", definition))
    assert info.value.retriable is False
    assert "AVRO" in str(info.value)


# --------------------------------------------------------------------------- JSON schema


def test_json_without_definition_is_embedded_verbatim() -> None:
    assert json_item("", ' {"a": [1, 2.50, "x"]}\n') == '{"value":{"a": [1, 2.50, "x"]}}'


def test_json_with_non_avro_definition_passes_through() -> None:
    assert json_item('{"$schema": "http://json-schema.org/draft-07/schema#"}', "[1]") == (
        '{"value":[1]}'
    )


def test_json_missing_fields_and_wrong_types_are_left_alone() -> None:
    schema = record_schema(
        ("t", logical("long", "timestamp-millis")), ("d", logical("int", "date"))
    )
    assert json_item(schema, '{"d": "soon", "extra": 1}') == '{"value":{"d":"soon","extra":1}}'
    assert json_item(schema, '"not an object"') == '{"value":"not an object"}'


def test_json_nested() -> None:
    schema = {
        "type": "record",
        "name": "Outer",
        "fields": [
            {"name": "inner", "type": ["null", ADDRESS]},
            {"name": "list", "type": {"type": "array", "items": "com.example.Address"}},
            {"name": "m", "type": {"type": "map", "values": logical("long", "timestamp-millis")}},
        ],
    }
    text = (
        '{"inner": {"city": "Oslo", "since": 1}, "list": [{"city": "A", "since": 2}],'
        ' "m": {"k": 0}}'
    )
    assert json_item(schema, text) == (
        '{"value":{"inner":{"city":"Oslo","since":"1970-01-02"},'
        '"list":[{"city":"A","since":"1970-01-03"}],"m":{"k":"1970-01-01T00:00:00.000Z"}}}'
    )


@pytest.mark.parametrize("text", ["{not json", '{"a": NaN}', "", b"\xff".decode("latin-1")])
def test_json_invalid_raises(text: str) -> None:
    with pytest.raises(SerializationError) as info:
        SER.v2_item(rec(text.encode("latin-1"), "JSON", json.dumps(EXAMPLE)))
    assert info.value.retriable is False
    with pytest.raises(SerializationError):
        SER.v2_item(rec(text.encode("latin-1"), "JSON", ""))
