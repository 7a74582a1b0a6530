"""Avro schema → one converter function that makes a decoded value JSON-ready (logical types,
bytes, float32, unions), for Avro binary and for Pulsar's JSON schema (an Avro definition).

The rules are the Avro part of the serializer's docstring; fastavro itself is not needed here.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID

from . import timefmt
from .json_text import b64
from .primitive_values import float32

Conv = Callable[[Any], Any]

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


class ConverterBuilder:
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
            return b64
        if t == "float":
            return float32
        return None

    def _bytes_like(self, base: str, schema: dict[str, Any]) -> Conv | None:
        logical = _logical(schema.get("logicalType"), base, schema)
        if self.json_mode:
            return None  # Jackson already wrote base64 / numbers; leave them
        return logical or b64

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


def strip_logical(schema: Any) -> Any:
    """A copy without `logicalType`, so fastavro hands us raw ints/bytes we format ourselves."""
    if isinstance(schema, list):
        return [strip_logical(s) for s in schema]
    if isinstance(schema, dict):
        return {k: strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    return schema
