"""The `runtime` section: the worker process's endpoint, logging and shutdown drain."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config_values import Reader, as_choice, as_float, as_int, as_mapping, check_keys

ENV_HTTP_PORT = "LAMBDASINK_HTTP_PORT"


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The worker process: health/metrics endpoint, logging, shutdown drain."""

    http_host: str = "0.0.0.0"  # noqa: S104 - the pod's probe/metrics endpoint
    http_port: int = 8081
    log_level: str = "INFO"
    drain_timeout_s: float = 30.0

    @classmethod
    def from_mapping(
        cls, doc: Mapping[str, Any], *, env: Mapping[str, str] | None = None
    ) -> ServerConfig:
        section = "runtime"
        doc = as_mapping(section, doc)
        check_keys(section, doc, ("httpHost", "httpPort", "logLevel", "drainTimeoutSeconds"))
        r = Reader(section, doc)
        env = env or {}
        port = r.integer("httpPort", 8081, 0, 65535)
        if env.get(ENV_HTTP_PORT, "").strip():
            port = as_int(ENV_HTTP_PORT, env[ENV_HTTP_PORT], 0, 65535)
        level = r.get("logLevel", lambda n, v: as_choice(n, v, _LOG_LEVELS), "INFO")
        return cls(
            http_host=r.text("httpHost", "0.0.0.0").strip() or "0.0.0.0",  # noqa: S104
            http_port=port,
            log_level=level,
            drain_timeout_s=r.get("drainTimeoutSeconds", lambda n, v: as_float(n, v, 0.0), 30.0),
        )
