"""lambda-sink's own dead-letter producer: works on every subscription type (Pulsar's consumer
dead-letter policy skips Exclusive and Failover) and says why a record was given up.

The copy keeps the original's value bytes, key, properties, event time and schema (the producer
is created with the writer schema the record was decoded with, so consumers of the dead-letter
topic decode it as they would the source); `failure.dead_letter_properties` adds the reason.
A send returns only once the broker has persisted the copy; only then does the pipeline ack
the original. Before the first copy goes to a topic, a durable subscription
(`lambdasink-dead-letters`) is created on it, as Pulsar's own DLQ producer does with
`initialSubscriptionName`: without one the broker may trim the copies or delete the topic.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pulsar
from pulsar.schema import Schema

from .attempts import retain_from_start
from .errors import PulsarError
from .failure import Failure, dead_letter_properties
from .pulsar_compat import schema_info as pulsar_schema_info
from .pulsar_compat import schema_type
from .record import Record, SchemaInfo

log = logging.getLogger("lambdasink.deadletter")

DEAD_LETTER_SUBSCRIPTION = "lambdasink-dead-letters"

#: Schema types the copy is produced with as such; others (KEY_VALUE, AUTO_*) go as bytes.
_SCHEMA_TYPES = {
    name: kind
    for name in (
        "STRING",
        "JSON",
        "AVRO",
        "PROTOBUF",
        "PROTOBUF_NATIVE",
        "BOOLEAN",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FLOAT",
        "DOUBLE",
        "DATE",
        "TIME",
        "TIMESTAMP",
        "INSTANT",
        "LOCAL_DATE",
        "LOCAL_TIME",
        "LOCAL_DATE_TIME",
    )
    if (kind := schema_type(name)) is not None
}


#: Schema types whose definition is a document (the rest are primitives: no definition).
_DOCUMENT_TYPES = frozenset({"JSON", "AVRO", "PROTOBUF", "PROTOBUF_NATIVE"})


class _Passthrough(Schema):  # type: ignore[misc]
    """A schema whose info is the record's writer schema and whose bytes pass unchanged."""

    def __init__(self, info: SchemaInfo) -> None:
        super().__init__(bytes, _SCHEMA_TYPES[info.type], None, info.name or "dlq")
        definition = info.definition if info.type in _DOCUMENT_TYPES else ""
        self._schema_info = pulsar_schema_info(info.type, info.name or "dlq", definition)

    def encode(self, obj: Any) -> bytes:
        return bytes(obj)

    def decode(self, data: bytes) -> bytes:
        return data


class DeadLetterProducer:
    """The pipeline's `DeadLetters`: one producer per (dead-letter topic, schema)."""

    def __init__(self, client: pulsar.Client, topic_for: Any, subscription: str) -> None:
        self._client = client
        self._topic_for = topic_for
        self._subscription = subscription
        self._producers: dict[tuple[str, str, str], pulsar.Producer] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deadletter")

    async def send(self, record: Record, failure: Failure, attempts: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._send, record, failure, attempts)

    def _send(self, record: Record, failure: Failure, attempts: int) -> None:
        topic = self._topic_for(record.topic)
        props = dict(record.properties)
        props.update(
            dead_letter_properties(
                topic=record.topic,
                message_id=record.message_id,
                attempts=attempts,
                failure=failure,
                subscription=self._subscription,
            )
        )
        kwargs: dict[str, Any] = {"properties": props}
        if record.key is not None:
            kwargs["partition_key"] = record.key
        if record.event_time_ms:
            kwargs["event_timestamp"] = record.event_time_ms
        try:
            self._producer(topic, record.schema).send(record.value, **kwargs)
        except pulsar.PulsarException as exc:
            raise PulsarError(f"cannot write to dead-letter topic {topic}: {exc}") from exc

    def _producer(self, topic: str, schema: SchemaInfo | None) -> pulsar.Producer:
        usable = schema is not None and schema.type in _SCHEMA_TYPES
        key = (
            topic,
            schema.type if usable and schema else "",
            schema.definition if usable and schema else "",
        )
        producer = self._producers.get(key)
        if producer is None:
            kwargs: dict[str, Any] = {"batching_enabled": False}
            if usable and schema is not None:
                kwargs["schema"] = _Passthrough(schema)
            if not any(k[0] == topic for k in self._producers):
                retain_from_start(self._client, topic, DEAD_LETTER_SUBSCRIPTION)
            producer = self._client.create_producer(topic, **kwargs)
            self._producers[key] = producer
            log.info("dead-letter producer on %s (schema %s)", topic, key[1] or "BYTES")
        return producer

    def close(self) -> None:
        for producer in self._producers.values():
            try:
                producer.close()
            except pulsar.PulsarException as exc:
                log.debug("dead-letter producer close failed: %s", exc)
        self._producers.clear()
        self._pool.shutdown(wait=False)
