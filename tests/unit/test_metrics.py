"""The runtime's metrics on prometheus_client: the series the hand-written renderer exposed (names,
types, label names, help texts, buckets) and the read helpers /status and the tests use."""

from __future__ import annotations

import math

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lambdasink_runtime.metrics import Counter, Metrics

#: (attribute, exposed name, type, label names, help), as the hand-written renderer had them.
SERIES = [
    (
        "messages_received",
        "lambdasink_messages_received_total",
        "counter",
        (),
        "Messages received.",
    ),
    (
        "invocations",
        "lambdasink_invocations_total",
        "counter",
        ("outcome",),
        "Lambda invocations by final outcome (success or the failure reason).",
    ),
    ("messages_acked", "lambdasink_messages_acked_total", "counter", (), "Messages acknowledged."),
    (
        "messages_nacked",
        "lambdasink_messages_nacked_total",
        "counter",
        ("reason",),
        "Messages negatively acknowledged.",
    ),
    (
        "invoke_retries",
        "lambdasink_invoke_retries_total",
        "counter",
        ("reason",),
        "Invocation attempts retried.",
    ),
    ("batch_records", "lambdasink_batch_records", "histogram", (), "Records per invocation."),
    ("batch_bytes", "lambdasink_batch_bytes", "histogram", (), "Invocation payload bytes."),
    (
        "invoke_latency",
        "lambdasink_invoke_latency_seconds",
        "histogram",
        (),
        "Latency of one invocation including retries.",
    ),
    ("inflight", "lambdasink_inflight_invocations", "gauge", (), "Invocations in flight."),
    (
        "inflight_limit",
        "lambdasink_inflight_limit",
        "gauge",
        (),
        "Invocations allowed in flight now (maxInFlight, or the adaptive limit).",
    ),
    (
        "inflight_limit_changes",
        "lambdasink_inflight_limit_changes_total",
        "counter",
        ("reason",),
        "Changes of the adaptive in-flight limit, by cause (success, throttled, latency).",
    ),
    (
        "oversize",
        "lambdasink_oversize_records_total",
        "counter",
        (),
        "Records larger than the invocation payload limit.",
    ),
    (
        "record_failures",
        "lambdasink_record_failures_total",
        "counter",
        ("reason",),
        "Failed attempts per record, by reason (service failures are not counted against the "
        "record's attempts).",
    ),
    (
        "records_dead_lettered",
        "lambdasink_records_dead_lettered_total",
        "counter",
        ("reason",),
        "Records given up and persisted in the dead-letter topic, by last failure reason.",
    ),
    (
        "records_dropped",
        "lambdasink_records_dropped_total",
        "counter",
        ("reason",),
        "Records given up and acknowledged without delivery (onExhausted: drop), by reason.",
    ),
    (
        "records_too_old",
        "lambdasink_records_too_old_total",
        "counter",
        (),
        "Records given up as older than maxRecordAgeMs.",
    ),
    (
        "records_blocked",
        "lambdasink_records_blocked",
        "gauge",
        (),
        "Records out of attempts that onExhausted: block keeps retrying.",
    ),
    (
        "partial_failures",
        "lambdasink_partial_batch_failures_total",
        "counter",
        (),
        "Records the function listed in batchItemFailures.",
    ),
    (
        "invalid_responses",
        "lambdasink_invalid_partial_responses_total",
        "counter",
        (),
        "Malformed batchItemFailures responses (the whole batch failed).",
    ),
    (
        "bisects",
        "lambdasink_bisects_total",
        "counter",
        (),
        "Batches split in halves on a function error.",
    ),
    (
        "dead_letter_errors",
        "lambdasink_dead_letter_errors_total",
        "counter",
        (),
        "Failed writes to the dead-letter topic (retried).",
    ),
    (
        "attempt_log_errors",
        "lambdasink_attempt_log_errors_total",
        "counter",
        (),
        "Failed writes of attempt counts (retried).",
    ),
    (
        "breaker_open",
        "lambdasink_circuit_breaker_open",
        "gauge",
        (),
        "1 while the circuit breaker is open or probing.",
    ),
    (
        "breaker_transitions",
        "lambdasink_circuit_breaker_transitions_total",
        "counter",
        ("state",),
        "Circuit breaker state changes, by new state.",
    ),
]

BUCKETS: dict[str, list[float]] = {
    "lambdasink_batch_records": [1, 2, 5, 10, 20, 50, 100, 200, 500],
    "lambdasink_batch_bytes": [
        1024,
        4096,
        16384,
        65536,
        262144,
        1048576,
        2097152,
        4194304,
        6291456,
    ],
    "lambdasink_invoke_latency_seconds": [
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
        30,
        60,
    ],
}


def test_exposition_keeps_every_series_of_the_hand_written_renderer() -> None:
    m = Metrics()
    for attr, _, _, labels, _ in SERIES:
        metric = getattr(m, attr)
        if labels:
            metric.labels("x").inc()
        elif isinstance(metric, Counter):
            metric.inc()
    text = generate_latest(m.registry).decode()
    lines = text.splitlines()
    assert [x for x in lines if x.startswith("# TYPE")] == [
        f"# TYPE {name} {kind}" for _, name, kind, _, _ in SERIES
    ]
    assert [x for x in lines if x.startswith("# HELP")] == [
        f"# HELP {name} {help_text}" for _, name, _, _, help_text in SERIES
    ]
    samples: dict[str, set[tuple[str, ...]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, set()).add(tuple(sorted(s.labels)))
    expected: dict[str, set[tuple[str, ...]]] = {}
    for _, name, kind, labels, _ in SERIES:
        if kind == "histogram":
            expected[name + "_bucket"] = {("le",)}
            expected[name + "_sum"] = expected[name + "_count"] = {()}
        else:
            expected[name] = {labels}
    assert samples == expected  # no `_created`, counters keep `_total`
    for name, bounds in BUCKETS.items():
        les = [x.split('le="')[1].split('"')[0] for x in lines if x.startswith(name + "_bucket")]
        assert [float(le) for le in les] == [*bounds, math.inf]


def test_read_helpers() -> None:
    m = Metrics()
    assert m.records_dead_lettered.values() == {} and m.messages_acked.value() == 0
    m.records_dead_lettered.labels("function_error").inc()
    m.records_dead_lettered.labels("function_error").inc(2)
    m.records_dead_lettered.labels("too_large").inc()
    m.messages_acked.inc(5)
    m.records_blocked.set(4)
    m.batch_records.observe(3)
    m.batch_records.observe(7)
    assert m.records_dead_lettered.values() == {"function_error": 3, "too_large": 1}
    assert m.records_dead_lettered.value("function_error") == 3
    assert m.records_dead_lettered.value("never") == 0
    assert m.messages_acked.value() == 5 and m.messages_acked.values() == {"": 5}
    assert m.records_blocked.value() == 4
    assert (m.batch_records.count, m.batch_records.sum) == (2, 10)


def test_each_metrics_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.messages_received.inc(7)
    assert b.messages_received.value() == 0
    assert "lambdasink_messages_received_total 0.0" in generate_latest(b.registry).decode()
