"""Batcher: count / bytes / time limits, oversize records, V1, and invariants (hypothesis)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdasink_runtime.batcher import Batch, Batcher
from lambdasink_runtime.errors import ConfigError, PayloadTooLargeError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    clock: Clock | None = None,
    *,
    records: int = 10,
    max_bytes: int = 1000,
    time_s: float = 5.0,
    limit: int = 10_000,
    array: bool = True,
) -> Batcher[int]:
    return Batcher(
        max_records=records,
        max_bytes=max_bytes,
        max_time_s=time_s,
        limit_bytes=limit,
        array=array,
        clock=clock or Clock(),
    )


def item(i: int, size: int = 10) -> bytes:
    """A JSON value of exactly `size` bytes (size >= 4)."""
    body = f'"{i}'.ljust(size - 1, "x") + '"'
    return body.encode()


def test_closes_at_max_records() -> None:
    b = make(records=3)
    assert b.add(0, item(0)) == []
    assert b.add(1, item(1)) == []
    (batch,) = b.add(2, item(2))
    assert list(batch.items) == [0, 1, 2]
    assert json.loads(batch.payload) == [json.loads(item(i)) for i in range(3)]
    assert len(b) == 0 and b.deadline is None


def test_payload_is_a_json_array_with_exact_size() -> None:
    b = make(records=2)
    b.add(0, b'{"a":1}')
    (batch,) = b.add(1, b'"x"')
    assert batch.payload == b'[{"a":1},"x"]'
    assert batch.size == len(batch.payload)


def test_closes_before_exceeding_max_bytes() -> None:
    # 2 + 10 + 1 + 10 = 23 bytes fit in 25; a third item would make 34.
    b = make(max_bytes=25)
    assert b.add(0, item(0)) == []
    assert b.add(1, item(1)) == []
    (batch,) = b.add(2, item(2))
    assert list(batch.items) == [0, 1]
    assert batch.size <= 25
    assert len(b) == 1  # the third started a new batch


def test_closes_exactly_at_max_bytes() -> None:
    b = make(max_bytes=23)
    b.add(0, item(0))
    (batch,) = b.add(1, item(1))
    assert batch.size == 23


def test_closes_after_max_time_since_first_record() -> None:
    clock = Clock()
    b = make(clock, time_s=5.0)
    b.add(0, item(0))
    assert b.deadline == clock.now + 5.0
    clock.now += 4.9
    b.add(1, item(1))
    assert b.poll() == []
    clock.now += 0.1
    (batch,) = b.poll()
    assert list(batch.items) == [0, 1]
    assert b.deadline is None


def test_add_after_deadline_closes_the_old_batch_first() -> None:
    clock = Clock()
    b = make(clock, time_s=1.0)
    b.add(0, item(0))
    clock.now += 2
    (batch,) = b.add(1, item(1))
    assert list(batch.items) == [0]
    assert list(b.flush()[0].items) == [1]


def test_batch_max_size_one_disables_batching() -> None:
    b = make(records=1)
    (batch,) = b.add(7, item(7))
    assert batch.payload == b"[" + item(7) + b"]"
    assert b.deadline is None


def test_zero_max_time_sends_immediately() -> None:
    b = make(time_s=0)
    (batch,) = b.add(1, item(1))
    assert list(batch.items) == [1]


def test_v1_sends_one_record_not_an_array() -> None:
    b = make(array=False, records=10)
    (batch,) = b.add(1, b'{"value":"x"}')
    assert batch.payload == b'{"value":"x"}'
    assert batch.size == len(batch.payload)
    assert b.max_records == 1


def test_record_bigger_than_batch_bytes_goes_alone() -> None:
    b = make(max_bytes=30, limit=1000)
    b.add(0, item(0))
    closed = b.add(1, item(1, size=100))
    assert [list(x.items) for x in closed] == [[0], [1]]
    assert len(b) == 0


def test_record_bigger_than_invocation_limit_is_refused() -> None:
    b = make(max_bytes=30, limit=50)
    b.add(0, item(0))
    with pytest.raises(PayloadTooLargeError, match="exceeds the invocation limit of 50"):
        b.add(1, item(1, size=49))  # 49 + "[]" = 51 > 50
    # The open batch is untouched and the refused record is nowhere.
    assert [list(x.items) for x in b.flush()] == [[0]]


def test_v1_limit_counts_the_object_only() -> None:
    b = make(array=False, limit=50, max_bytes=50)
    (batch,) = b.add(1, item(1, size=50))
    assert batch.size == 50
    with pytest.raises(PayloadTooLargeError):
        b.add(2, item(2, size=51))


def test_batch_bytes_capped_by_invocation_limit() -> None:
    b = make(max_bytes=10_000, limit=100)
    assert b.max_bytes == 100


def test_flush_empty_is_empty() -> None:
    assert make().flush() == []
    assert make().poll() == []


def test_split_keeps_order() -> None:
    batch = Batch([1, 2, 3], [b"1", b"2", b"3"], True)
    a, c = batch.split()
    assert (list(a.items), list(c.items)) == ([1], [2, 3])
    assert (a.payload, c.payload) == (b"[1]", b"[2,3]")
    with pytest.raises(ValueError):
        a.split()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"records": 0}, "batchMaxSize"),
        ({"max_bytes": 0}, "batchMaxBytesSize"),
        ({"time_s": -1}, "batchMaxTimeMs"),
    ],
)
def test_invalid_limits(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        make(**kwargs)  # type: ignore[arg-type]


# -- properties -------------------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(min_value=4, max_value=120)),
        st.tuples(st.just("tick"), st.floats(min_value=0, max_value=3)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=ops,
    records=st.integers(min_value=1, max_value=8),
    max_bytes=st.integers(min_value=5, max_value=300),
    limit=st.integers(min_value=20, max_value=200),
    time_s=st.floats(min_value=0, max_value=5),
    array=st.booleans(),
)
def test_invariants(
    ops: list[tuple[str, float]],
    records: int,
    max_bytes: int,
    limit: int,
    time_s: float,
    array: bool,
) -> None:
    clock = Clock()
    b: Batcher[int] = Batcher(
        max_records=records,
        max_bytes=max_bytes,
        max_time_s=time_s,
        limit_bytes=limit,
        array=array,
        clock=clock,
    )
    out: list[Batch[int]] = []
    accepted: list[int] = []
    refused: list[int] = []
    sizes: dict[int, int] = {}
    n = 0
    for op, arg in ops:
        if op == "tick":
            clock.now += arg
            out.extend(b.poll())
            continue
        data = item(n, int(arg))
        sizes[n] = len(data)
        try:
            out.extend(b.add(n, data))
            accepted.append(n)
        except PayloadTooLargeError:
            refused.append(n)
            assert b.record_size(data) > limit
        n += 1
        if b.deadline is not None:
            assert b.deadline >= clock.now
    out.extend(b.flush())

    sent = [i for batch in out for i in batch.items]
    # Nothing lost, nothing duplicated, order kept (within and across batches).
    assert sent == accepted
    assert not set(sent) & set(refused)
    for batch in out:
        assert len(batch) >= 1
        assert batch.size == len(batch.payload) <= limit
        if not array:
            assert len(batch) == 1 and batch.payload == item(batch.items[0], sizes[batch.items[0]])
            continue
        json.loads(batch.payload)
        assert len(batch) <= records
        # Only a lone record may exceed the batch byte limit.
        assert batch.size <= min(max_bytes, limit) or len(batch) == 1
