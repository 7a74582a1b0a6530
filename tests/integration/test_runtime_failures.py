"""Failed invocations end in negative acks, redelivery and the dead-letter topic; retriable
Lambda errors are retried; nothing is lost. The runtime runs as its own process.

The failing handler is real code run by AWS's runtime interface emulator (it raises, so Lambda
reports an Unhandled function error). Throttles (429 with retryAfterSeconds), 5xx and 413 are
injected by the Lambda gateway's fault control, because the real emulator cannot produce them;
an injected fault answers instead of the handler, which then never sees that call.
"""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any

import pulsar
import pytest
from runtime_support import (
    Runtimes,
    backlog,
    canonical,
    received_items,
    runtime_config,
    send,
    unique_topic,
    v2_item,
    wait_for,
    wait_items,
)
from tests.stack import LambdaFaults, LambdaFunctions, Recorder, Stack

pytestmark = pytest.mark.integration


def outcomes(lambda_faults: LambdaFaults, function: str) -> Counter[str]:
    return Counter(r["outcome"] for r in lambda_faults.requests(function))


def produce(client: Any, topic: str, values: list[bytes]) -> list[Any]:
    producer = client.create_producer(topic)
    sent = [send(producer, topic, v, properties={"n": str(i)}) for i, v in enumerate(values)]
    producer.close()
    return sent


def test_failing_handler_is_redelivered_then_dead_lettered(
    stack: Stack,
    client: Any,
    runtimes: Runtimes,
    lambda_functions: LambdaFunctions,
    lambda_faults: LambdaFaults,
) -> None:
    function = lambda_functions.create("failing.handler", prefix="fail")
    topic = unique_topic("rt-fail")
    dlq = unique_topic("rt-fail-dlq")
    dlq_consumer = client.subscribe(
        dlq, "dlq-reader", initial_position=pulsar.InitialPosition.Earliest
    )
    values = [f"doomed-{i}".encode() for i in range(3)]
    produce(client, topic, values)
    max_redeliver = 2
    cfg = runtime_config(
        stack,
        function,
        topics=[topic],
        pulsar={
            "maxRedeliverCount": max_redeliver,
            "deadLetterTopic": dlq,
            "negativeAckRedeliveryDelayMs": 500,
        },
        sink={"batchMaxSize": 1, "invokeMaxRetries": 0},
    )
    proc = runtimes.start(cfg)

    dead = []
    for _ in values:
        msg = dlq_consumer.receive(60_000)
        dlq_consumer.acknowledge(msg)
        dead.append(msg)
    dlq_consumer.close()
    assert sorted(m.data() for m in dead) == sorted(values)
    for m in dead:  # the original properties travel with the message
        assert m.properties()["n"] == str(values.index(m.data()))
    print("dead-letter properties:", [m.properties() for m in dead])

    # Each message was delivered and invoked 1 + maxRedeliverCount times, never acknowledged
    # after a failure (the handler always raises: there is no success to acknowledge).
    seen = outcomes(lambda_faults, function)
    assert seen["FunctionError:Unhandled"] >= len(values) * (1 + max_redeliver), seen
    assert seen["Success"] == 0, seen
    sub = cfg["pulsar"]["subscriptionName"]
    wait_for("the source backlog to drain to the DLQ", lambda: backlog(stack, topic, sub) == 0)
    assert proc.alive()
    stderr = proc.stderr()
    assert "failed (function_error)" in stderr
    assert "DeliberateFailure" in stderr  # the handler's own exception, as Lambda reported it
    assert proc.terminate() == 0


def test_throttles_and_5xx_are_retried_and_nothing_is_lost(
    stack: Stack,
    client: Any,
    runtimes: Runtimes,
    recorder: Recorder,
    lambda_faults: LambdaFaults,
) -> None:
    # Injected: the emulator cannot throttle or fail with 5xx. Three 429s, then three 503s.
    lambda_faults.inject(recorder.function, "throttle", count=3, retryAfterSeconds=1)
    lambda_faults.inject(recorder.function, "server_error", count=3, status=503)
    topic = unique_topic("rt-retry")
    values = [f"kept-{i}".encode() for i in range(20)]
    sent = produce(client, topic, values)
    cfg = runtime_config(
        stack,
        recorder.function,
        topics=[topic],
        sink={"batchMaxSize": 5, "invokeMaxRetries": 10, "metadataFields": "messageId"},
    )
    proc = runtimes.start(cfg)
    items = wait_items(recorder, len(values))
    expected = [
        v2_item(s, base64.b64encode(v).decode(), "messageId")
        for s, v in zip(sent, values, strict=True)
    ]
    # Retried within the budget: each batch reached the handler once, so no duplicates.
    assert sorted(canonical(x) for x in items) == sorted(canonical(x) for x in expected)
    sub = cfg["pulsar"]["subscriptionName"]
    wait_for("an empty backlog", lambda: backlog(stack, topic, sub) == 0)  # every answer is in
    seen = outcomes(lambda_faults, recorder.function)
    assert seen["TooManyRequestsException(injected)"] == 3, seen
    assert seen["ServiceException(injected)"] == 3, seen
    assert seen["Success"] == len(recorder.events()), seen
    _, metrics = proc.probe("/metrics")
    retried = [line for line in metrics.splitlines() if line.startswith("lambdasink_invoke_retr")]
    print("\n".join(retried))
    assert any('"throttled"' in line for line in retried), metrics
    assert any('"server_error"' in line for line in retried), metrics
    assert proc.terminate() == 0


def test_5xx_beyond_the_retry_budget_is_nacked_and_redelivered(
    stack: Stack,
    client: Any,
    runtimes: Runtimes,
    recorder: Recorder,
    lambda_faults: LambdaFaults,
) -> None:
    # Injected (the emulator cannot return a 500): four in a row, with one retry per delivery,
    # so the batch is negatively acknowledged twice before a redelivery gets through.
    lambda_faults.inject(recorder.function, "server_error", count=4, status=500)
    topic = unique_topic("rt-nack")
    values = [f"again-{i}".encode() for i in range(5)]
    produce(client, topic, values)
    cfg = runtime_config(
        stack,
        recorder.function,
        topics=[topic],
        sink={"batchMaxSize": 10, "batchMaxTimeMs": 300, "invokeMaxRetries": 1},
        pulsar={"negativeAckRedeliveryDelayMs": 500},
    )
    proc = runtimes.start(cfg)
    items = wait_items(recorder, len(values))
    wait_for(
        "an empty backlog", lambda: backlog(stack, topic, cfg["pulsar"]["subscriptionName"]) == 0
    )
    got = Counter(base64.b64decode(x["value"]) for x in received_items(recorder))
    assert set(got) == set(values), got
    assert all(c == 1 for c in got.values()), got  # failed calls never reached the handler
    assert len(items) == len(values)
    assert outcomes(lambda_faults, recorder.function)["ServiceException(injected)"] == 4
    assert "failed (server_error)" in proc.stderr()
    assert proc.terminate() == 0


def test_413_splits_the_batch_in_halves(
    stack: Stack,
    client: Any,
    runtimes: Runtimes,
    recorder: Recorder,
    lambda_faults: LambdaFaults,
) -> None:
    # Injected: a 413 for a payload under the limit (the gateway's real 413 needs > 6 MB).
    lambda_faults.inject(recorder.function, "too_large", count=1)
    topic = unique_topic("rt-413")
    values = [f"half-{i}".encode() for i in range(4)]
    produce(client, topic, values)
    cfg = runtime_config(
        stack,
        recorder.function,
        topics=[topic],
        sink={"batchMaxSize": 4, "batchMaxTimeMs": 2000, "metadataFields": ""},
    )
    runtimes.start(cfg)
    wait_items(recorder, len(values))
    batches = sorted([base64.b64decode(x["value"]) for x in e] for e in recorder.events())
    assert batches == [values[:2], values[2:]]


def test_oversize_record_is_dead_lettered_and_its_neighbours_delivered_async(
    stack: Stack,
    client: Any,
    runtimes: Runtimes,
    recorder: Recorder,
    lambda_faults: LambdaFaults,
) -> None:
    """Asynchronous invocation (InvocationType Event, 1 MB payload quota): a record whose JSON
    alone exceeds the quota can never be sent, so it is nacked until the dead-letter policy takes
    it; a record above batchMaxBytesSize but within the quota goes alone."""
    topic = unique_topic("rt-oversize")
    dlq = unique_topic("rt-oversize-dlq")
    dlq_consumer = client.subscribe(
        dlq, "dlq-reader", initial_position=pulsar.InitialPosition.Earliest
    )
    big = bytes(range(256)) * 3125  # 800,000 bytes: 1,066,668 in base64 > 1,048,576
    medium = bytes(range(256)) * 1200  # 307,200 bytes: 409,600 in base64 > 262,144 (default)
    values = [b"small-a", big, medium, b"small-z"]
    sent = produce(client, topic, values)
    cfg = runtime_config(
        stack,
        recorder.function,
        topics=[topic],
        pulsar={"maxRedeliverCount": 1, "deadLetterTopic": dlq},
        sink={"synchronousInvocation": False, "metadataFields": "messageId"},
    )
    proc = runtimes.start(cfg)
    dead = dlq_consumer.receive(60_000)
    dlq_consumer.acknowledge(dead)
    dlq_consumer.close()
    assert dead.data() == big

    delivered = [(s, v) for s, v in zip(sent, values, strict=True) if v is not big]
    items = wait_items(recorder, len(delivered))
    expected = [v2_item(s, base64.b64encode(v).decode(), "messageId") for s, v in delivered]
    assert sorted(canonical(x) for x in items) == sorted(canonical(x) for x in expected)
    medium_item = next(x for x in expected if x["value"] == base64.b64encode(medium).decode())
    assert [medium_item] in recorder.events()  # alone in its invocation
    requests = lambda_faults.requests(recorder.function)
    assert requests and {r["invocationType"] for r in requests} == {"Event"}
    stderr = proc.stderr()
    assert "exceeds the invocation limit of 1048576 bytes" in stderr
    sub = cfg["pulsar"]["subscriptionName"]
    wait_for("an empty backlog", lambda: backlog(stack, topic, sub) == 0)
    assert proc.terminate() == 0
