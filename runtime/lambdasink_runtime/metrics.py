"""The runtime's counters, gauges and histograms on prometheus_client.

Each `Metrics()` has a registry of its own (not the library's global one): one per runtime
process, and tests build many in one process. `_created` samples are switched off (process-wide,
as in the operator) so /metrics shows the series it always did. Updates happen on the pipeline's
event-loop thread, rendering on the HTTP server's; prometheus_client locks each value.

The read helpers (`value`, `values`, `count`, `sum`) walk `collect()`: they serve /status and
tests, never the hot path.
"""

from __future__ import annotations

from collections.abc import Iterator

import prometheus_client
from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


def _samples(metric: prometheus_client.metrics.MetricWrapperBase, suffix: str) -> Iterator[Sample]:
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix):
                yield sample


class Counter(prometheus_client.Counter):
    """A monotonically increasing count; `.labels(value).inc(n)` when it has a label."""

    def value(self, *labels: str) -> float:
        """The count for these label values (0 for a combination never counted)."""
        for sample in _samples(self, "_total"):
            if tuple(sample.labels.values()) == labels:
                return sample.value
        return 0.0

    def values(self) -> dict[str, float]:
        """Per first label value (for a one-label counter's status summary)."""
        return {next(iter(s.labels.values()), ""): s.value for s in _samples(self, "_total")}


class Gauge(prometheus_client.Gauge):
    """A value that goes up and down."""

    def value(self) -> float:
        return next(_samples(self, "")).value


class Histogram(prometheus_client.Histogram):
    """Cumulative buckets, a sum and a count."""

    @property
    def count(self) -> int:
        return int(next(_samples(self, "_count")).value)

    @property
    def sum(self) -> float:
        return next(_samples(self, "_sum")).value


class Metrics:
    """Every metric the runtime exports, in `registry` (rendered in this order)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        p = "lambdasink_"
        self.messages_received = Counter(
            p + "messages_received_total", "Messages received.", registry=r
        )
        self.invocations = Counter(
            p + "invocations_total",
            "Lambda invocations by final outcome (success or the failure reason).",
            ("outcome",),
            registry=r,
        )
        self.messages_acked = Counter(
            p + "messages_acked_total", "Messages acknowledged.", registry=r
        )
        self.messages_nacked = Counter(
            p + "messages_nacked_total",
            "Messages negatively acknowledged.",
            ("reason",),
            registry=r,
        )
        self.invoke_retries = Counter(
            p + "invoke_retries_total", "Invocation attempts retried.", ("reason",), registry=r
        )
        self.batch_records = Histogram(
            p + "batch_records",
            "Records per invocation.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=r,
        )
        self.batch_bytes = Histogram(
            p + "batch_bytes",
            "Invocation payload bytes.",
            buckets=(1024, 4096, 16384, 65536, 262144, 1048576, 2097152, 4194304, 6291456),
            registry=r,
        )
        self.invoke_latency = Histogram(
            p + "invoke_latency_seconds",
            "Latency of one invocation including retries.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.inflight = Gauge(p + "inflight_invocations", "Invocations in flight.", registry=r)
        self.inflight_limit = Gauge(
            p + "inflight_limit",
            "Invocations allowed in flight now (maxInFlight, or the adaptive limit).",
            registry=r,
        )
        self.inflight_limit_changes = Counter(
            p + "inflight_limit_changes_total",
            "Changes of the adaptive in-flight limit, by cause (success, throttled, latency).",
            ("reason",),
            registry=r,
        )
        self.oversize = Counter(
            p + "oversize_records_total",
            "Records larger than the invocation payload limit.",
            registry=r,
        )
        # The failure policy: where each given-up record went, and why.
        self.record_failures = Counter(
            p + "record_failures_total",
            "Failed attempts per record, by reason (service failures are not counted against "
            "the record's attempts).",
            ("reason",),
            registry=r,
        )
        self.records_dead_lettered = Counter(
            p + "records_dead_lettered_total",
            "Records given up and persisted in the dead-letter topic, by last failure reason.",
            ("reason",),
            registry=r,
        )
        self.records_dropped = Counter(
            p + "records_dropped_total",
            "Records given up and acknowledged without delivery (onExhausted: drop), by reason.",
            ("reason",),
            registry=r,
        )
        self.records_too_old = Counter(
            p + "records_too_old_total",
            "Records given up as older than maxRecordAgeMs.",
            registry=r,
        )
        self.records_blocked = Gauge(
            p + "records_blocked",
            "Records out of attempts that onExhausted: block keeps retrying.",
            registry=r,
        )
        self.partial_failures = Counter(
            p + "partial_batch_failures_total",
            "Records the function listed in batchItemFailures.",
            registry=r,
        )
        self.invalid_responses = Counter(
            p + "invalid_partial_responses_total",
            "Malformed batchItemFailures responses (the whole batch failed).",
            registry=r,
        )
        self.bisects = Counter(
            p + "bisects_total", "Batches split in halves on a function error.", registry=r
        )
        self.dead_letter_errors = Counter(
            p + "dead_letter_errors_total",
            "Failed writes to the dead-letter topic (retried).",
            registry=r,
        )
        self.attempt_log_errors = Counter(
            p + "attempt_log_errors_total",
            "Failed writes of attempt counts (retried).",
            registry=r,
        )
        self.breaker_open = Gauge(
            p + "circuit_breaker_open",
            "1 while the circuit breaker is open or probing.",
            registry=r,
        )
        self.breaker_transitions = Counter(
            p + "circuit_breaker_transitions_total",
            "Circuit breaker state changes, by new state.",
            ("state",),
            registry=r,
        )
