"""The pipeline's ack/nack decisions, concurrency bound, per-key order and drain.

`MemorySource` and `ScriptedInvoke` are small in-memory implementations of the pipeline's
`Source` and `Invoke` protocols: they stand in for Pulsar and Lambda so the pipeline itself (the
thing under test) runs unchanged. The real invoker meets the fake Lambda API in the 413 test;
the real consumer and Lambda are covered by the integration tests.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from tests.lambda_api import LambdaApi

from lambdasink_runtime.batcher import Batcher
from lambdasink_runtime.config import (
    AdaptiveInFlightConfig,
    CircuitBreakerConfig,
    FailurePolicyConfig,
    PulsarConfig,
    SinkConfig,
)
from lambdasink_runtime.errors import InvokeError, SchemaRegistryError, SerializationError
from lambdasink_runtime.invoker import Invoker
from lambdasink_runtime.metrics import Metrics
from lambdasink_runtime.pipeline import Pipeline
from lambdasink_runtime.record import Record, Rejected


def rec(i: int, key: str | None = None, size: int = 0, topic: str = "t") -> Record:
    value = (f"m{i}" + "x" * size).encode()
    return Record(
        topic=topic,
        value=value,
        ledger_id=1,
        entry_id=i,
        partition=-1,
        batch_index=-1,
        key=key,
        handle=i,
    )


def serialize(record: Record) -> bytes:
    if record.value.startswith(b"bad"):
        raise SerializationError("not valid for its schema")
    return json.dumps({"v": record.value.decode(), "key": record.key}).encode()


class MemorySource:
    """Hands out queued records; records acks/nacks (thread-safe: receive runs on a thread)."""

    def __init__(self, items: Sequence[Record | Rejected] = ()) -> None:
        self.queue: deque[Record | Rejected] = deque(items)
        self.lock = threading.Lock()
        self.acked: list[int] = []
        self.nacked: list[int] = []
        self.closed = False
        self.events: list[tuple[str, int]] = []

    def push(self, *items: Record | Rejected) -> None:
        with self.lock:
            self.queue.extend(items)

    def receive(self, max_records: int, timeout_s: float) -> list[Record | Rejected]:
        with self.lock:
            out = [self.queue.popleft() for _ in range(min(max_records, len(self.queue)))]
        if not out:
            time.sleep(min(timeout_s, 0.005))
        return out

    def ack(self, record: Record) -> None:
        self.acked.append(record.handle)
        self.events.append(("ack", record.handle))

    def nack(self, record: Record) -> None:
        self.nacked.append(record.handle)
        self.events.append(("nack", record.handle))

    def close(self) -> None:
        self.closed = True

    @property
    def settled(self) -> int:
        return len(self.acked) + len(self.nacked)


Decide = Callable[[list[int]], Awaitable[bytes | None]]


@dataclass(frozen=True)
class Reply:
    body: bytes = b""
    request_id: str = "req-1"


class ScriptedInvoke:
    """Decodes handles from the payload; `decide` may await (to hold) or raise InvokeError."""

    def __init__(self, decide: Decide | None = None) -> None:
        self.decide = decide
        self.calls: list[list[int]] = []
        self.active = 0
        self.max_active = 0
        self.log: list[tuple[str, list[int]]] = []

    async def invoke(self, payload: bytes) -> Reply:
        doc = json.loads(payload)
        items = doc if isinstance(doc, list) else [doc]
        ids = [int(x["v"][1:].rstrip("x")) for x in items]
        self.calls.append(ids)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.log.append(("start", ids))
        try:
            body = await self.decide(ids) if self.decide is not None else None
        finally:
            self.active -= 1
            self.log.append(("end", ids))
        return Reply(body or b"")


def pipeline(
    source: MemorySource,
    invoke: ScriptedInvoke | Invoker,
    *,
    records: int = 10,
    max_bytes: int = 100_000,
    time_s: float = 0.02,
    limit: int = 1_000_000,
    array: bool = True,
    **kwargs: Any,
) -> Pipeline:
    batcher: Batcher[Record] = Batcher(
        max_records=records,
        max_bytes=max_bytes,
        max_time_s=time_s,
        limit_bytes=limit,
        array=array,
    )
    kwargs.setdefault("policy", FAST)
    return Pipeline(
        source, serialize, batcher, invoke, metrics=Metrics(), receive_timeout_s=0.01, **kwargs
    )


#: The default policy (block) with millisecond backoffs, so retries do not slow the tests.
FAST = FailurePolicyConfig(
    retry_backoff_initial_ms=1,
    retry_backoff_max_ms=4,
    circuit_breaker=CircuitBreakerConfig(probe_interval_initial_ms=1, probe_interval_max_ms=4),
)


async def run_until(p: Pipeline, done: Callable[[], bool], timeout: float = 10.0) -> None:
    task = asyncio.create_task(p.run())
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "pipeline did not settle in time"
        assert not task.done(), task.exception() if task.done() else None
        await asyncio.sleep(0.002)
    p.stop()
    await asyncio.wait_for(task, timeout)


def settle(p: Pipeline, source: MemorySource, n: int) -> None:
    asyncio.run(run_until(p, lambda: source.settled >= n))


def test_success_acks_after_the_invocation() -> None:
    source = MemorySource([rec(i) for i in range(25)])
    inv = ScriptedInvoke()
    p = pipeline(source, inv, records=10)
    settle(p, source, 25)
    assert sorted(source.acked) == list(range(25))
    assert source.nacked == []
    assert sorted(i for c in inv.calls for i in c) == list(range(25))
    assert all(len(c) <= 10 for c in inv.calls)
    assert source.closed
    assert p.metrics.messages_acked.value() == 25
    assert p.metrics.messages_received.value() == 25
    assert p.metrics.batch_records.count == len(inv.calls)


def test_service_failure_is_retried_in_place_without_using_attempts() -> None:
    throttles = 0

    async def fail(ids: list[int]) -> None:
        nonlocal throttles
        if 3 in ids and throttles < 5:
            throttles += 1
            raise InvokeError(
                "throttled", retriable=True, code="TooManyRequestsException", status=429
            )
        return None

    source = MemorySource([rec(i) for i in range(6)])
    p = pipeline(source, ScriptedInvoke(fail), records=3)
    settle(p, source, 6)
    assert sorted(source.acked) == list(range(6))  # 5 throttles > maxAttempts 3: not counted
    assert source.nacked == []
    assert p.metrics.record_failures.value("throttled") == 15
    assert len(p.attempts) == 0


def test_function_error_is_never_acked_while_attempts_remain() -> None:
    async def fail(ids: list[int]) -> None:
        raise InvokeError("function error (Unhandled)", retriable=True, code="FunctionError")

    source = MemorySource([rec(i) for i in range(4)])
    inv = ScriptedInvoke(fail)
    p = pipeline(source, inv, records=2)

    async def scenario() -> None:
        task = asyncio.create_task(p.run())
        while len(inv.calls) < 8:  # both batches used their 3 attempts at least once more
            await asyncio.sleep(0.002)
        p.stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert source.acked == []  # block: never acked, nacked on shutdown (counts kept)
    assert sorted(source.nacked) == [0, 1, 2, 3]
    assert p.metrics.record_failures.value("function_error") >= 8
    assert p.metrics.records_blocked.value() == 4


def test_unexpected_invoker_exception_nacks() -> None:
    async def boom(ids: list[int]) -> None:
        raise RuntimeError("bug")

    source = MemorySource([rec(0)])
    p = pipeline(source, ScriptedInvoke(boom))
    settle(p, source, 1)
    assert source.nacked == [0] and source.acked == []
    assert p.metrics.messages_nacked.value("internal") == 1


def test_oversize_record_is_nacked_with_block_and_counted() -> None:
    source = MemorySource([rec(0), rec(1, size=500), rec(2)])
    inv = ScriptedInvoke()
    p = pipeline(source, inv, limit=200, max_bytes=200)
    settle(p, source, 3)
    assert source.nacked == [1]
    assert sorted(source.acked) == [0, 2]
    assert all(1 not in c for c in inv.calls)
    assert p.metrics.oversize.value() == 1
    assert p.metrics.messages_nacked.value("too_large") == 1


def test_serialization_failure_is_nacked() -> None:
    bad = Record(
        topic="t",
        value=b"bad-bytes",
        ledger_id=1,
        entry_id=9,
        partition=-1,
        batch_index=-1,
        handle=9,
    )
    source = MemorySource([rec(0), bad, rec(1)])
    p = pipeline(source, ScriptedInvoke())
    settle(p, source, 3)
    assert source.nacked == [9]
    assert sorted(source.acked) == [0, 1]
    assert p.metrics.messages_nacked.value("serialization") == 1


def test_rejected_schema_lookup_is_nacked() -> None:
    source = MemorySource([Rejected(rec(5), SchemaRegistryError("admin API down")), rec(6)])
    p = pipeline(source, ScriptedInvoke())
    settle(p, source, 2)
    assert source.nacked == [5] and source.acked == [6]
    assert p.metrics.messages_nacked.value("schema") == 1


def test_v1_one_record_per_invocation() -> None:
    source = MemorySource([rec(i) for i in range(5)])
    inv = ScriptedInvoke()
    p = pipeline(source, inv, array=False)
    settle(p, source, 5)
    assert sorted(inv.calls) == [[i] for i in range(5)]
    assert sorted(source.acked) == list(range(5))


def test_batch_closes_by_time_without_more_records() -> None:
    source = MemorySource([rec(0), rec(1)])
    inv = ScriptedInvoke()
    p = pipeline(source, inv, records=100, time_s=0.05)
    settle(p, source, 2)
    assert inv.calls == [[0, 1]]


def test_in_flight_bound_is_respected_and_used() -> None:
    release = asyncio.Event()

    async def hold(ids: list[int]) -> None:
        await release.wait()

    source = MemorySource([rec(i) for i in range(40)])
    inv = ScriptedInvoke(hold)
    p = pipeline(source, inv, records=2, max_in_flight=3)

    async def scenario() -> None:
        task = asyncio.create_task(p.run())
        while inv.active < 3:
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.05)  # give it every chance to exceed the bound
        assert inv.active == 3
        assert p.metrics.inflight.value() == 3
        # Backpressure: receiving stopped with a bounded number of waiting batches.
        assert len(p._waiting) <= p.max_waiting
        assert len(source.queue) > 0
        release.set()
        while source.settled < 40:
            await asyncio.sleep(0.002)
        p.stop()
        await task

    asyncio.run(scenario())
    assert inv.max_active == 3
    assert sorted(source.acked) == list(range(40))
    assert p.metrics.inflight.value() == 0


def _check_key_order(inv: ScriptedInvoke, keys: dict[int, str]) -> None:
    active: dict[str, int] = {}
    seen: dict[str, list[int]] = {}
    for event, ids in inv.log:
        for k in {keys[i] for i in ids}:
            if event == "start":
                assert active.get(k, 0) == 0, f"two invocations for key {k} in flight"
                active[k] = 1
                seen.setdefault(k, []).extend(i for i in ids if keys[i] == k)
            else:
                active[k] = 0
    for k, order in seen.items():
        assert order == sorted(order), f"key {k} invoked out of order: {order}"


@pytest.mark.parametrize("records", [1, 3])
def test_per_key_order_when_ordered(records: int) -> None:
    rnd = random.Random(7)

    async def jitter(ids: list[int]) -> None:
        await asyncio.sleep(rnd.random() * 0.005)

    keys = {i: "ABCDE"[rnd.randrange(5)] for i in range(120)}
    source = MemorySource([rec(i, key=keys[i]) for i in range(120)])
    inv = ScriptedInvoke(jitter)
    p = pipeline(source, inv, records=records, max_in_flight=4, ordered=True)
    settle(p, source, 120)
    assert sorted(source.acked) == list(range(120))
    _check_key_order(inv, keys)
    assert inv.max_active > 1  # different keys still run in parallel


def test_order_kept_through_a_failure_and_retry_window() -> None:
    # A batch holding key K that is slow (retrying) blocks the next K batch, not other keys.
    gate = asyncio.Event()

    async def slow_first(ids: list[int]) -> None:
        if ids == [0]:
            await gate.wait()

    source = MemorySource([rec(0, key="K"), rec(1, key="K"), rec(2, key="J")])
    inv = ScriptedInvoke(slow_first)
    p = pipeline(source, inv, records=1, max_in_flight=4, ordered=True)

    async def scenario() -> None:
        task = asyncio.create_task(p.run())
        while 2 not in source.acked:
            await asyncio.sleep(0.002)
        assert [1] not in inv.calls  # K's second record waits for the first
        gate.set()
        while source.settled < 3:
            await asyncio.sleep(0.002)
        p.stop()
        await task

    asyncio.run(scenario())
    assert inv.calls.index([0]) < inv.calls.index([1])


def test_unordered_runs_same_key_in_parallel() -> None:
    async def pause(ids: list[int]) -> None:
        await asyncio.sleep(0.01)

    source = MemorySource([rec(i, key="K") for i in range(8)])
    inv = ScriptedInvoke(pause)
    p = pipeline(source, inv, records=1, max_in_flight=4, ordered=False)
    settle(p, source, 8)
    assert inv.max_active == 4


def test_stop_flushes_open_batch_and_acks_in_flight_successes() -> None:
    release = asyncio.Event()

    async def hold(ids: list[int]) -> None:
        await release.wait()

    source = MemorySource([rec(i) for i in range(5)])
    inv = ScriptedInvoke(hold)
    p = pipeline(source, inv, records=3, time_s=60, max_in_flight=2)

    async def scenario() -> None:
        task = asyncio.create_task(p.run())
        while inv.active < 1 or len(p.batcher) < 2:
            await asyncio.sleep(0.002)
        p.stop()  # one batch in flight, one open in the batcher
        assert p.draining
        await asyncio.sleep(0.02)
        assert source.acked == []  # nothing acked before the invocation returned
        release.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert sorted(source.acked) == list(range(5))
    assert source.nacked == []
    assert source.closed
    assert sorted(map(tuple, inv.calls)) == [(0, 1, 2), (3, 4)]


def test_drain_timeout_nacks_what_did_not_finish() -> None:
    async def forever(ids: list[int]) -> None:
        await asyncio.sleep(3600)

    source = MemorySource([rec(i) for i in range(4)])
    inv = ScriptedInvoke(forever)
    p = pipeline(source, inv, records=1, max_in_flight=2, drain_timeout_s=0.1)

    async def scenario() -> None:
        task = asyncio.create_task(p.run())
        while inv.active < 2:
            await asyncio.sleep(0.002)
        p.stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert source.acked == []
    assert sorted(source.nacked) == [0, 1, 2, 3]
    assert p.metrics.messages_nacked.value("shutdown") == 4
    assert source.closed


def test_no_record_acked_twice_or_both_acked_and_nacked() -> None:
    rnd = random.Random(3)

    async def flaky(ids: list[int]) -> None:
        await asyncio.sleep(rnd.random() * 0.002)
        if rnd.random() < 0.3:
            raise InvokeError("5xx", retriable=True, status=503)
        return None

    source = MemorySource([rec(i, key=str(i % 7)) for i in range(200)])
    p = pipeline(source, ScriptedInvoke(flaky), records=4, max_in_flight=5, ordered=True)
    settle(p, source, 200)
    assert len(source.acked) == len(set(source.acked))
    assert len(source.nacked) == len(set(source.nacked))
    assert not set(source.acked) & set(source.nacked)
    assert set(source.acked) == set(range(200))  # service failures retried until they pass


# -- 413 handling with the real invoker against the fake Lambda API -----------------------------


def test_413_splits_multi_record_batch_and_gives_up_on_single_oversize() -> None:
    with LambdaApi(max_body=300) as api:
        sink = SinkConfig(
            aws_region="us-east-1",
            lambda_function_name="fn",
            aws_endpoint=api.url,
            aws_access_key="AKIDEXAMPLE",
            aws_secret_key="x",
            invoke_backoff_initial_ms=1,
            invoke_backoff_max_ms=2,
        )
        inv = Invoker(sink)
        # 8 records of ~60 bytes: a batch of 8 (~480 bytes) is refused; halves of 4 fit.
        # Record 99 alone is ~330 bytes: refused even alone → nacked.
        records = [rec(i, size=30) for i in range(8)] + [rec(99, size=300)]
        source = MemorySource(records)
        p = pipeline(source, inv, records=8, time_s=0.05, policy=replace(FAST, on_exhausted="drop"))
        try:
            settle(p, source, 9)
        finally:
            inv.close()
        assert sorted(source.acked) == [*range(8), 99]  # 99 dropped by policy: acked, counted
        assert source.nacked == []
        assert p.metrics.records_dropped.value("too_large") == 1
        assert p.metrics.messages_acked.value() == 9
        bodies = [json.loads(r.body) for r in api.invocations()]
        assert sorted(len(b) for b in bodies) == [1, 4, 4, 8]  # 8 refused, halves sent
        halves = [[int(x["v"][1:].rstrip("x")) for x in b] for b in bodies if len(b) == 4]
        assert halves == [[0, 1, 2, 3], [4, 5, 6, 7]]  # in order


def test_from_config_wires_format_limits_and_order() -> None:
    sink = SinkConfig(
        aws_region="r",
        lambda_function_name="f",
        payload_format="V2",
        batch_max_size=7,
        batch_max_bytes_size=5000,
        batch_max_time_ms=250,
        max_in_flight=9,
    )
    p = Pipeline.from_config(
        sink,
        PulsarConfig(topics=("t",), subscription_type="Key_Shared"),
        MemorySource(),
        ScriptedInvoke(),
    )
    assert (p.batcher.max_records, p.batcher.max_bytes, p.batcher.max_time_s) == (7, 5000, 0.25)
    assert p.batcher.array and p.ordered and p.max_in_flight == 9
    v1 = replace(sink, payload_format="V1", synchronous_invocation=False)
    q = Pipeline.from_config(v1, PulsarConfig(topics=("t",)), MemorySource(), ScriptedInvoke())
    assert not q.batcher.array and q.batcher.max_records == 1 and not q.ordered
    assert q.batcher.limit_bytes == 1024 * 1024


# --------------------------------------------------------------------------- adaptive in-flight

ADAPTIVE = AdaptiveInFlightConfig(enabled=True, min_in_flight=1)


def test_adaptive_limit_starts_at_its_minimum_and_grows_on_success() -> None:
    release = asyncio.Event()
    inv = ScriptedInvoke()
    p: Pipeline

    async def hold(ids: list[int]) -> None:
        started = time.monotonic()
        await release.wait()
        await asyncio.sleep(0.002)
        p.attempt_ended(started, time.monotonic() - started, "success")

    inv.decide = hold
    source = MemorySource([rec(i) for i in range(40)])
    p = pipeline(source, inv, records=2, max_in_flight=8, adaptive=ADAPTIVE)

    async def scenario() -> None:
        task = asyncio.create_task(p.run())
        while inv.active < 1:
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.05)  # every chance to exceed the limit
        assert inv.active == 1
        assert p.metrics.inflight_limit.value() == 1
        release.set()
        while source.settled < 40:
            await asyncio.sleep(0.002)
        p.stop()
        await task

    asyncio.run(scenario())
    assert sorted(source.acked) == list(range(40))
    assert p.limiter.limit > 1 and inv.max_active > 1
    assert p.metrics.inflight_limit.value() == p.limiter.limit
    assert p.metrics.inflight_limit_changes.value("success") >= 1


def test_throttles_cut_the_adaptive_limit_and_are_retried_in_place() -> None:
    """A function with room for 2 concurrent calls throttles the rest: the invoker-like script
    reports each attempt, retries once (waiting through the pipeline, which frees the slot),
    then raises the 429 for the pipeline to retry."""
    inv = ScriptedInvoke()
    running = 0
    p: Pipeline

    async def capped(ids: list[int]) -> None:
        nonlocal running
        for attempt in range(2):
            started = time.monotonic()
            if running >= 2:
                p.attempt_ended(started, 0.0, "throttled")
                if attempt == 0:
                    await p.wait_retry(0.001, asyncio.sleep)
                    continue
                raise InvokeError("Rate Exceeded.", retriable=True, status=429)
            running += 1
            try:
                await asyncio.sleep(0.003)
            finally:
                running -= 1
            p.attempt_ended(started, time.monotonic() - started, "success")
            return

    inv.decide = capped
    source = MemorySource([rec(i) for i in range(300)])
    adaptive = AdaptiveInFlightConfig(enabled=True, min_in_flight=1, latency_tolerance=0.0)
    p = pipeline(source, inv, records=2, max_in_flight=8, adaptive=adaptive)

    async def scenario() -> None:
        task = asyncio.create_task(p.run())
        while source.settled < 300:
            await asyncio.sleep(0.002)
        p.stop()
        await task

    asyncio.run(scenario())
    assert sorted(source.acked) == list(range(300)) and not source.nacked
    assert p.metrics.inflight_limit_changes.value("throttled") >= 1
    assert p.limiter.limit < 8
    assert p.breaker.state == "closed"
    status = p.status()["inFlight"]
    assert status == {
        "limit": p.limiter.limit,
        "adaptive": True,
        "min": 1,
        "max": 8,
        "current": 0,
        "lastCut": "throttled",
    }


def test_fixed_limit_is_reported_as_such() -> None:
    p = pipeline(MemorySource(), ScriptedInvoke(), max_in_flight=6)
    assert p.metrics.inflight_limit.value() == 6
    p.attempt_ended(0.0, 0.0, "throttled")
    assert p.status()["inFlight"] == {
        "limit": 6,
        "adaptive": False,
        "min": 6,
        "max": 6,
        "current": 0,
        "lastCut": "",
    }


@pytest.mark.parametrize("adaptive", [True, False])
def test_invoker_retry_waits_free_the_slot_only_with_an_adaptive_limit(adaptive: bool) -> None:
    """Batch 0 is throttled once and waits out a Retry-After through `wait_retry`: with an
    adaptive limit another batch takes its slot meanwhile, and the retry waits for a free slot
    before it calls again; with a fixed one the slot stays held."""
    release = asyncio.Event()
    at_lambda = 0
    most_at_lambda = 0
    p: Pipeline

    async def decide(ids: list[int]) -> None:
        nonlocal at_lambda, most_at_lambda
        if ids == [0]:
            await p.wait_retry(0.05, asyncio.sleep)
        at_lambda += 1
        most_at_lambda = max(most_at_lambda, at_lambda)
        try:
            if ids != [0]:
                await release.wait()
            await asyncio.sleep(0.001)
        finally:
            at_lambda -= 1

    inv = ScriptedInvoke(decide)
    source = MemorySource([rec(i) for i in range(6)])
    config = AdaptiveInFlightConfig(enabled=adaptive, min_in_flight=2)
    p = pipeline(source, inv, records=1, max_in_flight=2, adaptive=config)

    async def scenario() -> None:
        task = asyncio.create_task(p.run())
        while len(inv.calls) < 2:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.02)  # within batch 0's wait
        # adaptive: batch 2 took the slot batch 0 left while waiting
        assert len(inv.calls) == (3 if adaptive else 2)
        await asyncio.sleep(0.1)  # batch 0's wait is over; adaptive: 1 and 2 hold both slots
        release.set()
        while source.settled < 6:
            await asyncio.sleep(0.002)
        p.stop()
        await task

    asyncio.run(scenario())
    assert sorted(source.acked) == list(range(6))
    assert most_at_lambda == 2  # never more calls at Lambda than the limit
