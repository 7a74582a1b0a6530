"""The `adaptiveInFlight` section: let each worker find its in-flight limit (our own, opt-in).

`INFLIGHT_PROPS` declares each property once; the dataclass defaults, the parser and the CLI
help come from it, and tests check the CRD's `spec.adaptiveInFlight` schema against it.
`sink.maxInFlight` stays the upper bound; see `inflight_limit.py` for the rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config_fields import Prop, by_key
from .config_values import Reader, as_mapping, check_keys
from .errors import ConfigError

SECTION = "adaptiveInFlight"

INFLIGHT_PROPS: tuple[Prop, ...] = (
    Prop(
        "enabled",
        "enabled",
        "boolean",
        False,
        "Adapt the in-flight limit between minInFlight and sink.maxInFlight: raise it while "
        "invocations succeed and latency holds, cut it on throttles (429) and rising latency.",
    ),
    Prop(
        "minInFlight",
        "min_in_flight",
        "integer",
        1,
        "Lowest in-flight limit, and where it starts; at most sink.maxInFlight.",
        1,
        1024,
    ),
    Prop(
        "backoffRatio",
        "backoff_ratio",
        "number",
        0.5,
        "Factor applied to the limit on a throttle (429), once per round of calls.",
        minimum=0.1,
        maximum=0.9,
    ),
    Prop(
        "latencyTolerance",
        "latency_tolerance",
        "number",
        2.0,
        "Recent invocation latency above this many times the baseline cuts the limit by 10%; "
        "0: latency is not watched.",
        minimum=0.0,
        maximum=100.0,
    ),
)
INFLIGHT = by_key(INFLIGHT_PROPS)


@dataclass(frozen=True, slots=True)
class AdaptiveInFlightConfig:
    """Adaptive concurrency per worker; off by default (maxInFlight is then a fixed limit)."""

    enabled: bool = INFLIGHT["enabled"].default
    min_in_flight: int = INFLIGHT["minInFlight"].default
    backoff_ratio: float = INFLIGHT["backoffRatio"].default
    latency_tolerance: float = INFLIGHT["latencyTolerance"].default

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any], *, max_in_flight: int) -> AdaptiveInFlightConfig:
        doc = as_mapping(SECTION, doc)
        check_keys(SECTION, doc, INFLIGHT)
        r = Reader(SECTION, doc)
        cfg = cls(**{p.attr: p.read(r) for p in INFLIGHT_PROPS})
        if cfg.min_in_flight > max_in_flight:
            raise ConfigError(
                r.name("minInFlight"),
                cfg.min_in_flight,
                f"at most sink.maxInFlight ({max_in_flight}), the upper bound",
            )
        if 0 < cfg.latency_tolerance <= 1:
            raise ConfigError(
                r.name("latencyTolerance"),
                cfg.latency_tolerance,
                "0 (latency not watched) or a number above 1",
            )
        return cfg
