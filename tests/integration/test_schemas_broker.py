"""The schema registry client and the serializer against the real broker of the local stack.

Messages are produced with the Python client's Avro/JSON schemas, consumed as raw bytes (as the
runtime does), and decoded with the writer schema fetched by version from the admin REST API.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pulsar
import pytest
from pulsar.schema import AvroSchema, Integer, JsonSchema, Long, Record, String

from lambdasink_runtime.config import SinkConfig
from lambdasink_runtime.errors import SchemaRegistryError
from lambdasink_runtime.record import Record as SinkRecord
from lambdasink_runtime.record import SchemaInfo
from lambdasink_runtime.schemas import SchemaRegistry, parse_schema_version
from lambdasink_runtime.serializer import Serializer

pytestmark = pytest.mark.integration

SERIALIZER = Serializer(
    SinkConfig.from_mapping(
        {"awsRegion": "r", "lambdaFunctionName": "f", "payloadFormat": "V2", "metadataFields": ""}
    )
)


class Order(Record):  # type: ignore[misc]
    id = String()
    quantity = Integer()


def order_v2() -> type[Record]:
    """Version 2 of `Order` (same record name; an added field with a default, FULL-compatible)."""

    class Order(Record):  # type: ignore[misc]
        id = String()
        quantity = Integer()
        placed = Long(required_default=True)

    return Order


def unique(prefix: str) -> str:
    return f"persistent://public/default/{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(pulsar_service_url: str) -> Iterator[Any]:
    c = pulsar.Client(pulsar_service_url, operation_timeout_seconds=30)
    yield c
    c.close()


def consume_raw(client: Any, topic: str, count: int) -> list[Any]:
    consumer = client.subscribe(
        topic, "schemas-test", initial_position=pulsar.InitialPosition.Earliest
    )
    try:
        out = []
        for _ in range(count):
            msg = consumer.receive(timeout_millis=15_000)
            consumer.acknowledge(msg)
            out.append(msg)
        return out
    finally:
        consumer.close()


def sink_record(msg: Any, schema: SchemaInfo) -> SinkRecord:
    mid = msg.message_id()
    return SinkRecord(
        topic=msg.topic_name(),
        value=msg.data(),
        ledger_id=mid.ledger_id(),
        entry_id=mid.entry_id(),
        partition=mid.partition(),
        batch_index=mid.batch_index(),
        schema=schema,
    )


def test_avro_writer_schema_fetched_by_version_and_decoded(
    client: Any, pulsar_admin_url: str
) -> None:
    topic = unique("schemas-avro")
    producer = client.create_producer(topic, schema=AvroSchema(Order))
    producer.send(Order(id="o-1", quantity=3))
    producer.close()
    (msg,) = consume_raw(client, topic, 1)

    registry = SchemaRegistry(pulsar_admin_url)
    version = msg._message.int_schema_version()
    assert version == 0
    assert parse_schema_version(msg.schema_version()) == version  # the client's str form
    info = registry.get(topic, msg.schema_version())
    assert info.type == "AVRO"
    assert [f["name"] for f in json.loads(info.definition)["fields"]] == ["id", "quantity"]

    assert SERIALIZER.v2_item(sink_record(msg, info)) == b'{"value":{"id":"o-1","quantity":3}}'

    assert registry.get(topic, 0) is info  # cached: the broker is asked once
    assert registry.fetches == 1


def test_two_schema_versions_each_decode_with_their_own_definition(
    client: Any, pulsar_admin_url: str
) -> None:
    topic = unique("schemas-evolve")
    p1 = client.create_producer(topic, schema=AvroSchema(Order))
    p1.send(Order(id="a", quantity=1))
    p1.close()
    v2 = order_v2()
    p2 = client.create_producer(topic, schema=AvroSchema(v2))
    p2.send(v2(id="b", quantity=2, placed=1698617628123))
    p2.close()
    first, second = consume_raw(client, topic, 2)

    registry = SchemaRegistry(pulsar_admin_url, max_entries=1)
    versions = [m._message.int_schema_version() for m in (first, second)]
    assert versions == [0, 1]
    items = [
        SERIALIZER.v2_item(sink_record(m, registry.get(topic, v)))
        for m, v in zip((first, second), versions, strict=True)
    ]
    assert items == [
        b'{"value":{"id":"a","quantity":1}}',
        b'{"value":{"id":"b","quantity":2,"placed":1698617628123}}',
    ]
    registry.get(topic, 0)  # evicted by the bound of one entry: asked again
    assert registry.fetches == 3


def test_partitioned_topic_schema_is_the_topics(client: Any, pulsar_admin_url: str) -> None:
    topic = unique("schemas-part")
    local = topic.rsplit("/", 1)[1]
    request = urllib.request.Request(
        f"{pulsar_admin_url}/admin/v2/persistent/public/default/{local}/partitions",
        data=b"2",
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=15) as resp:
        assert resp.status in (200, 204)
    producer = client.create_producer(topic, schema=JsonSchema(Order))
    for i in range(4):
        producer.send(Order(id=f"p{i}", quantity=i), partition_key=f"k{i}")
    producer.close()
    msgs = consume_raw(client, topic, 4)

    registry = SchemaRegistry(pulsar_admin_url)
    seen = set()
    for msg in msgs:
        assert "-partition-" in msg.topic_name()
        info = registry.get(msg.topic_name(), msg._message.int_schema_version())
        assert info.type == "JSON"
        value = json.loads(SERIALIZER.v2_item(sink_record(msg, info)))["value"]
        seen.add((value["id"], value["quantity"]))
    assert seen == {(f"p{i}", i) for i in range(4)}
    assert registry.fetches == 1  # one schema for every partition


def test_unknown_version_is_not_retriable(client: Any, pulsar_admin_url: str) -> None:
    topic = unique("schemas-404")
    producer = client.create_producer(topic, schema=AvroSchema(Order))
    producer.send(Order(id="x", quantity=0))
    producer.close()
    with pytest.raises(SchemaRegistryError) as info:
        SchemaRegistry(pulsar_admin_url).get(topic, 42)
    assert info.value.retriable is False
    assert "HTTP 404" in str(info.value)
