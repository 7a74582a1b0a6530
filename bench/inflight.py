"""Adaptive against fixed in-flight: throughput and throttles, side by side in one run.

Real Pulsar → `lambdasink-runtime` → a private emulator gateway (bench/env.py) running
`bench_handlers.busy` (each call holds its execution environment for 20 ms).

- *throttled*: the function has `concurrency` 2 and the gateway answers 429 at once when both
  are busy (queueTimeout 0, as Lambda throttles a function whose reserved concurrency is used
  up, with Retry-After 1 s); the worker has maxInFlight 8. Fixed in-flight keeps 8 calls going
  and collects throttles; adaptive should settle near 2.
- *no throttle*: the function has `concurrency` 4 (queued, never refused) and the worker has the
  default maxInFlight 4: adaptive must not deliver less than fixed (it starts at minInFlight 1).

Under throttling the fixed worker is not slow here: each throttled call waits out its 1 s
Retry-After in its slot, which caps it near the function's concurrency too. What adaptive saves
is the 429s (each one a call Lambda refused, and, on a shared account, throttling other
functions); its throughput must stay the same.

Each case is a fresh subscription on a pre-filled topic, stopped after N acknowledgements; the
two modes of a scenario alternate round by round. Delivered msg/s between 5 % and 95 % of the
acks; 429s per 1,000 messages from the runtime's own counters (throttled attempts, retried or
final). Ratios are adaptive / fixed.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from . import env
from .common import Row, load, median

BUSY_MS = 20
CAPPED, OPEN = "capped", "open"
#: function → (its concurrency, the worker's maxInFlight, the gateway's queue timeout in s)
SCENARIOS: dict[str, tuple[int, int, float]] = {CAPPED: (2, 8, 0.0), OPEN: (4, 4, 60.0)}
LABELS = {
    CAPPED: "throttled (function concurrency 2, maxInFlight 8)",
    OPEN: "no throttle (function concurrency 4, default maxInFlight 4)",
}


def _throttles(metrics: dict[str, float]) -> float:
    """Throttled attempts: retried by the invoker, or final (then retried by the pipeline)."""
    keys = (
        'lambdasink_invoke_retries_total{reason="throttled"}',
        'lambdasink_invocations_total{outcome="throttled"}',
    )
    return sum(metrics.get(k, 0.0) for k in keys)


def run_case(
    stack: dict[str, Any],
    gateway: env.Gateway,
    topic: str,
    function: str,
    adaptive: bool,
    n: int,
    workdir: Path,
    timeout_s: float = 300,
) -> dict[str, Any]:
    _, inflight, _ = SCENARIOS[function]
    cfg = env.runtime_config(
        stack, gateway, topic=topic, function=function, batch_size=10, max_in_flight=inflight
    )
    if adaptive:
        cfg["adaptiveInFlight"] = {"enabled": True}
    rt = env.Runtime(cfg, workdir).start()
    samples: list[tuple[float, float]] = []
    limits: list[float] = []
    try:
        rt.wait_ready()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = rt.metrics()
            samples.append((time.monotonic(), m.get("lambdasink_messages_acked_total", 0.0)))
            limits.append(m.get("lambdasink_inflight_limit", 0.0))
            if samples[-1][1] >= n:
                break
            time.sleep(0.2)
        metrics = rt.metrics()
    finally:
        code = rt.stop()
    lo = next((s for s in samples if s[1] >= 0.05 * n), samples[0])
    hi = next((s for s in samples if s[1] >= 0.95 * n), samples[-1])
    rate = max(1.0, hi[1] - lo[1]) / max(1e-9, hi[0] - lo[0])
    acked = samples[-1][1] if samples else 0.0
    throttles = _throttles(metrics)
    return {
        "function": function,
        "adaptive": adaptive,
        "messages": n,
        "acked": acked,
        "exitCode": code,
        "rate": rate,
        "throttles": throttles,
        "throttlesPer1000": throttles / max(1.0, acked) * 1000,
        "limitMedian": median(limits),
        "limitFinal": limits[-1] if limits else None,
        "limitChanges": {
            reason: metrics.get(f'lambdasink_inflight_limit_changes_total{{reason="{reason}"}}', 0)
            for reason in ("success", "throttled", "latency")
        },
        "load": load(),
    }


def run(stack: dict[str, Any], *, messages: int, rounds: int) -> list[Row]:
    functions = {name: ("bench_handlers.busy", c) for name, (c, _, _) in SCENARIOS.items()}
    gateway = env.Gateway(
        stack, functions, queue_timeout_s={k: q for k, (_, _, q) in SCENARIOS.items()}
    )
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as cleanup:
        gateway.start()
        cleanup.callback(gateway.stop)
        work = cleanup.enter_context(env.workdir())
        topic = env.topic_name("bench-inflight")
        env.prefill(stack, topic, messages, 100)
        cleanup.callback(env.delete_topic, stack, topic)
        for function in SCENARIOS:
            gateway.warm(function)
        for r in range(rounds):
            for function in SCENARIOS:
                # Alternate which mode goes first, so drift in the machine's load is shared.
                for adaptive in (r % 2 == 0, r % 2 != 0):
                    res = run_case(stack, gateway, topic, function, adaptive, messages, work)
                    mode = "adaptive" if adaptive else "fixed"
                    print(
                        f"   {function} {mode}: {res['rate']:.0f} msg/s, "
                        f"{res['throttlesPer1000']:.1f} 429s/1000 msgs, "
                        f"limit median {res['limitMedian']:.1f}, changes {res['limitChanges']}",
                        flush=True,
                    )
                    results.append(res)
    return _rows(results)


def _rows(results: list[dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    for function in SCENARIOS:
        mine = [r for r in results if r["function"] == function]
        fixed = [r for r in mine if not r["adaptive"]]
        adaptive = [r for r in mine if r["adaptive"]]
        rate_f = median([r["rate"] for r in fixed])
        rate_a = median([r["rate"] for r in adaptive])
        t_f = median([r["throttlesPer1000"] for r in fixed])
        t_a = median([r["throttlesPer1000"] for r in adaptive])
        extra = {"fixed": fixed, "adaptive": adaptive}
        label = LABELS[function]
        rows.append(
            Row(
                "inflight",
                f"{label}: delivered, adaptive vs fixed",
                rate_a,
                "msg/s",
                rate_f,
                rate_a / rate_f if rate_f else None,
                ">= 0.95x",  # no worse, within this box's run-to-run noise
                rate_a >= rate_f * 0.95,
                extra,
            )
        )
        if function == CAPPED:
            rows.append(
                Row(
                    "inflight",
                    f"{label}: 429s per 1,000 messages, adaptive vs fixed",
                    t_a,
                    "429s/1000 msgs",
                    t_f,
                    t_a / t_f if t_f else None,
                    "< 1x",
                    t_a < t_f,
                    {"limitMedianAdaptive": median([r["limitMedian"] for r in adaptive])},
                )
            )
    return rows
