"""Scalar coercions shared by every configuration section, Jackson-style like Pulsar's loader.

Every failure raises `ConfigError(field, value, allowed)` naming the dotted field, so a user sees
which key was wrong, what was given and what would have been accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from .errors import ConfigError

INT32_MAX = 2**31 - 1

_T = TypeVar("_T")


def is_absent(value: object) -> bool:
    """`null` means "use the default", as in the reference's loader."""
    return value is None


def as_str(name: str, value: object, *, sensitive: bool = False) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(name, value, "a string", sensitive=sensitive)


def as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(name, value, "a boolean (true/false, or the strings 'true'/'false')")


def as_int(name: str, value: object, lo: int, hi: int = INT32_MAX, *, note: str = "") -> int:
    """Integers, numeric strings and integral floats; `note` says why the bound is what it is."""
    allowed = f"an integer from {lo} to {hi}" + (f" ({note})" if note else "")
    out: int
    if isinstance(value, bool):
        raise ConfigError(name, value, allowed)
    if isinstance(value, int):
        out = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value)
    ):
        out = int(value)
    else:
        raise ConfigError(name, value, allowed)
    if not lo <= out <= hi:
        raise ConfigError(name, value, allowed)
    return out


def as_float(
    name: str, value: object, lo: float, hi: float | None = None, *, exclusive_lo: bool = False
) -> float:
    """A finite number (or numeric string) within the bounds; exclusive_lo makes `lo` itself bad."""
    if hi is None and not exclusive_lo:
        allowed = f"a number >= {lo:g}"
    else:
        allowed = f"a number in {'(' if exclusive_lo else '['}{lo:g}, " + (
            f"{hi:g}]" if hi is not None else "inf)"
        )
    if isinstance(value, bool):
        raise ConfigError(name, value, allowed)
    if isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value)
        except ValueError:
            raise ConfigError(name, value, allowed) from None
    else:
        raise ConfigError(name, value, allowed)
    too_low = not out > lo if exclusive_lo else not out >= lo
    if too_low or out == float("inf") or (hi is not None and out > hi):
        raise ConfigError(name, value, allowed)
    return out


def as_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Match case-insensitively and return the canonical spelling."""
    options = tuple(choices)
    if isinstance(value, str):
        for option in options:
            if value.strip().lower() == option.lower():
                return option
    raise ConfigError(name, value, "one of " + ", ".join(options))


def as_mapping(name: str, value: object) -> Mapping[str, Any]:
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return cast(Mapping[str, Any], value)
    raise ConfigError(name, type(value).__name__, "a mapping with string keys")


def check_keys(section: str, doc: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Unknown keys are errors: a typo must not silently fall back to a default."""
    allowed_list = sorted(allowed)
    unknown = sorted(k for k in doc if k not in allowed_list)
    if unknown:
        name = f"{section}.{unknown[0]}" if section else unknown[0]
        raise ConfigError(name, unknown[0], "unknown key; allowed keys: " + ", ".join(allowed_list))


def split_list(name: str, value: object, allowed: str) -> list[object]:
    """A list given as Pulsar IO writes it (comma-separated string) or as a YAML/JSON list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    if isinstance(value, list | tuple):
        return [part.strip() if isinstance(part, str) else part for part in value]
    raise ConfigError(name, value, allowed)


class Reader:
    """Reads one section: typed getters that name `section.key` in every error."""

    def __init__(self, section: str, doc: Mapping[str, Any]) -> None:
        self.section = section
        self.doc = doc

    def name(self, key: str) -> str:
        return f"{self.section}.{key}" if self.section else key

    def get(self, key: str, conv: Callable[[str, object], _T], default: _T) -> _T:
        value = self.doc.get(key)
        if is_absent(value):
            return default
        return conv(self.name(key), value)

    def text(self, key: str, default: str = "", *, sensitive: bool = False) -> str:
        value = self.doc.get(key)
        if is_absent(value):
            return default
        return as_str(self.name(key), value, sensitive=sensitive)

    def opt_str(self, key: str) -> str | None:
        value = self.doc.get(key)
        if is_absent(value):
            return None
        out = as_str(self.name(key), value).strip()
        return out or None

    def flag(self, key: str, default: bool) -> bool:
        return self.get(key, as_bool, default)

    def integer(self, key: str, default: int, lo: int, hi: int = INT32_MAX) -> int:
        return self.get(key, lambda n, v: as_int(n, v, lo, hi), default)
