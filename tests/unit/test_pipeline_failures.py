"""The failure policy in the pipeline: attempts, dead letters, drops, partial batch responses,
bisection, order through failures, record age and the circuit breaker.

Pulsar and Lambda are the in-memory `MemorySource` / `ScriptedInvoke` of test_pipeline.py; the
attempt log and the dead-letter producer are in-memory implementations of the pipeline's
`AttemptLog` / `DeadLetters` protocols. The real ones (attempts.py, deadletter.py) run against
the real broker in tests/integration/test_failure_policy_broker.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import pytest
from tests.unit.test_pipeline import FAST, MemorySource, ScriptedInvoke, pipeline, rec, settle

from lambdasink_runtime.errors import InvokeError, PulsarError
from lambdasink_runtime.failure import Attempts, Failure, MemoryAttemptLog, record_key
from lambdasink_runtime.pipeline import Pipeline
from lambdasink_runtime.record import Record


class MemoryDeadLetters:
    def __init__(self, failures: int = 0) -> None:
        self.sent: list[tuple[int, Failure, int]] = []
        self.failures = failures

    async def send(self, record: Record, failure: Failure, attempts: int) -> None:
        if self.failures:
            self.failures -= 1
            raise PulsarError("not authorized to produce on dlq")
        self.sent.append((record.handle, failure, attempts))


def function_error(ids: list[int]) -> InvokeError:
    return InvokeError(
        f"function error (Unhandled) ValueError: poison {ids}",
        retriable=True,
        code="FunctionError",
        error_type="ValueError",
        request_id="rid-7",
    )


def poison(*bad: int):  # type: ignore[no-untyped-def]
    async def decide(ids: list[int]) -> None:
        if any(i in bad for i in ids):
            raise function_error(ids)

    return decide


DLQ = replace(FAST, on_exhausted="deadLetter", max_attempts=3)


def test_poison_record_invoked_max_attempts_then_dead_lettered() -> None:
    source = MemorySource([rec(i) for i in range(6)])
    inv = ScriptedInvoke(poison(2))
    dlq = MemoryDeadLetters()
    p = pipeline(source, inv, records=1, policy=DLQ, dead_letters=dlq)
    settle(p, source, 6)
    assert [c for c in inv.calls if 2 in c] == [[2], [2], [2]]  # exactly maxAttempts
    assert sorted(source.acked) == list(range(6))  # the poison one acked after its copy
    assert source.nacked == []
    [(handle, failure, attempts)] = dlq.sent
    assert (handle, attempts) == (2, 3)
    assert failure.reason == "function_error"
    assert failure.error_type == "ValueError"
    assert failure.request_id == "rid-7"
    assert p.metrics.records_dead_lettered.value("function_error") == 1
    assert p.metrics.record_failures.value("function_error") == 3
    assert len(p.attempts) == 0  # settled records are forgotten


def test_drop_acks_and_counts() -> None:
    source = MemorySource([rec(i) for i in range(3)])
    inv = ScriptedInvoke(poison(1))
    p = pipeline(source, inv, records=1, policy=replace(FAST, on_exhausted="drop", max_attempts=2))
    settle(p, source, 3)
    assert sorted(source.acked) == [0, 1, 2]
    assert p.metrics.records_dropped.value("function_error") == 1
    assert len([c for c in inv.calls if 1 in c]) == 2


def test_without_bisect_the_whole_batch_shares_the_fate() -> None:
    source = MemorySource([rec(i) for i in range(4)])
    dlq = MemoryDeadLetters()
    inv = ScriptedInvoke(poison(1))
    p = pipeline(source, inv, records=4, time_s=0.05, policy=DLQ, dead_letters=dlq)
    settle(p, source, 4)
    assert inv.calls == [[0, 1, 2, 3]] * 3
    assert sorted(h for h, _, _ in dlq.sent) == [0, 1, 2, 3]


def test_bisect_isolates_the_poison_record() -> None:
    source = MemorySource([rec(i) for i in range(8)])
    dlq = MemoryDeadLetters()
    inv = ScriptedInvoke(poison(5))
    policy = replace(DLQ, bisect_on_function_error=True)
    p = pipeline(source, inv, records=8, time_s=0.05, policy=policy, dead_letters=dlq)
    settle(p, source, 8)
    assert [h for h, _, _ in dlq.sent] == [5]
    assert sorted(source.acked) == list(range(8))
    assert inv.calls[:4] == [list(range(8)), [0, 1, 2, 3], [4, 5, 6, 7], [4, 5]]
    assert [c for c in inv.calls if c == [5]] == [[5]] * 3  # counted only once isolated
    assert p.metrics.bisects.value() == 3


def test_partial_batch_response_fails_only_the_listed_records() -> None:
    calls = 0

    async def decide(ids: list[int]) -> bytes:
        nonlocal calls
        calls += 1
        failed = [i for i in ids if i in (1, 3)] if calls == 1 else []
        return json.dumps(
            {"batchItemFailures": [{"itemIdentifier": f"1:{i}:-1:-1"} for i in failed]}
        ).encode()

    source = MemorySource([rec(i) for i in range(5)])
    inv = ScriptedInvoke(decide)
    policy = replace(DLQ, report_batch_item_failures=True)
    p = pipeline(
        source, inv, records=5, time_s=0.05, policy=policy, dead_letters=MemoryDeadLetters()
    )
    settle(p, source, 5)
    assert inv.calls == [[0, 1, 2, 3, 4], [1, 3]]
    assert sorted(source.acked) == list(range(5))
    assert len(source.acked) == 5  # each acked once
    assert p.metrics.partial_failures.value() == 2


def test_partial_response_on_ordered_subscription_retries_later_records_of_the_key() -> None:
    calls = 0

    async def decide(ids: list[int]) -> bytes:
        nonlocal calls
        calls += 1
        failed = ["1:0:-1:-1"] if calls == 1 else []
        return json.dumps({"batchItemFailures": [{"itemIdentifier": f} for f in failed]}).encode()

    source = MemorySource([rec(0, key="K"), rec(1, key="J"), rec(2, key="K")])
    inv = ScriptedInvoke(decide)
    policy = replace(DLQ, report_batch_item_failures=True)
    p = pipeline(
        source,
        inv,
        records=3,
        time_s=0.05,
        policy=policy,
        dead_letters=MemoryDeadLetters(),
        ordered=True,
    )
    settle(p, source, 3)
    # J acked at once; K's later record waits for (and is retried with) the failed one.
    assert inv.calls == [[0, 1, 2], [0, 2]]
    assert source.acked[0] == 1


def test_ordered_partial_response_dead_letters_the_listed_record_then_retries_its_key() -> None:
    # Record 0 is listed every time; record 2 (same key, later) rides along uncounted until 0
    # is dead-lettered, then goes alone.
    async def decide(ids: list[int]) -> bytes:
        listed = ["1:0:-1:-1"] if 0 in ids else []
        return json.dumps({"batchItemFailures": [{"itemIdentifier": f} for f in listed]}).encode()

    source = MemorySource([rec(0, key="K"), rec(1, key="J"), rec(2, key="K")])
    inv = ScriptedInvoke(decide)
    dlq = MemoryDeadLetters()
    policy = replace(DLQ, report_batch_item_failures=True, max_attempts=2)
    p = pipeline(source, inv, records=3, time_s=0.05, policy=policy, dead_letters=dlq, ordered=True)
    settle(p, source, 3)
    assert inv.calls == [[0, 1, 2], [0, 2], [2]]
    assert [(h, a) for h, _, a in dlq.sent] == [(0, 2)]
    assert sorted(source.acked) == [0, 1, 2] and source.nacked == []
    assert p.metrics.record_failures.value("partial_failure") == 2


@pytest.mark.parametrize(
    "body",
    [
        b'{"batchItemFailures": [{"itemIdentifier": "9:9:-1:-1"}]}',
        b'{"batchItemFailures": [{"itemIdentifier": ""}]}',
        b'{"batchItemFailures": [{"id": "1:0:-1:-1"}]}',
        b'{"batchItemFailures": "1:0:-1:-1"}',
    ],
)
def test_malformed_partial_response_fails_the_whole_batch(body: bytes) -> None:
    calls = 0

    async def decide(ids: list[int]) -> bytes:
        nonlocal calls
        calls += 1
        return body if calls == 1 else b"{}"

    source = MemorySource([rec(i) for i in range(3)])
    inv = ScriptedInvoke(decide)
    policy = replace(DLQ, report_batch_item_failures=True)
    p = pipeline(
        source, inv, records=3, time_s=0.05, policy=policy, dead_letters=MemoryDeadLetters()
    )
    settle(p, source, 3)
    assert inv.calls == [[0, 1, 2], [0, 1, 2]]
    assert p.metrics.invalid_responses.value() == 1
    assert p.metrics.record_failures.value("invalid_response") == 3


def test_ordered_failing_record_blocks_its_key_until_settled() -> None:
    source = MemorySource([rec(0, key="K"), rec(1, key="J"), rec(2, key="K"), rec(3, key="J")])
    inv = ScriptedInvoke(poison(0))
    dlq = MemoryDeadLetters()
    p = pipeline(
        source, inv, records=1, policy=DLQ, dead_letters=dlq, ordered=True, max_in_flight=4
    )
    settle(p, source, 4)
    k_calls = [c[0] for c in inv.calls if c[0] in (0, 2)]
    assert k_calls == [0, 0, 0, 2]  # 2 only after 0 was dead-lettered
    assert source.events.index(("ack", 0)) < source.events.index(("ack", 2))
    assert [h for h, _, _ in dlq.sent] == [0]


def test_counts_from_before_a_restart_are_honoured() -> None:
    log = MemoryAttemptLog()
    asyncio.run(
        log.save({record_key("t", "1:4:-1:-1"): Attempts(3, Failure("function_error", "x"))})
    )
    source = MemorySource([rec(3), rec(4)])
    inv = ScriptedInvoke()
    dlq = MemoryDeadLetters()
    p = pipeline(source, inv, records=1, policy=DLQ, dead_letters=dlq, attempts=log)
    settle(p, source, 2)
    assert inv.calls == [[3]]  # 4 is never invoked again
    assert [(h, a) for h, _, a in dlq.sent] == [(4, 3)]


def test_too_old_records_are_given_up_without_invocation() -> None:
    now = time.time()
    old = replace(rec(0), publish_time_ms=int((now - 120) * 1000))
    fresh = replace(rec(1), publish_time_ms=int(now * 1000))
    source = MemorySource([old, fresh])
    inv = ScriptedInvoke()
    dlq = MemoryDeadLetters()
    policy = replace(DLQ, max_record_age_ms=60_000)
    p = pipeline(source, inv, records=2, time_s=0.05, policy=policy, dead_letters=dlq)
    settle(p, source, 2)
    assert inv.calls == [[1]]
    [(handle, failure, attempts)] = dlq.sent
    assert (handle, failure.reason, attempts) == (0, "too_old", 0)
    assert p.metrics.records_too_old.value() == 1


def test_dead_letter_write_failure_keeps_the_record_until_it_works() -> None:
    source = MemorySource([rec(0)])
    dlq = MemoryDeadLetters(failures=3)
    p = pipeline(source, ScriptedInvoke(poison(0)), records=1, policy=DLQ, dead_letters=dlq)
    settle(p, source, 1)
    assert p.metrics.dead_letter_errors.value() == 3
    assert [h for h, _, _ in dlq.sent] == [0]
    assert source.acked == [0]


def test_dead_letter_failure_at_shutdown_nacks_never_acks() -> None:
    source = MemorySource([rec(0)])
    dlq = MemoryDeadLetters(failures=10**6)
    p = pipeline(source, ScriptedInvoke(poison(0)), records=1, policy=DLQ, dead_letters=dlq)

    async def scenario() -> None:
        task = asyncio.create_task(p.run())
        while p.metrics.dead_letter_errors.value() < 2:
            await asyncio.sleep(0.002)
        p.stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert source.acked == [] and source.nacked == [0]


def test_circuit_breaker_stops_receiving_and_resumes() -> None:
    down = True

    async def decide(ids: list[int]) -> None:
        if down:
            raise InvokeError("ServiceException (HTTP 503)", retriable=True, status=503)

    source = MemorySource([rec(i) for i in range(40)])
    inv = ScriptedInvoke(decide)
    dlq = MemoryDeadLetters()
    p = pipeline(source, inv, records=1, policy=DLQ, dead_letters=dlq, max_in_flight=4)

    async def scenario() -> None:
        nonlocal down
        task = asyncio.create_task(p.run())
        while not p.breaker.is_open:
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.1)
        left = len(source.queue)
        await asyncio.sleep(0.1)
        assert len(source.queue) == left > 0  # not pulling while open
        assert p.metrics.breaker_open.value() == 1
        down = False
        while source.settled < 40:
            await asyncio.sleep(0.002)
        p.stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert sorted(source.acked) == list(range(40))
    assert dlq.sent == []  # service failures never used up a record's attempts
    assert p.breaker.state == "closed"
    assert p.metrics.breaker_transitions.value("open") >= 1
    assert p.metrics.breaker_transitions.value("closed") == 1


def test_dead_letter_needs_a_producer() -> None:
    with pytest.raises(ValueError, match="dead-letter producer"):
        pipeline(MemorySource(), ScriptedInvoke(), policy=DLQ)


def test_status_reports_breaker_and_outcomes() -> None:
    source = MemorySource([rec(0)])
    p: Pipeline = pipeline(
        source, ScriptedInvoke(poison(0)), records=1, policy=DLQ, dead_letters=MemoryDeadLetters()
    )
    settle(p, source, 1)
    status = p.status()
    assert status["breaker"] == {"state": "closed", "reason": "", "openForSeconds": 0}
    assert status["deadLettered"] == {"function_error": 1.0}
