"""Record → JSON bytes: the reference's V1 payload and one V2 batch item. Pure: stdlib + fastavro.

Conversion rules (the reference's tables; wire encodings are Pulsar's Java schemas):

| schema | wire | JSON |
|---|---|---|
| BOOLEAN | 1 byte, non-zero = true | true/false |
| INT8/16/32/64 | 1/2/4/8 bytes, big-endian two's complement | number |
| FLOAT/DOUBLE | 4/8 bytes, big-endian IEEE 754 | number (FLOAT as its shortest float32 digits) |
| STRING | UTF-8 | string (invalid bytes → U+FFFD, as Java's decoder does) |
| BYTES, NONE, no schema | raw | base64 string |
| DATE/TIME/TIMESTAMP | int64 epoch millis | 'yyyy-MM-ddTHH:mm:ss.SSSZ' |
| LOCAL_DATE | int64 epoch day | 'yyyy-MM-dd' |
| LOCAL_TIME | int64 nano of day | 'HH:mm:ss.SSSSSSSSS' |
| LOCAL_DATE_TIME | int64 epoch day + int64 nano of day | 'yyyy-MM-ddTHH:mm:ss.SSSSSSSSS' |
| INSTANT | int64 epoch second + int32 nanos | 'yyyy-MM-ddTHH:mm:ss.SSSSSSSSSZ' |
| AVRO | Avro binary, writer schema = the message's schema version | object |
| JSON | JSON text, Avro definition | object, logical types applied to numbers |

Avro logical types: date → 'yyyy-MM-dd'; time-millis and time-micros → 'HH:mm:ss.SSS' (micros
truncated, as the table says); timestamp-millis/-micros/-nanos → 3/6/9 fraction digits + 'Z';
local-timestamp-* → the same without offset; decimal → a JSON *string* holding the exact value
in plain notation with `scale` fraction digits (a JSON number would lose precision in most
JSON parsers); uuid → string; unknown logical types → the underlying type. bytes/fixed → base64;
enum → its symbol. Non-finite floats → the strings "NaN", "Infinity", "-Infinity" (Jackson's
default). Offsets are always `Z`: pods run in UTC.

Choices where the reference is silent:
- No schema, NONE, BYTES, and types we cannot decode (KEY_VALUE, PROTOBUF, PROTOBUF_NATIVE,
  AUTO_CONSUME, unknown) → base64 of the raw bytes: never lossy, never guessed.
- V2 metadata, in this order when selected: topic, key (omitted when the message has none),
  partitionIndex (the partition number; omitted on non-partitioned topics), sequence,
  properties (always, `{}` when empty), eventTime (omitted when unset/0), messageId,
  publishTime (omitted when unset/0). Times are ISO 8601 ('...SSSZ'); a time outside the years
  1..9999 is given as its raw epoch millis number rather than failing the message.
- A value that cannot be decoded with its schema makes `v2_item` raise `SerializationError`
  (not retriable); V1 falls back as the reference does (below), so V1 never fails.

V1 (the reference's three steps):
1. The record object, shaped as Jackson rendered the Java connector's record::
     {"sourceRecord": {...same fields + "value"...}, "value": V,
      "schema": {"schemaInfo": {"name","schema","type","timestamp","properties",
                 "schemaDefinition"}, "nativeSchema": {"empty": true, "present": false}},
      "key": O, "topicName": O, "partitionId": O, "partitionIndex": O, "recordSequence": O,
      "eventTime": O, "properties": {...}, "destinationTopic": O}
   V is the V2 value (base64 for bytes, as Jackson writes byte[]); O is Java's Optional as
   Jackson wrote it, `{"empty": bool, "present": bool}`, plus `"value"` when present (Jackson
   dropped the value, which made the field useless). `schemaInfo.schema` is the definition in
   base64 (a byte[] in Java). No schema is shown as Pulsar's BYTES schema ("Bytes").
2. If the value cannot be decoded with its schema: the raw value itself when it is JSON.
3. Otherwise `{"key","topicName","partitionId","recordSequence","eventTime","properties",
   "value"}` (absent fields omitted) where value is the UTF-8 text, or — our fix of the
   reference's corrupting UTF-8 decode — base64 with `"valueEncoding": "base64"` when the bytes
   are not valid UTF-8.
"""

from __future__ import annotations

import binascii
import json
import math
import re
import struct
from collections.abc import Callable
from decimal import Decimal
from io import BytesIO
from typing import Any, NamedTuple
from uuid import UUID

import fastavro

from . import timefmt
from .config import SinkConfig
from .errors import SerializationError
from .record import Record, SchemaInfo

__all__ = ["Serializer"]

Conv = Callable[[Any], Any]

_str = json.encoder.encode_basestring  # the C-accelerated encoder (ensure_ascii=False)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_CACHE_LIMIT = 512
_PARTITION_RE = re.compile(r"-partition-(\d+)$")


def _not_serializable(o: Any) -> Any:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


# `_ENCODER.encode` builds a new C encoder on every call; one built once does the same work
# (same separators, no ASCII escaping, NaN refused) at about half the cost per small object.
# No circular-reference markers: the values come from decoders and cannot contain cycles.
_C_ENCODE = (
    json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None,
        _not_serializable,
        json.encoder.encode_basestring,
        None,
        ":",
        ",",
        False,
        False,
        False,
    )
    if getattr(json.encoder, "c_make_encoder", None) is not None
    else None
)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# json.loads(data, parse_constant=...) builds a decoder per call; this one is built once.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _loads(data: bytes | str) -> Any:
    """Strict JSON: NaN/Infinity literals are refused (they would break the whole batch).

    Input handling is json.loads's: bytes in UTF-8/16/32 (BOM-detected), a str with a BOM refused.
    """
    if isinstance(data, str):
        if data.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
        return _DECODER.decode(data)
    return _DECODER.decode(data.decode(json.detect_encoding(data), "surrogatepass"))


def _nonfinite(x: float) -> str:
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def _sanitize(obj: Any) -> Any:
    """Slow path after `allow_nan=False` refused: non-finite floats → Jackson's strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else _nonfinite(obj)
    if isinstance(obj, dict):
        return {k: _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_sanitize(v) for v in obj]
    return obj


def _dumps(obj: Any) -> str:
    try:
        if type(obj) is str:
            return _str(obj)
        if _C_ENCODE is not None:
            return "".join(_C_ENCODE(obj, 0))
        return _ENCODER.encode(obj)
    except ValueError:
        return _ENCODER.encode(_sanitize(obj))


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


# --------------------------------------------------------------------------- primitives

_F32 = struct.Struct(">f")


def _float32(x: float) -> float | str:
    """The shortest decimal that reads back as the same float32 (1.1f → 1.1, as Java prints)."""
    if not math.isfinite(x):
        return _nonfinite(x)
    for digits in range(6, 10):
        short = float(f"{x:.{digits}g}")
        if _F32.unpack(_F32.pack(short))[0] == x:
            return short
    return x


def _fixed_size(name: str, size: int, data: bytes) -> None:
    if len(data) != size:
        raise ValueError(f"{name} needs {size} bytes, got {len(data)}")


def _number(name: str, fmt: str) -> Callable[[bytes], Any]:
    unpack = struct.Struct(fmt).unpack
    size = struct.calcsize(fmt)

    def decode(data: bytes) -> Any:
        _fixed_size(name, size, data)
        return unpack(data)[0]

    return decode


def _then(first: Callable[[bytes], Any], then: Conv) -> Callable[[bytes], Any]:
    return lambda data: then(first(data))


def _boolean(data: bytes) -> bool:
    _fixed_size("BOOLEAN", 1, data)
    return data[0] != 0


def _double(data: bytes) -> float | str:
    _fixed_size("DOUBLE", 8, data)
    x: float = struct.unpack(">d", data)[0]
    return x if math.isfinite(x) else _nonfinite(x)


_LDT = struct.Struct(">qq")
_INSTANT = struct.Struct(">qi")


def _local_date_time(data: bytes) -> str:
    _fixed_size("LOCAL_DATE_TIME", 16, data)
    return timefmt.local_date_time(*_LDT.unpack(data))


def _instant(data: bytes) -> str:
    _fixed_size("INSTANT", 12, data)
    return timefmt.instant(*_INSTANT.unpack(data))


_int64 = _number("INT64", ">q")

_PRIMITIVE_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "BOOLEAN": _boolean,
    "INT8": _number("INT8", ">b"),
    "INT16": _number("INT16", ">h"),
    "INT32": _number("INT32", ">i"),
    "INT64": _int64,
    "FLOAT": _then(_number("FLOAT", ">f"), _float32),
    "DOUBLE": _double,
    "STRING": lambda data: data.decode("utf-8", "replace"),
    "DATE": _then(_int64, timefmt.millis_utc),
    "TIME": _then(_int64, timefmt.millis_utc),
    "TIMESTAMP": _then(_int64, timefmt.millis_utc),
    "LOCAL_DATE": _then(_int64, timefmt.epoch_day),
    "LOCAL_TIME": _then(_int64, timefmt.nano_of_day),
    "LOCAL_DATE_TIME": _local_date_time,
    "INSTANT": _instant,
}


# --------------------------------------------------------------------------- Avro definitions

_AVRO_PRIMITIVES = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)


def _decimal(data: bytes, scale: int) -> str:
    unscaled = int.from_bytes(data, "big", signed=True)
    digits = tuple(int(c) for c in str(abs(unscaled)))
    return format(Decimal((1 if unscaled < 0 else 0, digits, -scale)), "f")


def _logical(logical: object, base: str, schema: dict[str, Any]) -> Conv | None:
    """The converter of a logical type on `base`, or None when it does not apply (Avro spec)."""
    table: dict[tuple[str, str], Conv] = {
        ("date", "int"): timefmt.epoch_day,
        ("time-millis", "int"): timefmt.millis_of_day,
        ("time-micros", "long"): timefmt.micros_of_day_as_millis,
        ("timestamp-millis", "long"): timefmt.millis_utc,
        ("timestamp-micros", "long"): timefmt.micros_utc,
        ("timestamp-nanos", "long"): timefmt.nanos_utc,
        ("local-timestamp-millis", "long"): timefmt.millis_local,
        ("local-timestamp-micros", "long"): timefmt.micros_local,
        ("local-timestamp-nanos", "long"): timefmt.nanos_local,
    }
    if not isinstance(logical, str):
        return None
    if logical == "decimal" and base in ("bytes", "fixed"):
        scale = schema.get("scale", 0)
        if isinstance(scale, int) and scale >= 0:
            return lambda data: _decimal(data, scale)
        return None
    if logical == "uuid" and base == "fixed" and schema.get("size") == 16:
        return lambda data: str(UUID(bytes=data))
    return table.get((logical, base))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_KIND_TESTS: dict[str, Callable[[Any], bool]] = {
    "boolean": lambda v: isinstance(v, bool),
    "int": _is_int,
    "long": _is_int,
    "float": lambda v: isinstance(v, float),
    "double": lambda v: isinstance(v, float),
    "string": lambda v: isinstance(v, str),
    "enum": lambda v: isinstance(v, str),
    "bytes": lambda v: isinstance(v, bytes),
    "fixed": lambda v: isinstance(v, bytes),
    "array": lambda v: isinstance(v, list),
    "map": lambda v: isinstance(v, dict),
    "record": lambda v: isinstance(v, dict),
}


class _Builder:
    """Turns an Avro schema into one converter function (None = the value needs no change).

    `json_mode`: the value came from JSON text (Pulsar's JSON schema) instead of Avro binary,
    so bytes are already base64 strings, floats are already decimal text, and logical types
    apply only where the JSON holds an integer.
    """

    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.convs: dict[str, Conv | None] = {}
        self.kinds: dict[str, tuple[str, frozenset[str]]] = {}  # name → (kind, record fields)
        self.pending: set[str] = set()

    # ---- helpers
    def _leaf(self, conv: Conv) -> Conv:
        if not self.json_mode:
            return conv
        return lambda v: conv(v) if _is_int(v) else v

    @staticmethod
    def _fullname(schema: dict[str, Any], namespace: str) -> tuple[str, str]:
        name = str(schema.get("name", ""))
        if "." in name:
            return name, name.rsplit(".", 1)[0]
        ns = schema.get("namespace", namespace) or ""
        return (f"{ns}.{name}" if ns else name), ns

    def _resolve(self, name: str, namespace: str) -> str | None:
        for candidate in (f"{namespace}.{name}" if namespace else name, name):
            if candidate in self.convs or candidate in self.pending:
                return candidate
        return None

    def kind(self, schema: Any, namespace: str) -> tuple[str, str]:
        """(kind, record fullname or '') of a union branch."""
        if isinstance(schema, str):
            if schema in _AVRO_PRIMITIVES:
                return schema, ""
            full = self._resolve(schema, namespace) or schema
            return self.kinds.get(full, ("record", ""))[0], full
        if isinstance(schema, dict):
            t = schema.get("type")
            if t in ("record", "error", "enum", "fixed"):
                full, _ = self._fullname(schema, namespace)
                return ("record" if t == "error" else str(t)), full
            if isinstance(t, str) and t in _AVRO_PRIMITIVES | {"array", "map"}:
                return t, ""
            return self.kind(t, namespace)
        return "union", ""

    def _late(self, full: str) -> Conv:
        convs = self.convs

        def late(v: Any) -> Any:
            conv = convs.get(full)
            return conv(v) if conv is not None else v

        return late

    # ---- the walk
    def build(self, schema: Any, namespace: str = "") -> Conv | None:
        if isinstance(schema, str):
            if schema in _AVRO_PRIMITIVES:
                return self._primitive(schema)
            full = self._resolve(schema, namespace)
            if full is None:
                raise ValueError(f"unknown Avro type {schema!r}")
            if full in self.pending:  # recursive reference: look the converter up when called
                return self._late(full)
            return self.convs[full]
        if isinstance(schema, list):
            return self._union(schema, namespace)
        if not isinstance(schema, dict):
            raise ValueError(f"not an Avro schema: {schema!r}")
        t = schema.get("type")
        if t in ("record", "error"):
            return self._record(schema, namespace)
        if t == "enum":
            full, _ = self._fullname(schema, namespace)
            self.convs[full] = None
            self.kinds[full] = ("enum", frozenset())
            return None
        if t == "fixed":
            full, _ = self._fullname(schema, namespace)
            conv = self._bytes_like("fixed", schema)
            self.convs[full] = conv
            self.kinds[full] = ("fixed", frozenset())
            return conv
        if t == "array":
            item = self.build(schema.get("items"), namespace)
            if item is None:
                return None
            return lambda v: [item(x) for x in v] if isinstance(v, list) else v
        if t == "map":
            val = self.build(schema.get("values"), namespace)
            if val is None:
                return None
            return lambda v: {k: val(x) for k, x in v.items()} if isinstance(v, dict) else v
        if t in ("bytes",):
            return self._bytes_like("bytes", schema)
        if isinstance(t, str) and t in _AVRO_PRIMITIVES:
            logical = _logical(schema.get("logicalType"), t, schema)
            return self._leaf(logical) if logical else self._primitive(t)
        return self.build(t, namespace)

    def _primitive(self, t: str) -> Conv | None:
        if self.json_mode:
            return None
        if t == "bytes":
            return _b64
        if t == "float":
            return _float32
        return None

    def _bytes_like(self, base: str, schema: dict[str, Any]) -> Conv | None:
        logical = _logical(schema.get("logicalType"), base, schema)
        if self.json_mode:
            return None  # Jackson already wrote base64 / numbers; leave them
        return logical or _b64

    def _record(self, schema: dict[str, Any], namespace: str) -> Conv | None:
        full, ns = self._fullname(schema, namespace)
        fields_ = schema.get("fields")
        if not isinstance(fields_, list):
            raise ValueError(f"record {full!r} has no field list")
        names = frozenset(str(f.get("name")) for f in fields_ if isinstance(f, dict))
        self.kinds[full] = ("record", names)
        self.pending.add(full)
        convs: list[tuple[str, Conv]] = []
        for f in fields_:
            if not isinstance(f, dict) or "name" not in f:
                raise ValueError(f"record {full!r} has a field without a name")
            conv = self.build(f.get("type"), ns)
            if conv is not None:
                convs.append((str(f["name"]), conv))
        self.pending.discard(full)
        result = self._record_conv(tuple(convs)) if convs else None
        self.convs[full] = result
        return result

    def _record_conv(self, convs: tuple[tuple[str, Conv], ...]) -> Conv:
        if self.json_mode:

            def json_record(v: Any) -> Any:
                if isinstance(v, dict):
                    for name, conv in convs:
                        x = v.get(name)
                        if x is not None:
                            v[name] = conv(x)
                return v

            return json_record

        def avro_record(v: dict[str, Any]) -> dict[str, Any]:
            for name, conv in convs:
                v[name] = conv(v[name])
            return v

        return avro_record

    def _union(self, branches: list[Any], namespace: str) -> Conv | None:
        built: list[tuple[str, str, Conv | None]] = []
        for branch in branches:
            conv = self.build(branch, namespace)
            kind, full = self.kind(branch, namespace)
            built.append((kind, full, conv))
        by_name = {full: conv for kind, full, conv in built if kind == "record"}
        if all(conv is None for _, _, conv in built) and (self.json_mode or len(by_name) < 2):
            return None  # (fastavro tags unions of several records: those always need unwrapping)
        records = [
            (self.kinds.get(full, ("", frozenset()))[1], conv) for full, conv in by_name.items()
        ]
        tests = [(_KIND_TESTS[kind], conv) for kind, _, conv in built if kind in _KIND_TESTS]

        def union(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, tuple):  # fastavro's (record name, record) for unions of records
                conv = by_name.get(v[0])
                return conv(v[1]) if conv else v[1]
            if isinstance(v, dict) and len(records) > 1:
                keys = v.keys()
                for names, conv in records:
                    if keys == names:
                        return conv(v) if conv else v
            for test, conv in tests:
                if test(v):
                    return conv(v) if conv else v
            return v

        return union


def _strip_logical(schema: Any) -> Any:
    """A copy without `logicalType`, so fastavro hands us raw ints/bytes we format ourselves."""
    if isinstance(schema, list):
        return [_strip_logical(s) for s in schema]
    if isinstance(schema, dict):
        return {k: _strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    return schema


# --------------------------------------------------------------------------- codecs


class _Codec(NamedTuple):
    """How one schema's value bytes become JSON: a Python object, and (fast path) JSON text."""

    obj: Callable[[bytes], Any]
    text: Callable[[bytes], str]


def _codec_from(obj: Callable[[bytes], Any]) -> _Codec:
    return _Codec(obj, lambda data: _dumps(obj(data)))


def _failing(reason: str) -> _Codec:
    def fail(data: bytes) -> Any:
        raise ValueError(reason)

    return _Codec(fail, fail)


def _avro_codec(definition: str) -> _Codec:
    try:
        schema = _loads(definition)
        conv = _Builder(json_mode=False).build(schema)
        parsed = fastavro.parse_schema(_strip_logical(schema))
    except Exception as exc:  # noqa: BLE001 - any defect of the definition is reported per message
        return _failing(f"unusable Avro schema definition ({exc})")
    reader = fastavro.schemaless_reader

    def obj(data: bytes) -> Any:
        buf = BytesIO(data)
        value = reader(buf, parsed, None, True, True)
        if buf.tell() != len(data):
            raise ValueError(f"{len(data) - buf.tell()} bytes left after the Avro value")
        return conv(value) if conv is not None else value

    return _codec_from(obj)


def _json_codec(definition: str) -> _Codec:
    conv: Conv | None = None
    if definition.strip():
        try:
            conv = _Builder(json_mode=True).build(_loads(definition))
        except Exception:  # noqa: BLE001 - a non-Avro definition: pass the JSON through unchanged
            conv = None

    def obj(data: bytes) -> Any:
        value = _loads(data)
        return conv(value) if conv is not None else value

    if conv is not None:
        return _codec_from(obj)

    def text(data: bytes) -> str:  # valid, untouched JSON: embed the producer's text as is
        _loads(data)
        return data.decode("utf-8-sig").strip()

    return _Codec(obj, text)


def _int_text(name: str, fmt: str) -> Callable[[bytes], str]:
    """An integer's JSON is its decimal digits: no trip through the JSON encoder."""
    unpack = struct.Struct(fmt).unpack
    size = struct.calcsize(fmt)

    def text(data: bytes) -> str:
        _fixed_size(name, size, data)
        return str(unpack(data)[0])

    return text


def _boolean_text(data: bytes) -> str:
    return "true" if _boolean(data) else "false"


_PRIMITIVE_TEXTS: dict[str, Callable[[bytes], str]] = {
    "STRING": lambda data: _str(data.decode("utf-8", "replace")),
    "BOOLEAN": _boolean_text,
    "INT8": _int_text("INT8", ">b"),
    "INT16": _int_text("INT16", ">h"),
    "INT32": _int_text("INT32", ">i"),
    "INT64": _int_text("INT64", ">q"),
}
_BASE64 = _Codec(_b64, lambda data: f'"{_b64(data)}"')  # base64 needs no JSON escaping
_PRIMITIVE_CODECS = {
    name: _Codec(dec, _PRIMITIVE_TEXTS[name]) if name in _PRIMITIVE_TEXTS else _codec_from(dec)
    for name, dec in _PRIMITIVE_DECODERS.items()
}

_BYTES_SCHEMA_INFO = {
    "name": "Bytes",
    "schema": "",
    "type": "BYTES",
    "timestamp": 0,
    "properties": {},
    "schemaDefinition": "",
}


# --------------------------------------------------------------------------- metadata


_TOPIC_PARTITIONS: dict[str, int | None] = {}  # topic → partition from its name (or None)


def _name_partition(topic: str) -> int | None:
    """The partition a topic's name carries (`…-partition-N`); cached, messages repeat topics."""
    if topic in _TOPIC_PARTITIONS:
        return _TOPIC_PARTITIONS[topic]
    if len(_TOPIC_PARTITIONS) >= 4096:
        _TOPIC_PARTITIONS.clear()
    m = _PARTITION_RE.search(topic)
    index = _TOPIC_PARTITIONS[topic] = int(m.group(1)) if m else None
    return index


def _partition_index(r: Record) -> int | None:
    return r.partition if r.partition >= 0 else _name_partition(r.topic)


def _properties(r: Record) -> dict[str, str]:
    p = r.properties
    return p if type(p) is dict else dict(p)


class _Fragments:
    """Bounded caches of V2 metadata fragments ('"name":<json>,'): messages repeat them."""

    def __init__(self) -> None:
        self.topics: dict[str, tuple[str, str]] = {}  # topic → (topic, name-derived partition)
        self.properties: dict[tuple[tuple[str, str], ...], str] = {}
        self.event_seconds: dict[int, str] = {}  # epoch second → '"eventTime":"yyyy-…:ss.'
        self.publish_seconds: dict[int, str] = {}

    def topic(self, topic: str) -> tuple[str, str]:
        if len(self.topics) >= _FRAGMENT_LIMIT:
            self.topics.clear()
        index = _name_partition(topic)
        part = "" if index is None else f'"partitionIndex":{index},'
        frags = self.topics[topic] = (f'"topic":{_str(topic)},', part)
        return frags

    def props(self, key: tuple[tuple[str, str], ...]) -> str:
        if len(self.properties) >= _FRAGMENT_LIMIT:
            self.properties.clear()
        text = self.properties[key] = f'"properties":{_dumps(dict(key))},'
        return text

    @staticmethod
    def time(cache: dict[int, str], name: str, ms: int) -> str:
        """'"name":"yyyy-MM-ddTHH:mm:ss.SSSZ",', or the raw millis outside the years 1..9999."""
        seconds, fraction = divmod(ms, 1000)
        prefix = cache.get(seconds)
        if prefix is None:
            try:
                prefix = f'"{name}":"{timefmt.second_prefix(seconds)}'
            except ValueError:
                return f'"{name}":{ms},'
            if len(cache) >= _FRAGMENT_LIMIT:
                cache.clear()
            cache[seconds] = prefix
        return f'{prefix}{_MILLIS[fraction]}Z",'


_FRAGMENT_LIMIT = 4096
_MILLIS = timefmt.MILLIS_DIGITS
_NO_PROPERTIES = '"properties":{},'


def _v2_renderer(
    fields: frozenset[str], value_text: Callable[[Record], str]
) -> Callable[[Record], bytes]:
    """The V2 item of one metadata selection, as one function: '{' + fragments + value + '}'.

    Every field is '"name":<json>,' or '' (absent or not selected), in the canonical order;
    repeated parts (topic, properties, the second of a time) come from caches, the rest is
    formatted in place. This is the serializer's hot path: no dict is built per message.
    """
    want_topic = "topic" in fields
    want_key = "key" in fields
    want_partition = "partitionIndex" in fields
    want_sequence = "sequence" in fields
    want_properties = "properties" in fields
    want_event = "eventTime" in fields
    want_id = "messageId" in fields
    want_publish = "publishTime" in fields
    frags = _Fragments()
    topics, props_cache = frags.topics, frags.properties
    event_seconds, publish_seconds = frags.event_seconds, frags.publish_seconds
    time = frags.time
    millis = _MILLIS
    primitive_texts = _PRIMITIVE_TEXTS

    # The previous message's properties, their key order and fragment: producers repeat them,
    # and comparing with the last is cheaper than hashing a tuple of the items (bench: ~0.3 µs a
    # record). One tuple, replaced whole, so that a concurrent caller never pairs one message's
    # properties with another's text.
    last: tuple[dict[str, str], list[str], str] = ({}, [], _NO_PROPERTIES)

    def render(r: Record) -> bytes:
        nonlocal last
        schema = r.schema
        if schema is not None and (text := primitive_texts.get(schema.type)) is not None:
            try:
                value = text(r.value)
            except Exception as exc:  # every decoding failure means the same thing
                raise _unconvertible(r, exc) from exc
        else:
            value = value_text(r)
        topic = part = key = sequence = props = event = mid = publish = ""
        if want_topic or want_partition:
            t = r.topic
            topic, part = topics.get(t) or frags.topic(t)
            if not want_topic:
                topic = ""
            if not want_partition:
                part = ""
            elif r.partition >= 0:
                part = f'"partitionIndex":{r.partition},'
        if want_key and (k := r.key) is not None:
            key = f'"key":{_str(k)},'
        if want_sequence:
            sequence = f'"sequence":{(r.ledger_id << 28) | r.entry_id},'
        if want_properties:
            p = r.properties
            last_props, last_keys, props = last
            if not p:
                props = _NO_PROPERTIES
            elif p != last_props or (len(p) > 1 and list(p) != last_keys):  # not the same, in order
                items = tuple(p.items())
                props = props_cache.get(items) or frags.props(items)
                last = (dict(items), list(p), props)
        if want_event and (ms := r.event_time_ms):
            prefix = event_seconds.get(ms // 1000)
            if prefix is None:
                event = time(event_seconds, "eventTime", ms)
            else:
                event = f'{prefix}{millis[ms % 1000]}Z",'
        if want_id:
            mid = f'"messageId":"{r.ledger_id}:{r.entry_id}:{r.partition}:{r.batch_index}",'
        if want_publish and (ms := r.publish_time_ms):
            publish = time(publish_seconds, "publishTime", ms)
        return (
            f'{{{topic}{key}{part}{sequence}{props}{event}{mid}{publish}"value":{value}}}'
        ).encode()

    return render


def _unconvertible(r: Record, exc: Exception) -> SerializationError:
    kind = r.schema.type if r.schema else "NONE"
    return SerializationError(
        f"message {r.message_id} on {r.topic} cannot be converted with its "
        f"{kind} schema: {type(exc).__name__}: {exc}",
        retriable=False,
    )


def _optional(value: Any) -> dict[str, Any]:
    """Java's Optional as Jackson rendered it, plus the value it used to drop."""
    if value is None:
        return {"empty": True, "present": False}
    return {"empty": False, "present": True, "value": value}


# --------------------------------------------------------------------------- the serializer


class Serializer:
    """Converts records for one sink configuration; caches one codec per writer schema."""

    def __init__(self, sink: SinkConfig) -> None:
        self.sink = sink
        self._codecs: dict[tuple[str, str], _Codec] = {}
        self._render = _v2_renderer(frozenset(sink.metadata_fields), self._value_text)

    # ---- public API
    def encode(self, record: Record) -> bytes:
        """The configured format: a V2 batch item, or a whole V1 payload."""
        if self.sink.payload_format == "V2":
            return self.v2_item(record)
        return self.v1_payload(record)

    def v2_item(self, record: Record) -> bytes:
        """One JSON object: the selected metadata, then "value"."""
        return self._render(record)

    def v1_payload(self, record: Record) -> bytes:
        """The reference's V1 payload (see the module docstring for its three steps)."""
        codec = self._codec(record.schema)
        try:
            value = codec.obj(record.value)
        except Exception:  # noqa: BLE001 - step 1 failed: the reference's fallbacks
            return self._v1_fallback(record)
        return _dumps(self._v1_record(record, value)).encode()

    # ---- internals
    def _codec(self, schema: SchemaInfo | None) -> _Codec:
        if schema is None:
            return _BASE64
        kind = schema.type.upper()
        codec = _PRIMITIVE_CODECS.get(kind)
        if codec is not None:
            return codec
        if kind not in ("AVRO", "JSON"):
            return _BASE64
        key = (kind, schema.definition)
        codec = self._codecs.get(key)
        if codec is None:
            if len(self._codecs) >= _CACHE_LIMIT:
                self._codecs.clear()
            codec = (
                _avro_codec(schema.definition) if kind == "AVRO" else _json_codec(schema.definition)
            )
            self._codecs[key] = codec
        return codec

    def _value_text(self, record: Record) -> str:
        try:
            return self._codec(record.schema).text(record.value)
        except Exception as exc:  # every decoding failure means the same thing
            raise _unconvertible(record, exc) from exc

    def _v1_record(self, r: Record, value: Any) -> dict[str, Any]:
        partition = _partition_index(r)
        props = _properties(r)
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
                "schema": _b64(r.schema.definition.encode()),
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

    def _v1_fallback(self, r: Record) -> bytes:
        try:  # step 2: the value itself, when it is JSON
            return _dumps(_loads(r.value)).encode()
        except ValueError:
            pass
        partition = _partition_index(r)
        out: dict[str, Any] = {}  # step 3: metadata + the value as a string
        if r.key is not None:
            out["key"] = r.key
        out["topicName"] = r.topic
        if partition is not None:
            out["partitionId"] = r.topic
        out["recordSequence"] = r.sequence
        if r.event_time_ms:
            out["eventTime"] = r.event_time_ms
        out["properties"] = _properties(r)
        try:
            out["value"] = r.value.decode("utf-8")
        except UnicodeDecodeError:
            out["value"] = _b64(r.value)
            out["valueEncoding"] = "base64"
        return _dumps(out).encode()
