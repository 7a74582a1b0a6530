"""`PulsarSource` on pulsar-client's public API only (pulsar_compat's fallback), on the real broker.

The fallback is forced (the constructor flag, or LAMBDASINK_PULSAR_API=public as the runtime
process would get it). Delivery, acks and nacks must behave as on the fast path
(test_consumer_receive.py), and every schema case must give the same records on both paths:
versioned Avro (two versions), JSON, STRING, raw bytes, and messages without a schema version
(the broker's REST producer), whose latest schema the fallback asks the admin REST API for.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pulsar
import pytest
from pulsar.schema import AvroSchema, Integer, JsonSchema, Long, String
from pulsar.schema import Record as PulsarRecord
from runtime_support import (
    produce_strings as produce,
)
from runtime_support import (
    pulsar_client,
    pulsar_source,
    rest_produce,
    unique,
    unique_topic,
)
from tests.stack import Stack

from lambdasink_runtime import pulsar_compat
from lambdasink_runtime.config import PulsarConfig, SinkConfig
from lambdasink_runtime.consumer import PulsarSource
from lambdasink_runtime.record import Record, Rejected
from lambdasink_runtime.schemas import SchemaRegistry
from lambdasink_runtime.serializer import Serializer

pytestmark = pytest.mark.integration

VALUES = Serializer(
    SinkConfig.from_mapping(
        {"awsRegion": "r", "lambdaFunctionName": "f", "payloadFormat": "V2", "metadataFields": ""}
    )
)


class Order(PulsarRecord):  # type: ignore[misc]
    id = String()
    quantity = Integer()


def order_v2() -> type[PulsarRecord]:
    """Version 2 of `Order` (same record name; an added field with a default, compatible)."""

    class Order(PulsarRecord):  # type: ignore[misc]
        id = String()
        quantity = Integer()
        placed = Long(required_default=True)

    return Order


def source(
    stack: Stack, topics: list[str], *, public_api: bool | None = True, **cfg: Any
) -> PulsarSource:
    return pulsar_source(stack, topics, public_api=public_api, **cfg)


def drain(src: PulsarSource, n: int, max_records: int) -> list[Record]:
    got: list[Record] = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        batch = src.receive(max_records, 0.5)
        assert all(isinstance(r, Record) for r in batch), batch
        got.extend(r for r in batch if isinstance(r, Record))
    return got


@pytest.fixture
def client(stack: Stack) -> Iterator[Any]:
    c = pulsar_client(stack)
    yield c
    c.close()


def test_the_fallback_is_what_runs_when_forced(
    stack: Stack, client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The flag and the environment variable both switch to the public wrappers, whose
    `pulsar.Message` is then each record's handle; unforced, the tested client takes the fast
    path (the import check accepts its internals). The log says why the public API is used."""
    topic = unique_topic("pub-which")
    produce(client, topic, ["x"], batching=False)
    assert pulsar_compat.PRIVATE_API_PROBLEM is None
    monkeypatch.setenv(pulsar_compat.API_ENV, "public")
    reasons = {True: "asked for by the caller", None: "LAMBDASINK_PULSAR_API=public"}
    for public_api, private in ((True, False), (None, False), (False, True)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="lambdasink.consumer"):
            src = source(stack, [topic], public_api=public_api)
        said = [m for m in caplog.messages if "public API only" in m]
        if private:
            assert said == []
        else:
            assert len(said) == 1 and reasons[public_api] in said[0]
        try:
            (r,) = drain(src, 1, 10)
            assert src._access.private is private
            assert isinstance(r.handle, pulsar.Message) is not private
            assert r.value == b"x"
        finally:
            src.close()


def test_delivery_in_order_with_leftovers_then_acks_hold(stack: Stack, client: Any) -> None:
    """max_records 7 against full batch receives: every message once, in order; acked ones are
    not redelivered to the next consumer of the subscription, the unacked ones are."""
    topic = unique_topic("pub-order")
    values = [f"m{i:04d}" for i in range(300)]
    produce(client, topic, values)
    sub = unique("pub-order")
    src = source(stack, [topic], subscription_name=sub)
    try:
        time.sleep(0.5)
        got = drain(src, len(values), 7)
        assert [r.value.decode() for r in got] == values
        assert all(r.schema is not None and r.schema.type == "STRING" for r in got)
        assert src.receive(7, 0.3) == []
        for r in got[:200]:
            src.ack(r)
    finally:
        src.close()
    again = source(stack, [topic], subscription_name=sub)
    try:
        rest = drain(again, 100, 1000)
        assert sorted(r.value.decode() for r in rest) == values[200:]
        assert again.receive(1000, 0.5) == []
        for r in rest:
            again.ack(r)
    finally:
        again.close()


def test_nack_redelivers(stack: Stack, client: Any) -> None:
    topic = unique_topic("pub-nack")
    produce(client, topic, ["n0", "n1", "n2"], batching=False)
    src = source(stack, [topic], negative_ack_redelivery_delay_ms=200)
    try:
        got = drain(src, 3, 100)
        assert [r.value for r in got] == [b"n0", b"n1", b"n2"]
        src.nack(got[1])
        src.ack(got[0])
        src.ack(got[2])
        redelivered = drain(src, 1, 100)
        assert [r.value for r in redelivered] == [b"n1"]
        src.ack(redelivered[0])
        assert src.receive(100, 0.5) == []
    finally:
        src.close()


def schema_topics(stack: Stack, client: Any) -> list[str]:
    """One topic per schema case, holding the messages `EXPECTED` lists."""
    avro, json_t, raw, rest = (unique_topic(f"pub-{k}") for k in ("avro", "json", "raw", "rest"))
    p = client.create_producer(avro, schema=AvroSchema(Order))
    p.send(Order(id="a", quantity=1))
    p.close()
    v2 = order_v2()
    p = client.create_producer(avro, schema=AvroSchema(v2))
    p.send(v2(id="b", quantity=2, placed=1698617628123))
    p.close()
    p = client.create_producer(json_t, schema=JsonSchema(Order))
    p.send(Order(id="j", quantity=7))
    p.close()
    p = client.create_producer(raw)
    p.send(b"\x00\xff")
    p.close()
    rest_produce(stack, rest, "INT32", [{"payload": "42"}])  # no schema version on the message
    return [avro, json_t, raw, rest]


EXPECTED = {
    "avro": [
        ("AVRO", {"id": "a", "quantity": 1}),
        ("AVRO", {"id": "b", "quantity": 2, "placed": 1698617628123}),
    ],
    "json": [("JSON", {"id": "j", "quantity": 7})],
    "raw": [(None, "AP8=")],  # base64
    "rest": [("INT32", 42)],
}


def decoded(records: list[Record]) -> dict[str, list[tuple[str | None, Any]]]:
    """Per schema case: (schema type, the V2 item's value) in publish order."""
    out: dict[str, list[tuple[str | None, Any]]] = {}
    for r in sorted(records, key=lambda r: (r.topic, r.ledger_id, r.entry_id)):
        kind = r.topic.rsplit("/", 1)[1].split("-")[1]
        value = json.loads(VALUES.v2_item(r))["value"]
        out.setdefault(kind, []).append((r.schema.type if r.schema else None, value))
    return out


def test_schemas_decode_the_same_on_both_paths(stack: Stack, client: Any) -> None:
    topics = schema_topics(stack, client)
    results = {}
    for public_api in (True, False):
        src = source(stack, topics, public_api=public_api)
        try:
            got = drain(src, 5, 100)
            results[public_api] = decoded(got)
            for r in got:
                src.ack(r)
        finally:
            src.close()
    assert results[True] == EXPECTED
    assert results[False] == EXPECTED


def test_without_an_admin_url_unversioned_messages_go_as_bytes(
    stack: Stack, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The fallback's latest-schema lookup needs the admin REST API: without a registry the
    message is passed as bytes (base64 in JSON), and the log says why, once per topic."""
    topic = unique_topic("pub-nolatest")
    rest_produce(stack, topic, "INT32", [{"payload": "42"}, {"payload": "43"}])
    src = source(stack, [topic], registry=False)
    try:
        with caplog.at_level(logging.INFO, logger="lambdasink.consumer"):
            got = drain(src, 2, 100)
        assert [(r.schema, VALUES.v2_item(r)) for r in got] == [
            (None, b'{"value":"AAAAKg=="}'),
            (None, b'{"value":"AAAAKw=="}'),
        ]
        warnings = [m for m in caplog.messages if "no admin URL" in m]
        assert len(warnings) == 1 and topic in warnings[0]
    finally:
        src.close()


def test_no_latest_schema_is_rejected_when_the_registry_fails(stack: Stack, client: Any) -> None:
    """An unreachable admin API makes an unversioned message `Rejected` (then nacked by the
    pipeline), as a failing lookup does on the fast path."""
    topic = unique_topic("pub-badadmin")
    rest_produce(stack, topic, "INT32", [{"payload": "1"}])
    cfg = PulsarConfig(
        service_url=stack.pulsar_service_url,
        topics=(topic,),
        subscription_name=unique("pub-bad"),
        subscription_type="Exclusive",
        initial_position="Earliest",
    )
    registry = SchemaRegistry("http://127.0.0.1:9", timeout_s=2)  # discard port: refused
    src = PulsarSource(cfg, registry, public_api=True)
    try:
        deadline = time.monotonic() + 30
        items: list[Record | Rejected] = []
        while not items and time.monotonic() < deadline:
            items = src.receive(10, 0.5)
        (item,) = items
        assert isinstance(item, Rejected)
        assert "unreachable" in str(item.error)
        src.nack(item.record)
    finally:
        src.close()
