"""Codecs: how one schema's value bytes become JSON, as an object (V1) and as text (V2).

The only serializer module that touches fastavro (Avro binary decoding).
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from typing import Any, NamedTuple

import fastavro

from .avro_values import Conv, ConverterBuilder, strip_logical
from .json_text import b64, dumps, loads
from .primitive_values import PRIMITIVE_DECODERS, PRIMITIVE_TEXTS


class Codec(NamedTuple):
    """How one schema's value bytes become JSON: a Python object, and (fast path) JSON text."""

    obj: Callable[[bytes], Any]
    text: Callable[[bytes], str]


def _codec_from(obj: Callable[[bytes], Any]) -> Codec:
    return Codec(obj, lambda data: dumps(obj(data)))


def _failing(reason: str) -> Codec:
    def fail(data: bytes) -> Any:
        raise ValueError(reason)

    return Codec(fail, fail)


def avro_codec(definition: str) -> Codec:
    try:
        schema = loads(definition)
        conv = ConverterBuilder(json_mode=False).build(schema)
        parsed = fastavro.parse_schema(strip_logical(schema))
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


def json_codec(definition: str) -> Codec:
    conv: Conv | None = None
    if definition.strip():
        try:
            conv = ConverterBuilder(json_mode=True).build(loads(definition))
        except Exception:  # noqa: BLE001 - a non-Avro definition: pass the JSON through unchanged
            conv = None

    def obj(data: bytes) -> Any:
        value = loads(data)
        return conv(value) if conv is not None else value

    if conv is not None:
        return _codec_from(obj)

    def text(data: bytes) -> str:  # valid, untouched JSON: embed the producer's text as is
        loads(data)
        return data.decode("utf-8-sig").strip()

    return Codec(obj, text)


BASE64 = Codec(b64, lambda data: f'"{b64(data)}"')  # base64 needs no JSON escaping
PRIMITIVE_CODECS = {
    name: Codec(dec, PRIMITIVE_TEXTS[name]) if name in PRIMITIVE_TEXTS else _codec_from(dec)
    for name, dec in PRIMITIVE_DECODERS.items()
}
