"""Inputs of the runtime process: several topics (one partitioned), a topics pattern, and a Shared
subscription split between two runtime processes (two pods of one sink)."""

from __future__ import annotations

import base64
import re
from collections import Counter
from typing import Any

import pytest
from runtime_support import (
    Runtimes,
    admin,
    canonical,
    create_topic,
    received_items,
    runtime_config,
    send,
    unique,
    unique_topic,
    v2_item,
    wait_for,
    wait_items,
)
from tests.stack import LambdaFaults, LambdaFunctions, Recorder, Stack

pytestmark = pytest.mark.integration


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_several_topics_one_of_them_partitioned(
    stack: Stack, client: Any, runtimes: Runtimes, recorder: Recorder
) -> None:
    plain = unique_topic("rt-multi-plain")
    parted = unique_topic("rt-multi-parted")
    create_topic(stack, parted, partitions=3)
    expected = []
    p = client.create_producer(plain)
    for i in range(3):
        body = f"plain-{i}".encode()
        s = send(p, plain, body, partition_key=f"pk{i}", properties={"i": str(i)})
        expected.append(v2_item(s, b64(body)))
    p.close()
    p = client.create_producer(parted)
    for i in range(9):
        body = f"parted-{i}".encode()
        s = send(p, parted, body, partition_key=f"key-{i}", event_timestamp=1_700_000_000_000 + i)
        expected.append(v2_item(s, b64(body)))
    p.close()
    assert len({x["partitionIndex"] for x in expected if "partitionIndex" in x}) > 1

    runtimes.start(runtime_config(stack, recorder.function, topics=[plain, parted]))
    items = wait_items(recorder, len(expected))
    assert sorted(canonical(x) for x in items) == sorted(canonical(x) for x in expected)


def test_topics_pattern_takes_matching_topics_only(
    stack: Stack, client: Any, runtimes: Runtimes, recorder: Recorder
) -> None:
    tag = unique("rtpat")
    matching = [f"persistent://public/default/{tag}-orders-{n}" for n in ("a", "b")]
    other = f"persistent://public/default/{tag}x-elsewhere"
    pattern = f"persistent://public/default/{re.escape(tag)}-orders-.*"
    expected = []
    for topic in [*matching, other]:
        p = client.create_producer(topic)
        for i in range(2):
            body = f"{topic.rsplit('/', 1)[1]}-{i}".encode()
            s = send(p, topic, body, properties={"i": str(i)})
            if topic != other:
                expected.append(v2_item(s, b64(body), "topic,sequence,properties"))
        p.close()

    cfg = runtime_config(
        stack,
        recorder.function,
        topics_pattern=pattern,
        sink={"metadataFields": "topic,sequence,properties"},
    )
    proc = runtimes.start(cfg)
    wait_items(recorder, len(expected))
    assert proc.terminate() == 0  # drained: whatever it had received has been delivered
    items = received_items(recorder)
    assert sorted(canonical(x) for x in items) == sorted(canonical(x) for x in expected)
    sub = cfg["pulsar"]["subscriptionName"]
    for topic in [*matching, other]:
        local = topic.rsplit("/", 1)[1]
        status, stats = admin(stack, "GET", f"/admin/v2/persistent/public/default/{local}/stats")
        assert status == 200, stats
        assert (sub in stats["subscriptions"]) is (topic != other), (topic, stats)


def test_shared_subscription_split_between_two_processes(
    stack: Stack, client: Any, runtimes: Runtimes, lambda_functions: LambdaFunctions
) -> None:
    topic = unique_topic("rt-shared")
    create_topic(stack, topic)
    subscription = unique("shared")
    recorders = [lambda_functions.recorder(), lambda_functions.recorder()]
    procs = [
        runtimes.process(
            runtime_config(
                stack,
                rec.function,  # one function per process: the recorder shows who sent what
                topics=[topic],
                subscription=subscription,
                pulsar={"subscriptionType": "Shared", "receiverQueueSize": 10},
                sink={"batchMaxSize": 5, "batchMaxTimeMs": 100, "metadataFields": ""},
            ),
            name=f"pod{n}",
        ).start()
        for n, rec in enumerate(recorders)
    ]
    for proc in procs:
        proc.wait_ready()

    n = 400
    p = client.create_producer(topic, block_if_queue_full=True, batching_enabled=False)
    for i in range(n):
        p.send_async(str(i).encode(), None)
    p.flush()
    p.close()

    def counts() -> list[Counter[int]]:
        return [
            Counter(int(base64.b64decode(x["value"])) for x in received_items(rec))
            for rec in recorders
        ]

    wait_for(
        f"all {n} numbers across both processes",
        lambda: set().union(*counts()) == set(range(n)),
        90,
        every=0.25,
    )
    per_process = counts()
    total = sum(per_process, Counter())
    print(f"split: {[sum(c.values()) for c in per_process]} of {n}")
    assert all(c for c in per_process), "one process received nothing"
    assert set(total) == set(range(n))
    assert sum(total.values()) == n, "a message went to both processes without any failure"
    for proc in procs:
        assert proc.terminate() == 0


def test_key_shared_invokes_each_key_in_order(
    stack: Stack,
    client: Any,
    runtimes: Runtimes,
    recorder: Recorder,
    lambda_faults: LambdaFaults,
) -> None:
    """Key_Shared (like Failover and Exclusive) promises per-key order: the runtime never has two
    invocations with the same key in flight, so the handler sees each key's messages in order
    although up to maxInFlight invocations run at once."""
    topic = unique_topic("rt-keyed")
    keys = [f"key-{k}" for k in range(8)]
    n = 120
    p = client.create_producer(topic, block_if_queue_full=True, batching_enabled=False)
    for i in range(n):
        p.send_async(str(i).encode(), None, partition_key=keys[i % len(keys)])
    p.flush()
    p.close()
    lambda_faults.set_latency(recorder.function, 15)  # latency control: overlapping calls
    cfg = runtime_config(
        stack,
        recorder.function,
        topics=[topic],
        pulsar={"subscriptionType": "Key_Shared"},
        sink={
            "batchMaxSize": 2,
            "batchMaxTimeMs": 50,
            "maxInFlight": 4,
            "metadataFields": "key",
        },
    )
    runtimes.start(cfg)
    items = wait_items(recorder, n)  # in the order the handler ran
    per_key: dict[str, list[int]] = {k: [] for k in keys}
    for item in items:
        per_key[item["key"]].append(int(base64.b64decode(item["value"])))
    for k, got in per_key.items():
        assert got == [i for i in range(n) if keys[i % len(keys)] == k], k
    print(f"{len(recorder.events())} invocations for {n} messages")
