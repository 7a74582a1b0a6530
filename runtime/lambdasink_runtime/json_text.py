"""JSON text for the serializer: strict parsing and compact, Jackson-like writing. Stdlib only.

Separate because every other serializer module writes or reads JSON through these few functions,
and their speed tricks (one prebuilt C encoder and decoder) belong in one place.
"""

from __future__ import annotations

import binascii
import json
import math
from typing import Any

encode_str = json.encoder.encode_basestring  # the C-accelerated encoder (ensure_ascii=False)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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


def loads(data: bytes | str) -> Any:
    """Strict JSON: NaN/Infinity literals are refused (they would break the whole batch).

    Input handling is json.loads's: bytes in UTF-8/16/32 (BOM-detected), a str with a BOM refused.
    """
    if isinstance(data, str):
        if data.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
        return _DECODER.decode(data)
    return _DECODER.decode(data.decode(json.detect_encoding(data), "surrogatepass"))


def nonfinite(x: float) -> str:
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def _sanitize(obj: Any) -> Any:
    """Slow path after `allow_nan=False` refused: non-finite floats → Jackson's strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else nonfinite(obj)
    if isinstance(obj, dict):
        return {k: _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_sanitize(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    try:
        if type(obj) is str:
            return encode_str(obj)
        if _C_ENCODE is not None:
            return "".join(_C_ENCODE(obj, 0))
        return _ENCODER.encode(obj)
    except ValueError:
        return _ENCODER.encode(_sanitize(obj))


def b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")
