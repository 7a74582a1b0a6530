"""Metrics A/B: the metric updates per message, hand-written counters vs prometheus_client.

`python -m bench.metrics_ab [--messages 200000] [--batch 100] [--rounds 7]`

Same process, no stack, variants interleaved round by round, each timed on the thread's CPU
(`time.thread_time_ns`) over `--messages` messages received and delivered in batches of
`--batch`, with the updates the pipeline makes for one successful batch:

- `before`: the hand-written metrics the runtime had before prometheus_client (the classes are
  kept here verbatim), `messages_received` counted once per message as the pipeline did;
- `prom-per-msg`: `lambdasink_runtime.metrics` (prometheus_client) counted the old way, once per
  message, to show what the per-message count would cost now;
- `prom`: `lambdasink_runtime.metrics` as the pipeline uses it: `messages_received.inc(n)` once
  per received batch.

Prints the median ns of metric work per message of each variant and its ratio to `before`.
"""

from __future__ import annotations

import argparse
import bisect
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from lambdasink_runtime.metrics import Metrics

# --- before: the hand-written classes, verbatim (rendering left out) ------------------------------


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)


class _OldCounter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        self._values[labels] = self._values.get(labels, 0.0) + amount


class _OldGauge(_Metric):
    kind = "gauge"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        self._value -= amount


class _OldHistogram(_Metric):
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


class _OldMetrics:
    """The metrics one successful batch touches, with the runtime's buckets."""

    def __init__(self) -> None:
        self.messages_received = _OldCounter("r", "")
        self.invocations = _OldCounter("i", "", ("outcome",))
        self.messages_acked = _OldCounter("a", "")
        self.batch_records = _OldHistogram("b", "", (1, 2, 5, 10, 20, 50, 100, 200, 500))
        self.batch_bytes = _OldHistogram(
            "y", "", (1024, 4096, 16384, 65536, 262144, 1048576, 2097152, 4194304, 6291456)
        )
        self.invoke_latency = _OldHistogram(
            "l", "", (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
        )
        self.inflight = _OldGauge("f", "")


# --- the variants: one batch's updates, as the pipeline and the invoker make them -----------------


def _before(m: Any, n: int) -> None:
    for _ in range(n):
        m.messages_received.inc()
    m.inflight.inc()
    m.batch_records.observe(n)
    m.batch_bytes.observe(n * 300)
    m.invocations.inc(1, "success")
    m.invoke_latency.observe(0.02)
    m.inflight.dec()
    m.messages_acked.inc(n)


def _prom_rest(m: Metrics, n: int) -> None:
    m.inflight.inc()
    m.batch_records.observe(n)
    m.batch_bytes.observe(n * 300)
    m.invocations.labels("success").inc()
    m.invoke_latency.observe(0.02)
    m.inflight.dec()
    m.messages_acked.inc(n)


def _prom_per_msg(m: Metrics, n: int) -> None:
    for _ in range(n):
        m.messages_received.inc()
    _prom_rest(m, n)


def _prom(m: Metrics, n: int) -> None:
    m.messages_received.inc(n)
    _prom_rest(m, n)


def _time(batch: Callable[[Any, int], None], metrics: Any, messages: int, size: int) -> float:
    """Thread CPU ns per message for `messages` messages in batches of `size`."""
    started = time.thread_time_ns()
    for _ in range(messages // size):
        batch(metrics, size)
    return (time.thread_time_ns() - started) / (messages // size * size)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.metrics_ab", description=__doc__)
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--rounds", type=int, default=7)
    a = p.parse_args(argv)
    variants: dict[str, tuple[Callable[[Any, int], None], Any]] = {
        "before": (_before, _OldMetrics()),
        "prom-per-msg": (_prom_per_msg, Metrics()),
        "prom": (_prom, Metrics()),
    }
    for batch, metrics in variants.values():  # warm up
        _time(batch, metrics, a.batch * 10, a.batch)
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(a.rounds):
        for name, (batch, metrics) in variants.items():
            results[name].append(_time(batch, metrics, a.messages, a.batch))
    base = statistics.median(results["before"])
    print(f"{a.messages} messages in batches of {a.batch}, median of {a.rounds} rounds")
    print("| variant | metric ns / message | ratio to before |")
    print("|---|---|---|")
    for name, values in results.items():
        ns = statistics.median(values)
        print(f"| {name} | {ns:.1f} | {ns / base:.2f} |")


if __name__ == "__main__":
    main()
