"""Pulsar's primitive schemas (Java wire encodings) → JSON values, and JSON text for some.

The rows of the serializer's conversion table other than AVRO/JSON/bytes; see `serializer`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

from . import timefmt
from .json_text import encode_str, nonfinite

_F32 = struct.Struct(">f")


def float32(x: float) -> float | str:
    """The shortest decimal that reads back as the same float32 (1.1f → 1.1, as Java prints)."""
    if not math.isfinite(x):
        return nonfinite(x)
    for digits in range(6, 10):
        short = float(f"{x:.{digits}g}")
        if _F32.unpack(_F32.pack(short))[0] == x:
            return short
    return x


def fixed_size(name: str, size: int, data: bytes) -> None:
    if len(data) != size:
        raise ValueError(f"{name} needs {size} bytes, got {len(data)}")


def _number(name: str, fmt: str) -> Callable[[bytes], Any]:
    unpack = struct.Struct(fmt).unpack
    size = struct.calcsize(fmt)

    def decode(data: bytes) -> Any:
        fixed_size(name, size, data)
        return unpack(data)[0]

    return decode


def _then(first: Callable[[bytes], Any], then: Callable[[Any], Any]) -> Callable[[bytes], Any]:
    return lambda data: then(first(data))


def _boolean(data: bytes) -> bool:
    fixed_size("BOOLEAN", 1, data)
    return data[0] != 0


def _double(data: bytes) -> float | str:
    fixed_size("DOUBLE", 8, data)
    x: float = struct.unpack(">d", data)[0]
    return x if math.isfinite(x) else nonfinite(x)


_LDT = struct.Struct(">qq")
_INSTANT = struct.Struct(">qi")


def _local_date_time(data: bytes) -> str:
    fixed_size("LOCAL_DATE_TIME", 16, data)
    return timefmt.local_date_time(*_LDT.unpack(data))


def _instant(data: bytes) -> str:
    fixed_size("INSTANT", 12, data)
    return timefmt.instant(*_INSTANT.unpack(data))


_int64 = _number("INT64", ">q")

PRIMITIVE_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "BOOLEAN": _boolean,
    "INT8": _number("INT8", ">b"),
    "INT16": _number("INT16", ">h"),
    "INT32": _number("INT32", ">i"),
    "INT64": _int64,
    "FLOAT": _then(_number("FLOAT", ">f"), float32),
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


def _int_text(name: str, fmt: str) -> Callable[[bytes], str]:
    """An integer's JSON is its decimal digits: no trip through the JSON encoder."""
    unpack = struct.Struct(fmt).unpack
    size = struct.calcsize(fmt)

    def text(data: bytes) -> str:
        fixed_size(name, size, data)
        return str(unpack(data)[0])

    return text


def _boolean_text(data: bytes) -> str:
    return "true" if _boolean(data) else "false"


PRIMITIVE_TEXTS: dict[str, Callable[[bytes], str]] = {
    "STRING": lambda data: encode_str(data.decode("utf-8", "replace")),
    "BOOLEAN": _boolean_text,
    "INT8": _int_text("INT8", ">b"),
    "INT16": _int_text("INT16", ">h"),
    "INT32": _int_text("INT32", ">i"),
    "INT64": _int_text("INT64", ">q"),
}
