"""The record that flows through the pipeline: a Pulsar message reduced to plain data.

The consumer builds it; the serializer and the batcher read it without importing Pulsar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import LambdaSinkError


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """The writer schema of one message version, as the broker's schema registry has it.

    `type` uses Pulsar's names: NONE, STRING, BYTES, BOOLEAN, INT8, INT16, INT32, INT64, FLOAT,
    DOUBLE, DATE, TIME, TIMESTAMP, LOCAL_DATE, LOCAL_TIME, LOCAL_DATE_TIME, INSTANT, JSON, AVRO,
    PROTOBUF, PROTOBUF_NATIVE, KEY_VALUE, AUTO_CONSUME. `definition` is the schema text (the Avro
    schema JSON for AVRO and JSON) and is empty for primitives.
    """

    type: str
    definition: str = ""
    name: str = ""
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Record:
    """One message, with what the payload formats may show of it."""

    topic: str
    value: bytes
    ledger_id: int
    entry_id: int
    partition: int
    batch_index: int
    key: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    event_time_ms: int | None = None
    publish_time_ms: int | None = None
    schema: SchemaInfo | None = None
    #: The consumer's opaque handle for ack/nack; never serialized.
    handle: Any = field(default=None, compare=False, repr=False)

    @property
    def message_id(self) -> str:
        """Pulsar's string form `ledger:entry:partition:batchIndex`, e.g. '1:1:-1:-1'."""
        return f"{self.ledger_id}:{self.entry_id}:{self.partition}:{self.batch_index}"

    @property
    def sequence(self) -> int:
        """Pulsar IO's record sequence: `(ledgerId << 28) | entryId`."""
        return (self.ledger_id << 28) | self.entry_id


@dataclass(frozen=True, slots=True)
class Rejected:
    """A received message the source could not turn into a usable Record (e.g. no schema).

    Here, not in the pipeline, so the Pulsar adapter hands it over without importing the pipeline.
    """

    record: Record
    error: LambdaSinkError
