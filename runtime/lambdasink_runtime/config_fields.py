"""One declaration per configuration property, so each default and bound exists once.

A `Prop` drives the runtime's parsing (`read`), the CLI help (`help_items`) and is what the CRD's
schema is checked against (tests/unit/test_config_crd.py): a default can no longer differ
between the three.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .config_values import INT32_MAX, Reader, as_bool, as_choice, as_float, as_int, as_str
from .errors import ConfigError

JsonType = Literal["string", "boolean", "integer", "number"]

_UNSET: Any = object()
_NBSP = "\u00a0"  # textwrap breaks only at ASCII whitespace


@dataclass(frozen=True, slots=True)
class Prop:
    """A property: its camelCase key, Python field, JSON type, default, bounds and meaning.

    `required` (non-empty) is what an empty value is told is allowed; `env` names a variable
    read when the value is left empty (secrets); `parse` replaces the type's coercion for
    values the reference gives in a special form; `default_doc` describes a default computed
    from other settings (then `default` is only the fallback's placeholder); `help_note` is
    added to the default in the CLI help.
    """

    key: str
    attr: str
    type: JsonType
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    sensitive: bool = False
    required: str = ""
    env: str = ""
    parse: Callable[[str, object], Any] | None = None
    bound_note: str = ""
    empty_is_default: bool = False
    default_doc: str = ""
    help_note: str = ""
    extension: bool = False

    def convert(self, name: str, value: object) -> Any:
        """The given (non-null) value coerced to the property's type, or a ConfigError."""
        if self.parse is not None:
            return self.parse(name, value)
        if self.type == "boolean":
            return as_bool(name, value)
        if self.type == "integer":
            lo = int(self.minimum) if self.minimum is not None else -INT32_MAX - 1
            hi = int(self.maximum) if self.maximum is not None else INT32_MAX
            return as_int(name, value, lo, hi, note=self.bound_note)
        if self.type == "number":
            return as_float(
                name,
                value,
                self.minimum if self.minimum is not None else float("-inf"),
                self.maximum,
                exclusive_lo=self.exclusive_minimum,
            )
        if self.choices:
            return as_choice(name, value, self.choices)
        return as_str(name, value, sensitive=self.sensitive)

    def read(
        self,
        r: Reader,
        env: Mapping[str, str] | None = None,
        *,
        key: str = "",
        default: Any = _UNSET,
    ) -> Any:
        """Read this property from `r` (under `key` when an alias was given); strings are
        stripped, an empty string falls back to `env`, then to the default when so declared."""
        key = key or self.key
        raw = r.doc.get(key)
        fallback = self.default if default is _UNSET else default
        value = fallback if raw is None else self.convert(r.name(key), raw)
        if self.type == "string" and isinstance(value, str):
            if self.env and not value.strip():
                value = (env or {}).get(self.env, "")
            value = value.strip()
            if not value and self.empty_is_default:
                value = fallback
            if not value and self.required:
                raise ConfigError(r.name(key), raw, self.required, sensitive=self.sensitive)
        return value

    @property
    def help_default(self) -> str:
        """The default as the CLI help shows it, with `help_note`; '' when there is nothing."""
        shown = self._shown_default()
        return "; ".join(part for part in (shown, self.help_note) if part)

    def _shown_default(self) -> str:
        if self.default_doc:
            return self.default_doc
        if self.required and self.default in ("", None):
            return "required"
        if self.choices:
            return " | ".join(self.choices) + f"; default {self.default}"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, tuple):
            return ",".join(self.default)
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return "" if self.default in ("", None) else str(self.default)

    @property
    def crd_default(self) -> Any:
        """The default as a Kubernetes schema writes it (lists as the reference's CSV string)."""
        if isinstance(self.default, tuple):
            return ",".join(self.default)
        return self.default


def by_key(props: Iterable[Prop]) -> dict[str, Prop]:
    return {p.key: p for p in props}


def help_items(props: Iterable[Prop]) -> list[str]:
    """`key (default)` for each property, as the CLI epilog lists them."""
    return [f"{p.key} ({p.help_default})" if p.help_default else p.key for p in props]


def help_block(items: Iterable[str], indent: int, width: int = 96) -> str:
    """The items comma-separated and wrapped at `indent` columns, never inside an item."""
    pad = " " * indent
    glued = (item.replace(" ", _NBSP) for item in items)
    return textwrap.fill(
        ", ".join(glued),
        width=width,
        initial_indent=pad,
        subsequent_indent=pad,
        break_on_hyphens=False,
        break_long_words=False,
    ).replace(_NBSP, " ")


def help_columns(props: Iterable[Prop], indent: int = 4, column: int = 32, width: int = 99) -> str:
    """One `key  description (default ...)` line per property, descriptions in a column."""
    lines = []
    for p in props:
        if p.choices:
            text = f"{p.description}: " + " | ".join(
                f"{c}{_NBSP}(default)" if c == p.default else c for c in p.choices
            )
        else:
            shown = p.help_default
            glued = f"(default {shown})".replace(" ", _NBSP)
            text = f"{p.description} {glued}" if shown else p.description
        head = " " * indent + p.key
        head = head.ljust(column) if len(head) < column else head + "  "
        lines.append(
            textwrap.fill(
                text,
                width=width,
                initial_indent=head,
                subsequent_indent=" " * column,
                break_on_hyphens=False,
                break_long_words=False,
            ).replace(_NBSP, " ")
        )
    return "\n".join(lines)
