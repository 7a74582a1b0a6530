"""The one typed configuration model of the runtime, validated once at start-up.

This module reads the whole document and re-exports each section's model: config_sink,
config_pulsar, config_server, config_failure and config_inflight (one section each),
config_fields (the property declarations) and config_values (the shared coercions).

The `sink` section is exactly the reference connector's `--sink-config` object (camelCase keys,
same types and defaults) plus a few extensions; the `pulsar` and `runtime` sections describe the
consumer side and the worker process. Every problem raises `ConfigError(field, value, allowed)`;
secret values never appear in errors, `repr` or `redacted_dict()`.

Choices where the reference is silent:
- Payload limits use binary units, as AWS's quota page counts them: synchronous invocations
  6 MB = 6,291,456 bytes, asynchronous 1 MB = 1,048,576 bytes.
- Scalars are coerced like Pulsar's Jackson-based loader: "true"/"false" strings for booleans,
  numeric strings and integral floats for integers. Unknown keys are errors (typos must not
  pass silently); `null` means "use the default".
- `awsEndpoint` without a scheme gets `https://`, as the Java SDK's endpoint configuration does.
- `metadataFields` may be a comma-separated string or a list; the prose name `metaDataField` is
  accepted as an alias (giving both is an error). An empty value selects no metadata field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, cast

import yaml

from .config_failure import DEFAULT_MAX_ATTEMPTS, CircuitBreakerConfig, FailurePolicyConfig
from .config_inflight import SECTION as ADAPTIVE_SECTION
from .config_inflight import AdaptiveInFlightConfig
from .config_pulsar import ENV_PULSAR_TOKEN, PulsarAuth, PulsarConfig
from .config_server import ENV_HTTP_PORT, ServerConfig
from .config_sink import (
    ASYNC_PAYLOAD_LIMIT_BYTES,
    AWS_ACCESS_KEY_FILE,
    AWS_SECRET_KEY_FILE,
    DEFAULT_METADATA_FIELDS,
    ENV_AWS_ACCESS_KEY,
    ENV_AWS_CREDENTIAL_PLUGIN_PARAM,
    ENV_AWS_SECRET_KEY,
    METADATA_FIELDS,
    PLUGIN_DEFAULT_CHAIN,
    PLUGIN_STS_ASSUME_ROLE,
    SYNC_PAYLOAD_LIMIT_BYTES,
    SinkConfig,
)
from .config_values import as_mapping, check_keys
from .errors import ConfigError

__all__ = [
    "ASYNC_PAYLOAD_LIMIT_BYTES",
    "AWS_ACCESS_KEY_FILE",
    "AWS_SECRET_KEY_FILE",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_METADATA_FIELDS",
    "ENV_AWS_ACCESS_KEY",
    "ENV_AWS_CREDENTIAL_PLUGIN_PARAM",
    "ENV_AWS_SECRET_KEY",
    "ENV_CONFIG",
    "ENV_HTTP_PORT",
    "ENV_PULSAR_TOKEN",
    "METADATA_FIELDS",
    "PLUGIN_DEFAULT_CHAIN",
    "PLUGIN_STS_ASSUME_ROLE",
    "SYNC_PAYLOAD_LIMIT_BYTES",
    "AdaptiveInFlightConfig",
    "CircuitBreakerConfig",
    "FailurePolicyConfig",
    "PulsarAuth",
    "PulsarConfig",
    "RuntimeConfig",
    "ServerConfig",
    "SinkConfig",
    "load_config",
]

ENV_CONFIG = "LAMBDASINK_CONFIG"
REDACTED = "<redacted>"


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """The whole worker configuration: the `pulsar`, `sink`, `runtime`, `failurePolicy` and
    `adaptiveInFlight` sections."""

    pulsar: PulsarConfig
    sink: SinkConfig
    runtime: ServerConfig = field(default_factory=ServerConfig)
    failure: FailurePolicyConfig = field(default_factory=FailurePolicyConfig)
    adaptive: AdaptiveInFlightConfig = field(default_factory=AdaptiveInFlightConfig)

    @classmethod
    def from_mapping(
        cls, doc: Mapping[str, Any], *, env: Mapping[str, str] | None = None
    ) -> RuntimeConfig:
        """Validate a whole document; `env` (default: none) supplies secrets and overrides."""
        doc = as_mapping("(document)", doc)
        check_keys("", doc, ("pulsar", "sink", "runtime", "failurePolicy", ADAPTIVE_SECTION))
        env = env if env is not None else {}
        if doc.get("sink") is None:
            raise ConfigError("sink", None, "the sink section (a --sink-config object)")
        sink_doc: object = doc["sink"]
        if isinstance(sink_doc, str):  # the --sink-config JSON string itself
            try:
                sink_doc = json.loads(sink_doc)
            except ValueError:
                raise ConfigError("sink", "<unparsable JSON>", "a JSON object") from None
        pulsar = PulsarConfig.from_mapping(doc.get("pulsar") or {}, env=env)
        sink = SinkConfig.from_mapping(as_mapping("sink", sink_doc), env=env)
        failure = FailurePolicyConfig.from_mapping(doc.get("failurePolicy") or {}, pulsar, sink)
        if failure.report_batch_item_failures and "messageId" not in sink.metadata_fields:
            # The function names failed items by messageId, so V2 items always carry it then.
            sink = replace(sink, metadata_fields=(*sink.metadata_fields, "messageId"))
        return cls(
            pulsar=pulsar,
            sink=sink,
            runtime=ServerConfig.from_mapping(doc.get("runtime") or {}, env=env),
            failure=failure,
            adaptive=AdaptiveInFlightConfig.from_mapping(
                doc.get(ADAPTIVE_SECTION) or {}, max_in_flight=sink.max_in_flight
            ),
        )

    def redacted_dict(self) -> dict[str, Any]:
        """Everything, for a start-up log line; non-empty secrets replaced by '<redacted>'."""
        return cast(dict[str, Any], _redact(self))


def _redact(obj: object) -> object:
    if is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, object] = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("sensitive"):
                out[f.name] = REDACTED if value else ""
            else:
                out[f.name] = _redact(value)
        return out
    if isinstance(obj, tuple):
        return list(obj)
    return obj


def _parse_document(text: str, origin: str) -> Mapping[str, Any]:
    """JSON first (exact), then YAML; never echo the text (it may hold secrets)."""
    try:
        doc: object = json.loads(text)
    except ValueError:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(origin, f"<unparsable{where}>", "a JSON or YAML document") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(origin, type(doc).__name__, "a mapping with pulsar, sink, runtime")
    return cast(Mapping[str, Any], doc)


def load_config(path: str | None, *, env: Mapping[str, str] = os.environ) -> RuntimeConfig:
    """Read the configuration from a YAML/JSON file, or from env LAMBDASINK_CONFIG when no path."""
    if path is None:
        text = env.get(ENV_CONFIG, "")
        if not text.strip():
            raise ConfigError(
                ENV_CONFIG, None, "a config file path, or the document in this variable"
            )
        return RuntimeConfig.from_mapping(_parse_document(text, ENV_CONFIG), env=env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("config file", path, f"a readable file ({exc.strerror})") from None
    return RuntimeConfig.from_mapping(_parse_document(text, path), env=env)
