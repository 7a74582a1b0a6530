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

Where each part lives (one reason to change each): `json_text` (strict parsing, compact
writing), `primitive_values` (the primitive rows), `avro_values` (Avro/JSON-schema converters),
`value_codecs` (schema → codec, fastavro), `record_fields` (metadata both formats share),
`payload_v1` and `item_v2` (the two layouts). This module picks the codec per writer schema.
"""

from __future__ import annotations

from .avro_values import Conv
from .config import SinkConfig
from .item_v2 import v2_renderer
from .json_text import dumps
from .payload_v1 import v1_fallback, v1_record
from .record import Record, SchemaInfo
from .record_fields import unconvertible
from .value_codecs import BASE64, PRIMITIVE_CODECS, Codec, avro_codec, json_codec

__all__ = ["Conv", "Serializer"]

_CACHE_LIMIT = 512


class Serializer:
    """Converts records for one sink configuration; caches one codec per writer schema."""

    def __init__(self, sink: SinkConfig) -> None:
        self.sink = sink
        self._codecs: dict[tuple[str, str], Codec] = {}
        self._render = v2_renderer(frozenset(sink.metadata_fields), self._value_text)

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
            return v1_fallback(record)
        return dumps(v1_record(record, value)).encode()

    # ---- internals
    def _codec(self, schema: SchemaInfo | None) -> Codec:
        if schema is None:
            return BASE64
        kind = schema.type.upper()
        codec = PRIMITIVE_CODECS.get(kind)
        if codec is not None:
            return codec
        if kind not in ("AVRO", "JSON"):
            return BASE64
        key = (kind, schema.definition)
        codec = self._codecs.get(key)
        if codec is None:
            if len(self._codecs) >= _CACHE_LIMIT:
                self._codecs.clear()
            codec = (
                avro_codec(schema.definition) if kind == "AVRO" else json_codec(schema.definition)
            )
            self._codecs[key] = codec
        return codec

    def _value_text(self, record: Record) -> str:
        try:
            return self._codec(record.schema).text(record.value)
        except Exception as exc:  # every decoding failure means the same thing
            raise unconvertible(record, exc) from exc
