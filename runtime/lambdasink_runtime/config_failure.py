"""The `failurePolicy` section: what happens to a record whose invocations fail (our own).

`FAILURE_PROPS` and `BREAKER_PROPS` declare every property once; the dataclass defaults and the
parser come from them, and tests check the CRD's `spec.failurePolicy` schema against them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .config_fields import Prop, by_key
from .config_values import INT32_MAX, Reader, as_mapping, check_keys
from .errors import ConfigError

if TYPE_CHECKING:
    from .config_pulsar import PulsarConfig
    from .config_sink import SinkConfig

OnExhausted = Literal["deadLetter", "drop", "block"]

#: maxAttempts when neither it nor the reference's pulsar.maxRedeliverCount is given.
DEFAULT_MAX_ATTEMPTS = 3

BREAKER_PROPS: tuple[Prop, ...] = (
    Prop("enabled", "enabled", "boolean", True, "Whether the breaker may open."),
    Prop(
        "failureRatio",
        "failure_ratio",
        "number",
        0.5,
        "Share of failed calls in the window that opens it.",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
    ),
    Prop(
        "minimumCalls",
        "minimum_calls",
        "integer",
        10,
        "Calls in the window before it may open.",
        1,
        INT32_MAX,
    ),
    Prop("windowMs", "window_ms", "integer", 30000, "The sliding window (ms).", 1000, INT32_MAX),
    Prop(
        "probeIntervalInitialMs",
        "probe_interval_initial_ms",
        "integer",
        1000,
        "First wait before a probe call while open (ms); doubles after a failed probe.",
        1,
        INT32_MAX,
    ),
    Prop(
        "probeIntervalMaxMs",
        "probe_interval_max_ms",
        "integer",
        60000,
        "Longest wait between probe calls (ms).",
        1,
        INT32_MAX,
    ),
)
BREAKER = by_key(BREAKER_PROPS)

FAILURE_PROPS: tuple[Prop, ...] = (
    Prop(
        "maxAttempts",
        "max_attempts",
        "integer",
        DEFAULT_MAX_ATTEMPTS,
        "Invocations a record gets in all, across redeliveries and restarts, before "
        "onExhausted applies.",
        1,
        INT32_MAX,
        default_doc=f"maxRedeliverCount + 1, else {DEFAULT_MAX_ATTEMPTS}",
    ),
    Prop(
        "onExhausted",
        "on_exhausted",
        "string",
        "block",
        "What to do with a record whose attempts are used up: deadLetter (copy it to the "
        "dead-letter topic, then acknowledge), drop (acknowledge and count it) or block (keep "
        "retrying, never leave a gap).",
        choices=("deadLetter", "drop", "block"),
        default_doc="deadLetter when a DLQ is configured, else block | drop",
    ),
    Prop(
        "maxRecordAgeMs",
        "max_record_age_ms",
        "integer",
        0,
        "Records older than this (by publish time) are given up without being invoked; "
        "0: no limit.",
        0,
        INT32_MAX,
    ),
    Prop(
        "retryBackoffInitialMs",
        "retry_backoff_initial_ms",
        "integer",
        1000,
        "First wait before a failed record is retried in place (ms); doubles per attempt.",
        0,
        INT32_MAX,
    ),
    Prop(
        "retryBackoffMaxMs",
        "retry_backoff_max_ms",
        "integer",
        30000,
        "Longest wait between attempts of a record (ms).",
        0,
        INT32_MAX,
    ),
    Prop(
        "reportBatchItemFailures",
        "report_batch_item_failures",
        "boolean",
        False,
        "Read a partial batch response (batchItemFailures) from the function; needs "
        "synchronousInvocation.",
    ),
    Prop(
        "bisectOnFunctionError",
        "bisect_on_function_error",
        "boolean",
        False,
        "Split a multi-record batch that fails with a function error in halves until the "
        "failing record is alone.",
    ),
    Prop(
        "attemptsTopic",
        "attempts_topic",
        "string",
        "",
        "Topic holding the attempt counts.",
        empty_is_default=True,
        default_doc="<namespace>/<subscription>-lambdasink-attempts",
    ),
)
FAILURE = by_key(FAILURE_PROPS)
#: The nested section, not a scalar property.
CIRCUIT_BREAKER_KEY = "circuitBreaker"


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    """When most calls fail for lack of a working function, stop pulling instead of burning
    every record's attempts (function down, permission revoked, region outage)."""

    enabled: bool = BREAKER["enabled"].default
    failure_ratio: float = BREAKER["failureRatio"].default
    minimum_calls: int = BREAKER["minimumCalls"].default
    window_ms: int = BREAKER["windowMs"].default
    probe_interval_initial_ms: int = BREAKER["probeIntervalInitialMs"].default
    probe_interval_max_ms: int = BREAKER["probeIntervalMaxMs"].default

    @classmethod
    def from_mapping(cls, section: str, doc: Mapping[str, Any]) -> CircuitBreakerConfig:
        doc = as_mapping(section, doc)
        check_keys(section, doc, BREAKER)
        r = Reader(section, doc)
        cfg = cls(**{p.attr: p.read(r) for p in BREAKER_PROPS})
        if cfg.probe_interval_max_ms < cfg.probe_interval_initial_ms:
            raise ConfigError(
                r.name("probeIntervalMaxMs"),
                cfg.probe_interval_max_ms,
                f"at least probeIntervalInitialMs ({cfg.probe_interval_initial_ms})",
            )
        return cfg


@dataclass(frozen=True, slots=True)
class FailurePolicyConfig:
    """What happens to a record whose invocations fail: lambda-sink's own policy, counted
    durably (attemptsTopic) and applied on every subscription type.

    Defaults follow the reference's settings where it has them: `maxAttempts` is
    pulsar.maxRedeliverCount + 1 when that is set (the first delivery plus its redeliveries),
    else 3; `onExhausted` is deadLetter when pulsar.deadLetterTopic or maxRedeliverCount is
    set, else block (never a silent gap).
    """

    max_attempts: int = FAILURE["maxAttempts"].default
    on_exhausted: OnExhausted = FAILURE["onExhausted"].default
    max_record_age_ms: int = FAILURE["maxRecordAgeMs"].default
    retry_backoff_initial_ms: int = FAILURE["retryBackoffInitialMs"].default
    retry_backoff_max_ms: int = FAILURE["retryBackoffMaxMs"].default
    report_batch_item_failures: bool = FAILURE["reportBatchItemFailures"].default
    bisect_on_function_error: bool = FAILURE["bisectOnFunctionError"].default
    attempts_topic: str = FAILURE["attemptsTopic"].default
    circuit_breaker: CircuitBreakerConfig = field(default_factory=CircuitBreakerConfig)

    @classmethod
    def from_mapping(
        cls, doc: Mapping[str, Any], pulsar: PulsarConfig, sink: SinkConfig
    ) -> FailurePolicyConfig:
        section = "failurePolicy"
        doc = as_mapping(section, doc)
        check_keys(section, doc, [*FAILURE, CIRCUIT_BREAKER_KEY])
        r = Reader(section, doc)
        computed: dict[str, Any] = {
            "maxAttempts": (
                pulsar.max_redeliver_count + 1
                if pulsar.max_redeliver_count > 0
                else DEFAULT_MAX_ATTEMPTS
            ),
            "onExhausted": "deadLetter" if pulsar.dead_letter_requested else "block",
            "attemptsTopic": f"{pulsar.namespace}/{pulsar.subscription_name}-lambdasink-attempts",
        }
        values = {p.attr: p.read(r, **_default_of(computed, p)) for p in FAILURE_PROPS}
        cfg = cls(
            **values,
            circuit_breaker=CircuitBreakerConfig.from_mapping(
                r.name(CIRCUIT_BREAKER_KEY), doc.get(CIRCUIT_BREAKER_KEY) or {}
            ),
        )
        cfg._validate(r, pulsar, sink)
        return cfg

    def _validate(self, r: Reader, pulsar: PulsarConfig, sink: SinkConfig) -> None:
        if self.max_record_age_ms and self.on_exhausted == "block":
            raise ConfigError(
                r.name("maxRecordAgeMs"),
                self.max_record_age_ms,
                "0 with failurePolicy.onExhausted block (a blocked record is never given up); "
                "use deadLetter or drop to expire old records",
            )
        if self.retry_backoff_max_ms < self.retry_backoff_initial_ms:
            raise ConfigError(
                r.name("retryBackoffMaxMs"),
                self.retry_backoff_max_ms,
                f"at least retryBackoffInitialMs ({self.retry_backoff_initial_ms})",
            )
        if self.report_batch_item_failures and not sink.synchronous_invocation:
            raise ConfigError(
                r.name("reportBatchItemFailures"),
                True,
                "false with sink.synchronousInvocation false (an asynchronous invocation "
                "returns no response to read failures from)",
            )
        # The worker writes these topics; a pattern subscription must not read them back.
        ours = [(r.name("attemptsTopic"), self.attempts_topic)]
        if pulsar.dead_letter_topic:
            ours.append(("pulsar.deadLetterTopic", pulsar.dead_letter_topic))
        for name, topic in ours:
            if pulsar.topics_pattern and re.fullmatch(
                pulsar.topics_pattern.split("/")[-1], topic.split("/")[-1]
            ):
                raise ConfigError(name, topic, "a topic that pulsar.topicsPattern does not match")


def _default_of(computed: Mapping[str, Any], prop: Prop) -> dict[str, Any]:
    """The keyword that overrides a declared default computed from other sections."""
    return {"default": computed[prop.key]} if prop.key in computed else {}
