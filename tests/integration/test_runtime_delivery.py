"""At-least-once delivery across a crash (`kill -9`) and a graceful stop (SIGTERM) of the runtime.

N numbered messages go through a real broker to the real `recorder` handler; the runtime process
is stopped mid-stream and a new one takes over the same subscription, as a restarted pod would.
The gateway adds a fixed latency to each invocation of the test's own function (its latency
control, not a faked response) so that the stream is still flowing when the process is stopped.
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import pytest
from pulsar.schema import StringSchema
from runtime_support import (
    Runtimes,
    admin,
    backlog,
    pulsar_client,
    received_items,
    runtime_config,
    unique_topic,
    wait_for,
)
from tests.stack import LambdaFaults, Recorder, Stack

pytestmark = pytest.mark.integration

N = 2000


def produce_numbers(stack: Stack, topic: str, n: int) -> None:
    client = pulsar_client(stack)
    try:
        producer = client.create_producer(
            topic, schema=StringSchema(), block_if_queue_full=True, batching_enabled=False
        )
        for i in range(n):
            producer.send_async(str(i), None)
        producer.flush()
        producer.close()
    finally:
        client.close()


def numbers(recorder: Recorder) -> Counter[int]:
    items = received_items(recorder)
    return Counter(int(item["value"]) for item in items)


def setup(
    stack: Stack, recorder: Recorder, lambda_faults: LambdaFaults
) -> tuple[str, dict[str, Any]]:
    topic = unique_topic("rt-alo")
    produce_numbers(stack, topic, N)
    lambda_faults.set_latency(recorder.function, 25)  # keep the stream flowing for a while
    cfg = runtime_config(
        stack,
        recorder.function,
        topics=[topic],
        sink={"metadataFields": "", "batchMaxSize": 20, "batchMaxTimeMs": 100},
        pulsar={"receiverQueueSize": 100},
    )
    return topic, cfg


def run_until_complete(
    stack: Stack, runtimes: Runtimes, recorder: Recorder, topic: str, cfg: dict[str, Any]
) -> Counter[int]:
    """A second process on the same subscription finishes the stream; all acked at the end."""
    second = runtimes.start(cfg, name="restarted")
    wait_for(f"all {N} numbers", lambda: set(numbers(recorder)) == set(range(N)), 120, every=0.25)
    sub = cfg["pulsar"]["subscriptionName"]
    wait_for("an empty backlog (everything acked)", lambda: backlog(stack, topic, sub) == 0, 60)
    assert second.terminate() == 0
    return numbers(recorder)


def test_kill_9_mid_stream_loses_nothing(
    stack: Stack, runtimes: Runtimes, recorder: Recorder, lambda_faults: LambdaFaults
) -> None:
    topic, cfg = setup(stack, recorder, lambda_faults)
    first = runtimes.start(cfg, name="killed")
    wait_for("a third of the stream", lambda: len(numbers(recorder)) >= N // 3, 90, every=0.05)
    assert first.kill() == -9  # SIGKILL: no drain, unacknowledged messages stay with the broker
    at_kill = len(numbers(recorder))
    assert at_kill < N, "the stream ended before the kill; nothing was tested"

    seen = run_until_complete(stack, runtimes, recorder, topic, cfg)
    duplicates = sum(seen.values()) - N
    print(f"kill -9 after {at_kill}/{N} distinct numbers: {duplicates} duplicates")
    assert set(seen) == set(range(N))  # at least once: every number arrived
    assert all(count >= 1 for count in seen.values())


def test_sigterm_mid_stream_drains_without_duplicates(
    stack: Stack, runtimes: Runtimes, recorder: Recorder, lambda_faults: LambdaFaults
) -> None:
    topic, cfg = setup(stack, recorder, lambda_faults)
    first = runtimes.start(cfg, name="terminated")
    wait_for("a third of the stream", lambda: len(numbers(recorder)) >= N // 3, 90, every=0.05)
    assert first.terminate() == 0  # SIGTERM: stop receiving, flush, finish in-flight, ack, exit 0
    at_stop = numbers(recorder)
    assert len(at_stop) < N, "the stream ended before SIGTERM; nothing was tested"
    stderr = first.stderr()
    assert "SIGTERM received" in stderr
    assert "stopped cleanly" in stderr

    seen = run_until_complete(stack, runtimes, recorder, topic, cfg)
    duplicates = sum(seen.values()) - N
    print(f"SIGTERM after {len(at_stop)}/{N} distinct numbers: {duplicates} duplicates")
    assert set(seen) == set(range(N))
    assert duplicates == 0, [n for n, c in seen.items() if c > 1][:20]


def test_sigterm_drain_timeout_with_slow_lambda(
    stack: Stack, runtimes: Runtimes, recorder: Recorder, lambda_faults: LambdaFaults
) -> None:
    """A Lambda call slower than drainTimeoutSeconds: the process stops receiving, is not ready,
    nacks the unfinished batches and exits 0 without waiting for the calls (it would otherwise
    outlive the pod's grace period); a restarted process delivers those messages."""
    topic = unique_topic("rt-drain")
    produce_numbers(stack, topic, 4)
    slow_ms = 10_000
    lambda_faults.set_latency(recorder.function, slow_ms)  # latency control, not a faked answer
    cfg = runtime_config(
        stack,
        recorder.function,
        topics=[topic],
        sink={"metadataFields": "", "batchMaxSize": 1, "maxInFlight": 4},
        runtime={"drainTimeoutSeconds": 1},
    )
    first = runtimes.start(cfg, name="slow")

    def inflight() -> int:
        _, text = first.probe("/metrics")
        line = next(x for x in text.splitlines() if x.startswith("lambdasink_inflight_invocations"))
        return int(float(line.split()[-1]))

    wait_for("4 invocations in flight", lambda: inflight() == 4, 30)
    assert first.probe("/readyz")[0] == 200
    first.send_signal(signal.SIGTERM)
    wait_for("/readyz to fail (draining) or the exit", lambda: first.probe("/readyz")[0] != 200, 10)
    assert first.wait(30) == 0
    # The gateway logs a call when it ends: none of the slow calls had ended when it exited.
    assert lambda_faults.requests(recorder.function) == []
    stderr = first.stderr()
    assert "drain timeout: nacking 0 waiting batches, cancelling 4 invocations" in stderr
    assert "stopped cleanly" in stderr

    lambda_faults.set_latency(recorder.function, 0)
    second = runtimes.start(cfg, name="restarted")
    wait_for("all 4 numbers", lambda: set(numbers(recorder)) == set(range(4)), 60)
    assert second.terminate() == 0

    def slow_calls_ended() -> bool:
        ended = [r for r in lambda_faults.requests(recorder.function) if r["durationMs"] >= slow_ms]
        return len(ended) == 4

    # Let the abandoned calls end before the test's function is removed.
    wait_for("the 4 abandoned calls to end", slow_calls_ended, slow_ms / 1000 + 30)


def test_topic_unload_mid_stream_loses_nothing(
    stack: Stack, runtimes: Runtimes, recorder: Recorder, lambda_faults: LambdaFaults
) -> None:
    """The broker unloads the topic (as on a bundle move or a broker restart): the consumer is
    disconnected and reconnects by itself; the process stays ready and every number arrives."""
    topic, cfg = setup(stack, recorder, lambda_faults)
    proc = runtimes.start(cfg)
    local = topic.rsplit("/", 1)[1]
    for part in (N // 4, N // 2):

        def reached(p: int = part) -> bool:
            return len(numbers(recorder)) >= p

        wait_for(f"{part} numbers", reached, 90, every=0.05)
        status, body = admin(stack, "PUT", f"/admin/v2/persistent/public/default/{local}/unload")
        assert status in (200, 204), body
    assert len(numbers(recorder)) < N, "the stream ended before the unloads; nothing was tested"
    wait_for(f"all {N} numbers", lambda: set(numbers(recorder)) == set(range(N)), 120, every=0.25)
    sub = cfg["pulsar"]["subscriptionName"]
    wait_for("an empty backlog", lambda: backlog(stack, topic, sub) == 0, 60)
    seen = numbers(recorder)
    print(f"two unloads: {sum(seen.values()) - N} duplicates")
    assert proc.probe("/readyz")[0] == 200
    assert proc.terminate() == 0
