"""Counters, gauges and histograms rendered in Prometheus text format 0.0.4, stdlib only.

Updates happen on the pipeline's event-loop thread; the HTTP server thread only renders. Each
update is a dict or float operation, cheap enough for the per-message hot path.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)

    def _header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A monotonically increasing count, optionally split by label values."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def values(self) -> dict[str, float]:
        """Per first label value (for a one-label counter's status summary)."""
        return {k[0] if k else "": v for k, v in self._values.items()}

    def render(self) -> list[str]:
        lines = self._header()
        for key, val in sorted(self._values.items()):
            lines.append(f"{self.name}{_labels(self.label_names, key)} {_fmt(val)}")
        return lines


class Gauge(_Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._value = 0.0

    def set(self, value: float) -> None:
        self._value = value

    def inc(self, amount: float = 1.0) -> None:
        self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        self._value -= amount

    def value(self) -> float:
        return self._value

    def render(self) -> list[str]:
        return [*self._header(), f"{self.name} {_fmt(self._value)}"]


class Histogram(_Metric):
    """Cumulative buckets, a sum and a count."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)  # last slot: above every bound (+Inf)
        self._sum = 0.0
        self._count = 0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.buckets, value)] += 1
        self._sum += value
        self._count += 1

    @property
    def count(self) -> int:
        return self._count

    @property
    def sum(self) -> float:
        return self._sum

    def render(self) -> list[str]:
        lines = self._header()
        running = 0
        counts = list(self._counts)
        for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
            running += n
            lines.append(f'{self.name}_bucket{{le="{_fmt(bound)}"}} {running}')
        lines.append(f"{self.name}_sum {_fmt(self._sum)}")
        lines.append(f"{self.name}_count {running}")
        return lines


class Metrics:
    """Every metric the runtime exports; one instance per process (tests make their own)."""

    def __init__(self) -> None:
        p = "lambdasink_"
        self.messages_received = Counter(p + "messages_received_total", "Messages received.")
        self.invocations = Counter(
            p + "invocations_total",
            "Lambda invocations by final outcome (success or the failure reason).",
            ("outcome",),
        )
        self.messages_acked = Counter(p + "messages_acked_total", "Messages acknowledged.")
        self.messages_nacked = Counter(
            p + "messages_nacked_total", "Messages negatively acknowledged.", ("reason",)
        )
        self.invoke_retries = Counter(
            p + "invoke_retries_total", "Invocation attempts retried.", ("reason",)
        )
        self.batch_records = Histogram(
            p + "batch_records", "Records per invocation.", (1, 2, 5, 10, 20, 50, 100, 200, 500)
        )
        self.batch_bytes = Histogram(
            p + "batch_bytes",
            "Invocation payload bytes.",
            (1024, 4096, 16384, 65536, 262144, 1048576, 2097152, 4194304, 6291456),
        )
        self.invoke_latency = Histogram(
            p + "invoke_latency_seconds",
            "Latency of one invocation including retries.",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.inflight = Gauge(p + "inflight_invocations", "Invocations in flight.")
        self.oversize = Counter(
            p + "oversize_records_total", "Records larger than the invocation payload limit."
        )
        # The failure policy: where each given-up record went, and why.
        self.record_failures = Counter(
            p + "record_failures_total",
            "Failed attempts per record, by reason (service failures are not counted against "
            "the record's attempts).",
            ("reason",),
        )
        self.records_dead_lettered = Counter(
            p + "records_dead_lettered_total",
            "Records given up and persisted in the dead-letter topic, by last failure reason.",
            ("reason",),
        )
        self.records_dropped = Counter(
            p + "records_dropped_total",
            "Records given up and acknowledged without delivery (onExhausted: drop), by reason.",
            ("reason",),
        )
        self.records_too_old = Counter(
            p + "records_too_old_total", "Records given up as older than maxRecordAgeMs."
        )
        self.records_blocked = Gauge(
            p + "records_blocked",
            "Records out of attempts that onExhausted: block keeps retrying.",
        )
        self.partial_failures = Counter(
            p + "partial_batch_failures_total", "Records the function listed in batchItemFailures."
        )
        self.invalid_responses = Counter(
            p + "invalid_partial_responses_total",
            "Malformed batchItemFailures responses (the whole batch failed).",
        )
        self.bisects = Counter(p + "bisects_total", "Batches split in halves on a function error.")
        self.dead_letter_errors = Counter(
            p + "dead_letter_errors_total", "Failed writes to the dead-letter topic (retried)."
        )
        self.attempt_log_errors = Counter(
            p + "attempt_log_errors_total", "Failed writes of attempt counts (retried)."
        )
        self.breaker_open = Gauge(
            p + "circuit_breaker_open", "1 while the circuit breaker is open or probing."
        )
        self.breaker_transitions = Counter(
            p + "circuit_breaker_transitions_total",
            "Circuit breaker state changes, by new state.",
            ("state",),
        )

    def all(self) -> list[_Metric]:
        return [
            self.messages_received,
            self.invocations,
            self.messages_acked,
            self.messages_nacked,
            self.invoke_retries,
            self.batch_records,
            self.batch_bytes,
            self.invoke_latency,
            self.inflight,
            self.oversize,
            self.record_failures,
            self.records_dead_lettered,
            self.records_dropped,
            self.records_too_old,
            self.records_blocked,
            self.partial_failures,
            self.invalid_responses,
            self.bisects,
            self.dead_letter_errors,
            self.attempt_log_errors,
            self.breaker_open,
            self.breaker_transitions,
        ]

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.all():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
