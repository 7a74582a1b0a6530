"""Count / bytes / time batching of serialized records into Lambda invocation payloads.

Pure: no Pulsar, no AWS, no threads; time comes from an injectable clock so tests drive it.
The batcher never drops a record: every `add` either puts the record into a batch it returns
now or later (from `add`, `poll` or `flush`), or raises `PayloadTooLargeError` so the caller can
negatively acknowledge it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .errors import ConfigError, PayloadTooLargeError

T = TypeVar("T")

#: Bytes an array payload adds around its items: "[" and "]".
ARRAY_OVERHEAD = 2


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    """Records closed into one invocation. `items[i]` was serialized as `parts[i]`."""

    items: Sequence[T]
    parts: Sequence[bytes]
    #: True: the payload is a JSON array of the parts (V2); False: the single part itself (V1).
    array: bool

    @property
    def payload(self) -> bytes:
        if not self.array:
            return self.parts[0]
        return b"[" + b",".join(self.parts) + b"]"

    @property
    def size(self) -> int:
        """Payload bytes, computed without building the payload."""
        if not self.array:
            return len(self.parts[0])
        return ARRAY_OVERHEAD + sum(len(p) for p in self.parts) + len(self.parts) - 1

    def __len__(self) -> int:
        return len(self.items)

    def split(self) -> tuple[Batch[T], Batch[T]]:
        """Two halves in order (for a 413 on a multi-record batch)."""
        if len(self.items) < 2:
            raise ValueError("a batch of one record cannot be split")
        mid = len(self.items) // 2
        return (
            Batch(self.items[:mid], self.parts[:mid], self.array),
            Batch(self.items[mid:], self.parts[mid:], self.array),
        )


class Batcher(Generic[T]):
    """Accumulates (item, serialized bytes) pairs and closes batches.

    A batch closes at `max_records` records, when the next record would push the payload past
    `max_bytes`, or `max_time_s` after its first record, whichever comes first. A record whose
    payload alone exceeds `max_bytes` goes alone; one exceeding `limit_bytes` (the Lambda
    invocation limit) is refused with `PayloadTooLargeError`. With `array=False` (V1) every
    record is its own batch and its payload is the record's bytes, not an array.
    """

    def __init__(
        self,
        *,
        max_records: int,
        max_bytes: int,
        max_time_s: float,
        limit_bytes: int,
        array: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_records < 1:
            raise ConfigError("batchMaxSize", max_records, "must be at least 1")
        if max_bytes < 1:
            raise ConfigError("batchMaxBytesSize", max_bytes, "must be at least 1")
        if max_time_s < 0:
            raise ConfigError("batchMaxTimeMs", max_time_s * 1000, "must be 0 or more")
        self.array = array
        self.max_records = max_records if array else 1
        self.limit_bytes = limit_bytes
        self.max_bytes = min(max_bytes, limit_bytes)
        self.max_time_s = max_time_s
        self._clock = clock
        self._items: list[T] = []
        self._parts: list[bytes] = []
        self._size = ARRAY_OVERHEAD
        self._deadline: float | None = None

    @property
    def deadline(self) -> float | None:
        """Clock time at which the open batch closes by time; None when nothing is open."""
        return self._deadline

    def __len__(self) -> int:
        """Records in the open batch."""
        return len(self._items)

    def record_size(self, part: bytes) -> int:
        """Invocation payload bytes of a batch holding only this record."""
        return len(part) + (ARRAY_OVERHEAD if self.array else 0)

    def add(self, item: T, part: bytes) -> list[Batch[T]]:
        """Add one serialized record; returns the batches that closed (zero, one or two)."""
        alone = self.record_size(part)
        if alone > self.limit_bytes:
            raise PayloadTooLargeError(
                f"record payload of {alone} bytes exceeds the invocation limit of "
                f"{self.limit_bytes} bytes"
            )
        closed = self.poll()
        if not self.array or self.max_records == 1:
            closed.append(Batch([item], [part], self.array))
            return closed
        if alone > self.max_bytes:
            # Bigger than a batch may be but within the invocation limit: it goes alone.
            closed.extend(self.flush())
            closed.append(Batch([item], [part], self.array))
            return closed
        added = len(part) + (1 if self._items else 0)
        if self._items and self._size + added > self.max_bytes:
            closed.extend(self.flush())
            added = len(part)
        if not self._items:
            self._deadline = self._clock() + self.max_time_s
        self._items.append(item)
        self._parts.append(part)
        self._size += added
        full = len(self._items) >= self.max_records or self._size >= self.max_bytes
        if full or self.max_time_s == 0:
            closed.extend(self.flush())
        return closed

    def poll(self) -> list[Batch[T]]:
        """Close the open batch if its time is up."""
        if self._deadline is not None and self._clock() >= self._deadline:
            return self.flush()
        return []

    def flush(self) -> list[Batch[T]]:
        """Close the open batch now (on drain, or when a limit is reached)."""
        if not self._items:
            return []
        batch = Batch(self._items, self._parts, self.array)
        self._items = []
        self._parts = []
        self._size = ARRAY_OVERHEAD
        self._deadline = None
        return [batch]
