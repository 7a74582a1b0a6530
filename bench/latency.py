"""Latency from produce to handler at a low rate.

The producer puts its wall-clock send time into each message ("t" in the JSON value); the
`arrival` handler (bench/lambda) writes that time and its own arrival time for every item. Same
machine, same clock. Goal: p99 <= batchMaxTimeMs + endpoint latency + 100 ms.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pulsar

from . import env
from .common import Row, load, percentile

LATENCY_MS = 20.0
FUNCTION = "arrival"
SLACK_MS = 100.0


def run_case(
    stack: dict[str, Any],
    gateway: env.Gateway,
    *,
    rate: float,
    seconds: float,
    batch: int,
    batch_time_ms: int,
) -> dict[str, Any]:
    topic = env.topic_name("bench-latency")
    with env.workdir() as wd:
        cfg = env.runtime_config(
            stack,
            gateway,
            topic=topic,
            function=FUNCTION,
            batch_size=batch,
            max_in_flight=None,
            batch_time_ms=batch_time_ms,
            initial="Latest",
        )
        rt = env.Runtime(cfg, wd).start()
        client = pulsar.Client(stack["pulsar"]["serviceUrl"], logger=env._quiet_logger())
        try:
            rt.wait_ready()
            producer = client.create_producer(
                topic, schema=pulsar.schema.StringSchema(), batching_enabled=False
            )
            n = int(rate * seconds)
            start = time.monotonic()
            for i in range(n):
                due = start + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                now = time.time()
                producer.send(json.dumps({"t": now, "i": i}), event_timestamp=int(now * 1000))
            deadline = time.monotonic() + batch_time_ms / 1000 + 15
            while time.monotonic() < deadline:
                if len(gateway.arrivals(FUNCTION)) >= n:
                    break
                time.sleep(0.2)
            producer.close()
        finally:
            client.close()
            rt.stop()
            env.delete_topic(stack, topic)
    # The gateway is this case's own, so every arrival line belongs to it.
    lat = sorted((b - a) * 1000 for a, b in gateway.arrivals(FUNCTION))
    return {
        "produced": n,
        "received": len(lat),
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "max": lat[-1] if lat else float("nan"),
        "series": [round(x) for x in lat],
        "load": load(),
    }


def run(stack: dict[str, Any], *, seconds: float) -> list[Row]:
    cases = [
        # (rate msg/s, batchMaxSize, batchMaxTimeMs)
        (5.0, 10, 1000),
        (20.0, 10, 200),
        (5.0, None, 5000),  # the defaults: batch 10, 5 s
    ]
    rows: list[Row] = []
    for rate, batch, bt in cases:
        # A fresh gateway per case: arrival files are per process, so cases never mix.
        gateway = env.Gateway(stack, {FUNCTION: ("bench_handlers.arrival", 2)}).start()
        try:
            gateway.warm(FUNCTION)  # Lambda cold starts are not the runtime's latency
            gateway.set_latency(FUNCTION, LATENCY_MS)
            r = run_case(
                stack, gateway, rate=rate, seconds=seconds, batch=batch or 10, batch_time_ms=bt
            )
        finally:
            gateway.stop()
        goal = bt + LATENCY_MS + SLACK_MS
        name = f"{rate:g} msg/s, batch {batch or 10}, batchMaxTimeMs {bt}"
        got = f"{r['received']}/{r['produced']}"
        print(f"  {name}: p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms ({got} received)")
        complete = r["received"] >= r["produced"]
        rows.append(Row("latency", name + ": p50", r["p50"], "ms", extra=r))
        rows.append(
            Row(
                "latency",
                name + ": p99",
                r["p99"],
                "ms",
                goal=f"<= {goal:.0f} ms",
                ok=complete and r["p99"] <= goal,
                extra=r,
            )
        )
    return rows
