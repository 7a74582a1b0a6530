"""V2 items: the fragment renderer equals an item built the obvious way (a dict + json.dumps).

The renderer caches fragments (topic, properties, the second of a time, the previous message's
properties), so each example feeds one serializer a sequence of records: cache hits, misses and
look-alikes (equal properties in another order) all have to give the oracle's bytes.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from lambdasink_runtime.config import METADATA_FIELDS, SinkConfig
from lambdasink_runtime.record import Record, SchemaInfo
from lambdasink_runtime.serializer import Serializer

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INTS = {"INT8": ">b", "INT16": ">h", "INT32": ">i", "INT64": ">q"}


def oracle_value(kind: str | None, data: bytes) -> Any:
    if kind == "STRING":
        return data.decode("utf-8", "replace")
    if kind in INTS:
        return struct.unpack(INTS[kind], data)[0]
    if kind == "BOOLEAN":
        return data != b"\x00"
    return base64.b64encode(data).decode()  # no schema / BYTES


def oracle_time(ms: int) -> str | int:
    try:
        t = EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return ms
    if not 1 <= t.year <= 9999:
        return ms
    return f"{t.year:04d}-{t:%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z"


def oracle_item(r: Record, fields: frozenset[str]) -> bytes:
    """The V2 rules of the serializer's docstring, written out as a dict."""
    m = re.search(r"-partition-(\d+)$", r.topic)
    partition = r.partition if r.partition >= 0 else (int(m.group(1)) if m else None)
    candidates: dict[str, Any] = {
        "topic": r.topic,
        "key": r.key,
        "partitionIndex": partition,
        "sequence": (r.ledger_id << 28) | r.entry_id,
        "properties": dict(r.properties),
        "eventTime": oracle_time(r.event_time_ms) if r.event_time_ms else None,
        "messageId": f"{r.ledger_id}:{r.entry_id}:{r.partition}:{r.batch_index}",
        "publishTime": oracle_time(r.publish_time_ms) if r.publish_time_ms else None,
    }
    item = {k: v for k, v in candidates.items() if k in fields and v is not None}
    item["value"] = oracle_value(r.schema.type if r.schema else None, r.value)
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()


@st.composite
def values(draw: st.DrawFn) -> tuple[SchemaInfo | None, bytes]:
    kind = draw(st.sampled_from([None, "BYTES", "STRING", "BOOLEAN", *INTS]))
    if kind in INTS:
        fmt = INTS[kind]
        bits = struct.calcsize(fmt) * 8
        data = struct.pack(fmt, draw(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)))
    elif kind == "BOOLEAN":
        data = bytes([draw(st.integers(0, 255))])
    elif kind == "STRING":
        data = draw(st.one_of(st.text().map(str.encode), st.binary(max_size=20)))
    else:
        data = draw(st.binary(max_size=20))
    return (None if kind is None else SchemaInfo(kind)), data


TIMES = st.one_of(
    st.none(),
    st.just(0),
    st.integers(1_700_000_000_000, 1_700_000_005_000),  # a few seconds: cache hits
    st.integers(-(2**63), 2**63 - 1),  # anywhere, also outside the years 1..9999
)
PROPERTY_KEYS = st.sampled_from(["a", "b", "source", "ü", 'q"uote', ""])


@st.composite
def records(draw: st.DrawFn) -> Record:
    schema, value = draw(values())
    topic = draw(
        st.sampled_from(
            [
                "persistent://public/default/t",
                "persistent://public/default/t-partition-7",
                "persistent://public/default/t-partition-x",
                'non-persistent://tenant/ns/ü"\\x',
            ]
        )
    )
    props = draw(st.dictionaries(PROPERTY_KEYS, st.sampled_from(["1", "2", "é\n"]), max_size=3))
    if draw(st.booleans()):  # the same properties in another insertion order
        props = dict(reversed(props.items()))
    return Record(
        topic=topic,
        value=value,
        ledger_id=draw(st.integers(0, 2**40)),
        entry_id=draw(st.integers(0, 2**28 - 1)),
        partition=draw(st.sampled_from([-1, 0, 3, 7])),
        batch_index=draw(st.sampled_from([-1, 0, 5])),
        key=draw(st.one_of(st.none(), st.sampled_from(["k1", "k2"]), st.text(max_size=8))),
        properties=props,
        event_time_ms=draw(TIMES),
        publish_time_ms=draw(TIMES),
        schema=schema,
    )


@given(
    st.frozensets(st.sampled_from(METADATA_FIELDS)),
    st.lists(records(), min_size=1, max_size=12),
)
def test_v2_item_equals_a_dict_through_json_dumps(
    fields: frozenset[str], recs: list[Record]
) -> None:
    sink = SinkConfig(
        aws_region="r",
        lambda_function_name="f",
        payload_format="V2",
        metadata_fields=tuple(f for f in METADATA_FIELDS if f in fields),
    )
    s = Serializer(sink)
    for r in recs:
        assert s.v2_item(r) == oracle_item(r, fields)
    for r in reversed(recs):  # warm caches, other order
        assert s.v2_item(r) == oracle_item(r, fields)


def test_equal_properties_in_another_order_keep_their_own_order() -> None:
    s = Serializer(
        SinkConfig(aws_region="r", lambda_function_name="f", metadata_fields=("properties",))
    )

    def rec(props: dict[str, str]) -> Record:
        return Record("t", b"", 1, 1, -1, -1, properties=props, schema=SchemaInfo("BYTES"))

    first = s.v2_item(rec({"a": "1", "b": "2"}))
    second = s.v2_item(rec({"b": "2", "a": "1"}))
    assert first == b'{"properties":{"a":"1","b":"2"},"value":""}'
    assert second == b'{"properties":{"b":"2","a":"1"},"value":""}'
