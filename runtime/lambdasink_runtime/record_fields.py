"""Record metadata that the V1 payload and the V2 item both render the same way."""

from __future__ import annotations

import re

from .errors import SerializationError
from .record import Record

_PARTITION_RE = re.compile(r"-partition-(\d+)$")

_TOPIC_PARTITIONS: dict[str, int | None] = {}  # topic → partition from its name (or None)


def name_partition(topic: str) -> int | None:
    """The partition a topic's name carries (`…-partition-N`); cached, messages repeat topics."""
    if topic in _TOPIC_PARTITIONS:
        return _TOPIC_PARTITIONS[topic]
    if len(_TOPIC_PARTITIONS) >= 4096:
        _TOPIC_PARTITIONS.clear()
    m = _PARTITION_RE.search(topic)
    index = _TOPIC_PARTITIONS[topic] = int(m.group(1)) if m else None
    return index


def partition_index(r: Record) -> int | None:
    return r.partition if r.partition >= 0 else name_partition(r.topic)


def properties_of(r: Record) -> dict[str, str]:
    p = r.properties
    return p if type(p) is dict else dict(p)


def unconvertible(r: Record, exc: Exception) -> SerializationError:
    kind = r.schema.type if r.schema else "NONE"
    return SerializationError(
        f"message {r.message_id} on {r.topic} cannot be converted with its "
        f"{kind} schema: {type(exc).__name__}: {exc}",
        retriable=False,
    )
