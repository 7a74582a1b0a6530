"""`PulsarSource.receive` against the stack's real broker: batch receive and its leftovers.

The contract the pipeline relies on: block up to `timeout_s` for a first message, return at
most `max_records`, and hand over every message the client received exactly once (what one
`batch_receive` brought beyond `max_records` is returned by the next call). Acks and nacks go
through the raw client message kept as the record's handle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from runtime_support import (
    create_topic,
    pulsar_client,
    unique,
    unique_topic,
)
from runtime_support import (
    produce_strings as produce,
)
from runtime_support import pulsar_source as source
from tests.stack import Stack

from lambdasink_runtime.consumer import PulsarSource
from lambdasink_runtime.record import Record, Rejected

pytestmark = pytest.mark.integration

#: Far above any receive on an idle local broker; only there so that a hang fails the test.
GENEROUS_S = 10.0


def records(items: list[Record | Rejected]) -> list[Record]:
    assert all(isinstance(i, Record) for i in items), items
    return [i for i in items if isinstance(i, Record)]


def drain(src: PulsarSource, n: int, max_records: int) -> tuple[list[Record], list[int]]:
    """Receive until `n` records came (or a generous deadline); the records and call sizes."""
    got: list[Record] = []
    sizes: list[int] = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        batch = records(src.receive(max_records, 0.5))
        sizes.append(len(batch))
        got.extend(batch)
    return got, sizes


@pytest.fixture
def client(stack: Stack) -> Iterator[Any]:
    c = pulsar_client(stack)
    yield c
    c.close()


@pytest.mark.parametrize("receiver_queue_size", [1000, 5])
def test_small_receives_return_every_message_once_in_order(
    stack: Stack, client: Any, receiver_queue_size: int
) -> None:
    """max_records 7 against a queue that holds far more: leftovers come first next time.
    (A receiver queue of 5 caps each batch_receive at 5.)"""
    topic = unique_topic("rx-order")
    values = [f"m{i:04d}" for i in range(600)]
    produce(client, topic, values)
    src = source(stack, [topic], receiver_queue_size=receiver_queue_size)
    try:
        time.sleep(0.5)  # the client's queue fills: batch_receive hands over whole batches
        got, sizes = drain(src, len(values), 7)
        assert max(sizes) <= 7
        assert [r.value.decode() for r in got] == values  # no loss, no duplicate, in order
        assert len({r.message_id for r in got}) == len(values)
        assert all(r.topic == topic and r.schema and r.schema.type == "STRING" for r in got)
        assert src.receive(7, 0.3) == []
        for r in got:
            src.ack(r)
    finally:
        src.close()


def test_acked_through_the_handle_are_not_redelivered(stack: Stack, client: Any) -> None:
    topic = unique_topic("rx-ack")
    values = [f"a{i}" for i in range(300)]
    produce(client, topic, values)
    sub = unique("rx-ack")
    src = source(stack, [topic], subscription_name=sub)
    try:
        got, _ = drain(src, len(values), 64)
        assert sorted(r.value.decode() for r in got) == sorted(values)
        for r in got[:200]:
            src.ack(r)
    finally:
        src.close()  # the other 100 were received but not acked: the broker keeps them
    again = source(stack, [topic], subscription_name=sub)
    try:
        time.sleep(0.5)
        rest, _ = drain(again, 100, 1000)
        assert sorted(r.value.decode() for r in rest) == sorted(values[200:])
        assert again.receive(1000, 0.5) == []
        for r in rest:
            again.ack(r)
    finally:
        again.close()


def test_nack_through_the_handle_redelivers(stack: Stack, client: Any) -> None:
    topic = unique_topic("rx-nack")
    produce(client, topic, ["n0", "n1", "n2"], batching=False)
    src = source(stack, [topic], negative_ack_redelivery_delay_ms=200)
    try:
        got, _ = drain(src, 3, 100)
        assert [r.value for r in got] == [b"n0", b"n1", b"n2"]
        src.nack(got[1])
        for r in (got[0], got[2]):
            src.ack(r)
        redelivered, _ = drain(src, 1, 100)
        assert [r.value for r in redelivered] == [b"n1"]
        src.ack(redelivered[0])
    finally:
        src.close()


def test_idle_receive_returns_empty_within_its_timeout(stack: Stack, client: Any) -> None:
    topic = unique_topic("rx-idle")
    create_topic(stack, topic)
    src = source(stack, [topic])
    try:
        t0 = time.monotonic()
        assert src.receive(100, 0.3) == []
        assert time.monotonic() - t0 < GENEROUS_S
    finally:
        src.close()


def test_receive_blocks_for_the_first_message(stack: Stack, client: Any) -> None:
    topic = unique_topic("rx-block")
    create_topic(stack, topic)
    src = source(stack, [topic])
    result: list[Record | Rejected] = []
    try:
        waiter = threading.Thread(target=lambda: result.extend(src.receive(100, GENEROUS_S)))
        waiter.start()
        time.sleep(0.5)
        produce(client, topic, ["late"], batching=False)
        waiter.join(GENEROUS_S + 5)
        assert not waiter.is_alive()
        assert [r.value for r in records(result)] == [b"late"]
    finally:
        src.close()


def test_many_topics_partitions_and_schemas_in_one_consumer(stack: Stack, client: Any) -> None:
    """A multi-topic consumer: batches mix topics, partitions, and a topic without schema."""
    parted = unique_topic("rx-parted")
    create_topic(stack, parted, partitions=2)
    plain = unique_topic("rx-plain")
    raw_topic = unique_topic("rx-bytes")
    produce(client, parted, [f"p{i}" for i in range(200)])
    produce(client, plain, [f"s{i}" for i in range(200)])
    producer = client.create_producer(raw_topic, batching_enabled=True)
    for i in range(200):
        producer.send_async(f"b{i}".encode(), None)
    producer.flush()
    producer.close()
    src = source(stack, [parted, plain, raw_topic])
    try:
        time.sleep(0.5)
        got, sizes = drain(src, 600, 33)
        assert max(sizes) <= 33
        assert len({r.message_id + r.topic for r in got}) == 600
        by_prefix: dict[str, list[Record]] = {"p": [], "s": [], "b": []}
        for r in got:
            by_prefix[r.value.decode()[0]].append(r)
        assert sorted(r.value.decode() for r in by_prefix["p"]) == sorted(
            f"p{i}" for i in range(200)
        )
        assert {r.partition for r in by_prefix["p"]} == {0, 1}
        assert all(r.topic.startswith(parted + "-partition-") for r in by_prefix["p"])
        assert [r.value.decode() for r in by_prefix["s"]] == [f"s{i}" for i in range(200)]
        assert [r.value.decode() for r in by_prefix["b"]] == [f"b{i}" for i in range(200)]
        for r in by_prefix["p"] + by_prefix["s"]:
            assert r.schema is not None and r.schema.type == "STRING"
        assert all(r.schema is None for r in by_prefix["b"])
        assert all(r.partition == -1 for r in by_prefix["s"] + by_prefix["b"])
        assert src.receive(33, 0.3) == []
    finally:
        src.close()
