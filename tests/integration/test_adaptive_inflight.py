"""Adaptive in-flight against the real stack: the limit falls under sustained throttles, rises
again once they stop, and every message is delivered. The runtime runs as its own process.

The throttles (429 TooManyRequestsException, Retry-After 1 s) are injected by the Lambda
gateway's fault control, because the real emulator cannot throttle; everything else is real
(Pulsar, the runtime, the recording handler in AWS's runtime interface emulator). The limit is
read from the worker's /metrics (lambdasink_inflight_limit) and /status, as a user would.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from runtime_support import (
    RuntimeProcess,
    Runtimes,
    backlog,
    received_items,
    runtime_config,
    unique_topic,
    wait_for,
)
from tests.stack import LambdaFaults, LambdaFunctions, Stack

pytestmark = pytest.mark.integration

MAX_IN_FLIGHT = 4


def metric(proc: RuntimeProcess, name: str) -> float:
    status, text = proc.probe("/metrics")
    assert status == 200, text
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    raise AssertionError(f"{name} not in /metrics")


def produce(client: Any, topic: str, values: list[str]) -> None:
    producer = client.create_producer(topic, batching_enabled=True)
    for v in values:
        producer.send_async(v.encode(), None)
    producer.flush()
    producer.close()


def limit(proc: RuntimeProcess) -> int:
    return int(metric(proc, "lambdasink_inflight_limit"))


def in_flight_status(proc: RuntimeProcess) -> dict[str, Any]:
    status, text = proc.probe("/status")
    assert status == 200, text
    doc: dict[str, Any] = json.loads(text)["inFlight"]
    return doc


def test_limit_falls_under_sustained_throttles_and_rises_after_them(
    stack: Stack,
    client: Any,
    runtimes: Runtimes,
    lambda_functions: LambdaFunctions,
    lambda_faults: LambdaFaults,
) -> None:
    recorder = lambda_functions.recorder(concurrency=MAX_IN_FLIGHT)
    function = recorder.function
    # Every call takes >= 100 ms, so a backlog keeps the limit what holds the worker back.
    lambda_faults.set_latency(function, 100)
    topic = unique_topic("rt-adaptive")
    first = [f"before-{i}" for i in range(300)]
    produce(client, topic, first)
    cfg = runtime_config(
        stack,
        function,
        topics=[topic],
        sink={"batchMaxSize": 1, "maxInFlight": MAX_IN_FLIGHT, "invokeMaxRetries": 2},
    )
    cfg["adaptiveInFlight"] = {"enabled": True, "minInFlight": 1}
    cfg["failurePolicy"] = {"circuitBreaker": {"probeIntervalMaxMs": 2000}}
    proc = runtimes.start(cfg)

    # Succeeding calls: from minInFlight up to maxInFlight.
    wait_for("the limit to reach maxInFlight", lambda: limit(proc) == MAX_IN_FLIGHT, 60)
    assert in_flight_status(proc)["adaptive"] is True

    # Sustained throttles (injected: until cleared): the limit falls to its minimum.
    lambda_faults.inject(function, "throttle", count=-1, retryAfterSeconds=1)
    wait_for("the limit to fall to minInFlight", lambda: limit(proc) == 1, 90)
    shown = in_flight_status(proc)
    assert (shown["limit"], shown["min"], shown["max"]) == (1, 1, MAX_IN_FLIGHT), shown
    assert shown["lastCut"] == "throttled", shown
    changes = 'lambdasink_inflight_limit_changes_total{reason="throttled"}'
    assert metric(proc, changes) >= 2  # 4 -> 2 -> 1: one cut per round of calls

    # The throttles stop: the limit rises again while a backlog remains.
    lambda_faults.cleanup()
    lambda_faults.set_latency(function, 100)
    second = [f"after-{i}" for i in range(300)]
    produce(client, topic, second)
    wait_for("the limit to rise again", lambda: limit(proc) >= MAX_IN_FLIGHT - 1, 120)
    assert metric(proc, 'lambdasink_inflight_limit_changes_total{reason="success"}') >= 3

    # Every message delivered (at least once: a throttled call never reached the handler).
    expected = set(first) | set(second)

    def delivered() -> bool:
        got = {base64.b64decode(x["value"]).decode() for x in received_items(recorder)}
        return expected <= got

    wait_for("every message at the function", delivered, 180)
    sub = cfg["pulsar"]["subscriptionName"]
    wait_for("an empty backlog", lambda: backlog(stack, topic, sub) == 0, 60)
    assert metric(proc, 'lambdasink_invoke_retries_total{reason="throttled"}') > 0
    assert proc.terminate() == 0
