"""The `runtime` section: the worker process's endpoint, logging and shutdown drain.

`RUNTIME_PROPS` declares each property once; the dataclass defaults, the parser and the CLI
help's runtime lines come from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config_fields import Prop, by_key
from .config_values import Reader, as_mapping, check_keys

ENV_HTTP_PORT = "LAMBDASINK_HTTP_PORT"

RUNTIME_PROPS: tuple[Prop, ...] = (
    Prop(
        "httpHost",
        "http_host",
        "string",
        "0.0.0.0",  # noqa: S104 - the pod's probe/metrics endpoint
        "Address the health/metrics endpoint listens on.",
        empty_is_default=True,
    ),
    Prop(
        "httpPort",
        "http_port",
        "integer",
        8081,
        "Port of the health/metrics endpoint (0: any free port).",
        0,
        65535,
        help_note=f"env {ENV_HTTP_PORT} overrides",
    ),
    Prop(
        "logLevel",
        "log_level",
        "string",
        "INFO",
        "Logging level.",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    ),
    Prop(
        "drainTimeoutSeconds",
        "drain_timeout_s",
        "number",
        30.0,
        "How long a shutdown waits for in-flight invocations and acknowledgements.",
        minimum=0.0,
    ),
)
RUNTIME = by_key(RUNTIME_PROPS)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The worker process: health/metrics endpoint, logging, shutdown drain."""

    http_host: str = RUNTIME["httpHost"].default
    http_port: int = RUNTIME["httpPort"].default
    log_level: str = RUNTIME["logLevel"].default
    drain_timeout_s: float = RUNTIME["drainTimeoutSeconds"].default

    @classmethod
    def from_mapping(
        cls, doc: Mapping[str, Any], *, env: Mapping[str, str] | None = None
    ) -> ServerConfig:
        section = "runtime"
        doc = as_mapping(section, doc)
        check_keys(section, doc, RUNTIME)
        r = Reader(section, doc)
        values = {p.attr: p.read(r) for p in RUNTIME_PROPS}
        env = env or {}
        if env.get(ENV_HTTP_PORT, "").strip():
            values["http_port"] = RUNTIME["httpPort"].convert(ENV_HTTP_PORT, env[ENV_HTTP_PORT])
        return cls(**values)
