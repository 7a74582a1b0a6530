"""The failure policy against the real broker and real handler code.

The handler (tests/lambda_handlers/selective.py) runs in AWS's runtime interface emulator and
fails on purpose for records whose value starts with `poison`: it raises (a real Unhandled
function error), or answers with a partial batch response. Only the circuit-breaker test uses
the gateway's injected faults (503s for every call), because the emulator cannot fail every
call on demand; the test says so where it injects them.

Every test counts, from the handler's own record of what it received: how often each record
was invoked, what was delivered, what reached the dead-letter topic, and duplicates.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pulsar
import pytest
from runtime_support import (
    REPO,
    Runtimes,
    admin,
    backlog,
    pulsar_client,
    runtime_config,
    send,
    unique,
    unique_topic,
    wait_for,
)
from tests.stack import LambdaFaults, LambdaFunctions, Recorder, Stack

pytestmark = pytest.mark.integration

ORDERED = ("Key_Shared", "Failover", "Exclusive")


def selective(lambda_functions: LambdaFunctions, mode: str = "raise") -> Recorder:
    name = lambda_functions.create(
        "selective.handler", prefix="sel", environment={"FAIL_MODE": mode}
    )
    return Recorder(lambda_functions.record_dir, name)


def invocations(recorder: Recorder) -> list[list[bytes]]:
    """Each invocation's record values, in the order the function received them."""
    out: list[list[bytes]] = []
    for entry in recorder.entries():
        items = entry["event"] if isinstance(entry["event"], list) else [entry["event"]]
        out.append([base64.b64decode(i["value"]) for i in items])
    return out


def times_invoked(recorder: Recorder) -> Counter[bytes]:
    return Counter(v for call in invocations(recorder) for v in call)


def delivered_once(recorder: Recorder, values: list[bytes]) -> bool:
    seen = times_invoked(recorder)
    return all(seen[v] >= 1 for v in values)


def read_all(consumer: Any, n: int, timeout_s: float = 60) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n:
        left = int((deadline - time.monotonic()) * 1000)
        assert left > 0, f"only {len(out)} of {n} dead-lettered messages arrived"
        try:
            msg = consumer.receive(min(left, 5000))
        except pulsar.Timeout:
            continue
        consumer.acknowledge(msg)
        out.append(msg)
    return out


def nothing_more(consumer: Any, wait_ms: int = 1500) -> bool:
    try:
        consumer.receive(wait_ms)
    except pulsar.Timeout:
        return True
    return False


def failure_config(
    stack: Stack, function: str, topic: str, dlq: str, *, sub_type: str = "Shared", **failure: Any
) -> dict[str, Any]:
    cfg = runtime_config(
        stack,
        function,
        topics=[topic],
        pulsar={"subscriptionType": sub_type, "deadLetterTopic": dlq},
        sink={"batchMaxSize": 1, "metadataFields": "messageId,key,properties,eventTime"},
    )
    cfg["failurePolicy"] = {
        "maxAttempts": 3,
        "onExhausted": "deadLetter",
        "retryBackoffInitialMs": 300,
        "retryBackoffMaxMs": 1000,
        **failure,
    }
    return cfg


def produce_keyed(
    client: Any, topic: str, poison_at: int, n: int = 9
) -> tuple[list[bytes], list[Any]]:
    """n records on keys k0,k1,k2 in turn; the one at `poison_at` is poison."""
    producer = client.create_producer(topic, batching_enabled=False)
    values, sent = [], []
    for i in range(n):
        value = (f"poison-{i}" if i == poison_at else f"good-{i}").encode()
        sent.append(
            send(
                producer,
                topic,
                value,
                partition_key=f"k{i % 3}",
                properties={"n": str(i)},
                event_timestamp=1_700_000_000_000 + i,
            )
        )
        values.append(value)
    producer.close()
    return values, sent


def kill_after_two_attempts(
    stack: Stack,
    runtimes: Runtimes,
    rec: Recorder,
    topic: str,
    dlq: str,
    sub_type: str,
    poison: bytes,
) -> dict[str, Any]:
    """Run a worker (maxAttempts 4, 1.5 s backoff) until `poison` failed twice, then SIGKILL it
    inside the backoff (the second attempt's count is persisted by then): no drain, no ack."""
    cfg = failure_config(
        stack,
        rec.function,
        topic,
        dlq,
        sub_type=sub_type,
        maxAttempts=4,
        retryBackoffInitialMs=1500,
        retryBackoffMaxMs=1500,
    )
    first = runtimes.start(cfg)
    wait_for("two attempts", lambda: times_invoked(rec)[poison] >= 2, timeout=60)
    time.sleep(0.5)
    first.kill()
    return cfg


def check_dead_letter(msg: Any, sent: Any, topic: str, attempts: int, reason: str) -> None:
    props = msg.properties()
    assert (msg.partition_key() or None) == sent.key
    assert (msg.event_timestamp() or None) == sent.event_time_ms
    assert props["n"] == sent.properties["n"]  # the original properties travel
    assert props["REAL_TOPIC"] == topic
    assert props["ORIGIN_MESSAGE_ID"] == sent.message_id
    assert props["lambdasink.attempts"] == str(attempts)
    assert props["lambdasink.reason"] == reason
    assert props["lambdasink.deadLetteredAt"].endswith("Z")
    if reason == "function_error":
        assert props["lambdasink.errorType"] == "PoisonRecord"
        assert "poison record" in props["lambdasink.error"]
    if reason in ("function_error", "partial_failure"):
        assert props["lambdasink.requestId"]


@pytest.mark.parametrize("sub_type", ["Shared", *ORDERED])
def test_poison_record_gets_exactly_max_attempts_then_dead_letters(
    stack: Stack, client: Any, runtimes: Runtimes, lambda_functions: LambdaFunctions, sub_type: str
) -> None:
    rec = selective(lambda_functions)
    topic, dlq = unique_topic("fp-poison"), unique_topic("fp-poison-dlq")
    dlq_consumer = client.subscribe(dlq, "check", initial_position=pulsar.InitialPosition.Earliest)
    values, sent = produce_keyed(client, topic, poison_at=4)
    cfg = failure_config(stack, rec.function, topic, dlq, sub_type=sub_type)
    proc = runtimes.start(cfg)
    [dead] = read_all(dlq_consumer, 1)
    assert dead.data() == b"poison-4"
    check_dead_letter(dead, sent[4], topic, 3, "function_error")
    sub = cfg["pulsar"]["subscriptionName"]
    wait_for("an empty backlog", lambda: backlog(stack, topic, sub) == 0)
    assert nothing_more(dlq_consumer)
    seen = times_invoked(rec)
    print(f"{sub_type}: invocations per record {dict(seen)}")
    assert seen[b"poison-4"] == 3
    good = [v for v in values if v != b"poison-4"]
    assert all(seen[v] == 1 for v in good), seen  # delivered, no duplicates
    if sub_type in ORDERED:
        order = [call[0] for call in invocations(rec)]
        last_poison = max(i for i, v in enumerate(order) if v == b"poison-4")
        # k1's later record (good-7) is invoked only after the poison record was settled.
        assert order.index(b"good-7") > last_poison, order
    _, metrics = proc.probe("/metrics")
    assert 'lambdasink_records_dead_lettered_total{reason="function_error"} 1' in metrics
    assert 'lambdasink_record_failures_total{reason="function_error"} 3' in metrics
    _, status = proc.probe("/status")
    assert json.loads(status)["deadLettered"] == {"function_error": 1}
    assert proc.terminate() == 0
    dlq_consumer.close()


@pytest.mark.parametrize("sub_type", ["Shared", "Failover"])
def test_attempt_count_survives_kill_9(
    stack: Stack, client: Any, runtimes: Runtimes, lambda_functions: LambdaFunctions, sub_type: str
) -> None:
    rec = selective(lambda_functions)
    topic, dlq = unique_topic("fp-kill"), unique_topic("fp-kill-dlq")
    dlq_consumer = client.subscribe(dlq, "check", initial_position=pulsar.InitialPosition.Earliest)
    values, sent = produce_keyed(client, topic, poison_at=1, n=4)
    cfg = kill_after_two_attempts(stack, runtimes, rec, topic, dlq, sub_type, b"poison-1")
    second = runtimes.start(cfg, name="runtime-2")
    [dead] = read_all(dlq_consumer, 1)
    check_dead_letter(dead, sent[1], topic, 4, "function_error")
    wait_for(
        "an empty backlog", lambda: backlog(stack, topic, cfg["pulsar"]["subscriptionName"]) == 0
    )
    seen = times_invoked(rec)
    print(f"{sub_type} kill -9: invocations per record {dict(seen)}")
    assert seen[b"poison-1"] == 4  # 2 before the kill + 2 after, not 2 + 4
    assert all(seen[v] >= 1 for v in values if v != b"poison-1")
    assert nothing_more(dlq_consumer)
    assert second.terminate() == 0
    dlq_consumer.close()


def test_attempt_count_survives_topic_unloads(
    stack: Stack, client: Any, runtimes: Runtimes, lambda_functions: LambdaFunctions
) -> None:
    rec = selective(lambda_functions)
    topic, dlq = unique_topic("fp-unload"), unique_topic("fp-unload-dlq")
    dlq_consumer = client.subscribe(dlq, "check", initial_position=pulsar.InitialPosition.Earliest)
    _, sent = produce_keyed(client, topic, poison_at=0, n=2)
    cfg = kill_after_two_attempts(stack, runtimes, rec, topic, dlq, "Exclusive", b"poison-0")
    attempts_topic = (
        f"persistent://public/default/{cfg['pulsar']['subscriptionName']}-lambdasink-attempts"
    )
    for t in (topic, attempts_topic):  # both reload from storage; broker-side counts reset
        status, body = admin(stack, "PUT", f"/admin/v2/{t.replace('://', '/')}/unload")
        assert status in (200, 204), body
    second = runtimes.start(cfg, name="runtime-2")
    [dead] = read_all(dlq_consumer, 1)
    check_dead_letter(dead, sent[0], topic, 4, "function_error")
    assert times_invoked(rec)[b"poison-0"] == 4
    assert second.terminate() == 0
    dlq_consumer.close()


def test_partial_batch_response_from_a_real_handler(
    stack: Stack, client: Any, runtimes: Runtimes, lambda_functions: LambdaFunctions
) -> None:
    rec = selective(lambda_functions, "partial")
    topic, dlq = unique_topic("fp-partial"), unique_topic("fp-partial-dlq")
    dlq_consumer = client.subscribe(dlq, "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(topic, batching_enabled=False)
    values = [(f"poison-{i}" if i in (2, 5) else f"good-{i}").encode() for i in range(8)]
    sent = [send(producer, topic, v, properties={"n": str(i)}) for i, v in enumerate(values)]
    producer.close()
    cfg = failure_config(stack, rec.function, topic, dlq, reportBatchItemFailures=True)
    cfg["sink"].update({"batchMaxSize": 8, "batchMaxTimeMs": 1000})
    proc = runtimes.start(cfg)
    dead = read_all(dlq_consumer, 2)
    assert sorted(m.data() for m in dead) == [b"poison-2", b"poison-5"]
    for m in dead:
        check_dead_letter(m, sent[values.index(m.data())], topic, 3, "partial_failure")
    wait_for(
        "an empty backlog", lambda: backlog(stack, topic, cfg["pulsar"]["subscriptionName"]) == 0
    )
    seen = times_invoked(rec)
    print(f"partial: invocations {invocations(rec)}")
    assert seen[b"poison-2"] == seen[b"poison-5"] == 3
    assert all(seen[v] == 1 for v in values if not v.startswith(b"poison")), seen
    assert invocations(rec)[0] == values  # the first call had them all
    _, metrics = proc.probe("/metrics")
    assert "lambdasink_partial_batch_failures_total 6" in metrics
    assert proc.terminate() == 0
    dlq_consumer.close()


def test_malformed_partial_response_fails_the_whole_batch(
    stack: Stack, client: Any, runtimes: Runtimes, lambda_functions: LambdaFunctions
) -> None:
    rec = selective(lambda_functions, "malformed")
    topic, dlq = unique_topic("fp-malformed"), unique_topic("fp-malformed-dlq")
    dlq_consumer = client.subscribe(dlq, "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(topic, batching_enabled=False)
    values = [b"good-0", b"poison-1", b"good-2"]
    for v in values:
        send(producer, topic, v)
    producer.close()
    cfg = failure_config(
        stack, rec.function, topic, dlq, reportBatchItemFailures=True, maxAttempts=2
    )
    cfg["sink"].update({"batchMaxSize": 3, "batchMaxTimeMs": 1000})
    proc = runtimes.start(cfg)
    dead = read_all(dlq_consumer, 3)
    assert sorted(m.data() for m in dead) == sorted(values)
    assert {m.properties()["lambdasink.reason"] for m in dead} == {"invalid_response"}
    assert "not in this batch" in dead[0].properties()["lambdasink.error"]
    assert invocations(rec) == [values, values]
    assert "invalid partial batch response" in proc.stderr()
    assert proc.terminate() == 0
    dlq_consumer.close()


def test_old_records_never_reach_the_function(
    stack: Stack, client: Any, runtimes: Runtimes, lambda_functions: LambdaFunctions
) -> None:
    rec = selective(lambda_functions)
    topic, dlq = unique_topic("fp-age"), unique_topic("fp-age-dlq")
    dlq_consumer = client.subscribe(dlq, "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(topic, batching_enabled=False)
    old = [f"old-{i}".encode() for i in range(3)]
    for v in old:
        send(producer, topic, v)
    time.sleep(2.5)  # older than maxRecordAgeMs by the time the worker starts
    cfg = failure_config(stack, rec.function, topic, dlq, maxRecordAgeMs=2000)
    proc = runtimes.start(cfg)
    dead = read_all(dlq_consumer, 3)
    assert sorted(m.data() for m in dead) == old
    assert {m.properties()["lambdasink.reason"] for m in dead} == {"too_old"}
    assert {m.properties()["lambdasink.attempts"] for m in dead} == {"0"}
    fresh = b"fresh-0"
    send(producer, topic, fresh)
    producer.close()
    wait_for("the fresh record", lambda: times_invoked(rec)[fresh] == 1)
    assert not any(v in times_invoked(rec) for v in old)
    _, metrics = proc.probe("/metrics")
    assert "lambdasink_records_too_old_total 3" in metrics
    assert proc.terminate() == 0
    dlq_consumer.close()


def test_circuit_breaker_stops_pulling_and_resumes(
    stack: Stack,
    client: Any,
    runtimes: Runtimes,
    lambda_functions: LambdaFunctions,
    lambda_faults: LambdaFaults,
) -> None:
    rec = selective(lambda_functions)
    topic, dlq = unique_topic("fp-breaker"), unique_topic("fp-breaker-dlq")
    dlq_consumer = client.subscribe(dlq, "check", initial_position=pulsar.InitialPosition.Earliest)
    # Injected: the emulator cannot fail every call on demand; the gateway answers 503 to each
    # call until the fault is cleared (the function is "down").
    lambda_faults.inject(rec.function, "server_error", count=-1, status=503)
    producer = client.create_producer(topic, batching_enabled=False)
    values = [f"good-{i}".encode() for i in range(30)]
    for v in values:
        send(producer, topic, v)
    cfg = failure_config(
        stack,
        rec.function,
        topic,
        dlq,
        maxAttempts=2,
        circuitBreaker={
            "minimumCalls": 5,
            "windowMs": 10000,
            "probeIntervalInitialMs": 500,
            "probeIntervalMaxMs": 2000,
        },
    )
    cfg["sink"].update({"invokeMaxRetries": 0})
    cfg["pulsar"]["receiverQueueSize"] = 5
    proc = runtimes.process(cfg).start()  # never ready while the function is down

    def breaker_open() -> bool:
        status, body = proc.probe("/readyz")
        return status == 503 and "circuit breaker" in body

    wait_for("the breaker to open", breaker_open, timeout=60)
    _, body = proc.probe("/readyz")
    print("readyz while open:", body.strip())

    def received() -> int:
        _, metrics = proc.probe("/metrics")
        line = next(
            m for m in metrics.splitlines() if m.startswith("lambdasink_messages_received_total")
        )
        return int(float(line.split()[-1]))

    before = received()
    time.sleep(3)
    assert received() == before < len(values)  # not pulling while open
    assert json.loads(proc.probe("/status")[1])["breaker"]["state"] in ("open", "probing")
    assert nothing_more(dlq_consumer)  # no record's attempts were burnt
    lambda_faults.clear(rec.function)
    wait_for("every record delivered", lambda: delivered_once(rec, values), timeout=90)
    wait_for("ready again", lambda: proc.probe("/readyz")[0] == 200, timeout=30)
    wait_for(
        "an empty backlog", lambda: backlog(stack, topic, cfg["pulsar"]["subscriptionName"]) == 0
    )
    assert nothing_more(dlq_consumer)
    seen = times_invoked(rec)
    print(f"breaker: delivered {len(seen)}, duplicates {sum(c - 1 for c in seen.values())}")
    assert set(seen) == set(values)
    _, metrics = proc.probe("/metrics")
    assert 'lambdasink_circuit_breaker_transitions_total{state="open"}' in metrics
    assert "lambdasink_circuit_breaker_open 0" in metrics
    producer.close()
    assert proc.terminate() == 0
    dlq_consumer.close()


def test_dead_letter_topic_it_may_not_write_loses_nothing(
    stack: Stack, client: Any, runtimes: Runtimes, lambda_functions: LambdaFunctions
) -> None:
    rec = selective(lambda_functions)
    topic = unique_topic("fp-baddlq")
    tenant = unique("no-such-tenant")
    dlq = f"persistent://{tenant}/ns/dlq"  # the namespace does not exist: producing fails
    producer = client.create_producer(topic, batching_enabled=False)
    send(producer, topic, b"poison-0")
    send(producer, topic, b"good-1")
    producer.close()
    cfg = failure_config(stack, rec.function, topic, dlq, maxAttempts=1, retryBackoffMaxMs=500)
    proc = runtimes.start(cfg)
    sub = cfg["pulsar"]["subscriptionName"]

    def dlq_failing() -> bool:
        return bool(json.loads(proc.probe("/status")[1]).get("deadLetterError"))

    wait_for("dead-letter writes to fail", dlq_failing, timeout=60)
    wait_for("the good record", lambda: times_invoked(rec)[b"good-1"] == 1)
    time.sleep(1)
    assert backlog(stack, topic, sub) == 1  # the poison record is kept, not acked
    _, metrics = proc.probe("/metrics")
    assert "lambdasink_dead_letter_errors_total" in metrics
    # Make the topic writable; the kept record goes there on the next try, then is acked.
    status, body = admin(
        stack, "PUT", f"/admin/v2/tenants/{tenant}", {"allowedClusters": ["standalone"]}
    )
    assert status in (200, 204), body
    status, body = admin(stack, "PUT", f"/admin/v2/namespaces/{tenant}/ns")
    assert status in (200, 204), body
    dlq_consumer = client.subscribe(dlq, "check", initial_position=pulsar.InitialPosition.Earliest)
    [dead] = read_all(dlq_consumer, 1)
    assert dead.data() == b"poison-0"
    wait_for("an empty backlog", lambda: backlog(stack, topic, sub) == 0)
    assert times_invoked(rec)[b"poison-0"] == 1
    assert proc.terminate() == 0
    dlq_consumer.close()


def test_attempt_count_survives_a_broker_restart(
    stack: Stack, runtimes: Runtimes, lambda_functions: LambdaFunctions
) -> None:
    rec = selective(lambda_functions)
    topic, dlq = unique_topic("fp-restart"), unique_topic("fp-restart-dlq")
    client = pulsar_client(stack)
    try:
        dlq_consumer = client.subscribe(
            dlq, "check", initial_position=pulsar.InitialPosition.Earliest
        )
        values, sent = produce_keyed(client, topic, poison_at=1, n=3)
        cfg = kill_after_two_attempts(stack, runtimes, rec, topic, dlq, "Failover", b"poison-1")
        # and the broker goes down and up before a new worker starts
        t0 = time.monotonic()
        subprocess.run(
            [sys.executable, str(REPO / "dev" / "stack"), "restart", "pulsar"],
            check=True,
            cwd=REPO,
            timeout=300,
        )
        print(f"broker restarted in {time.monotonic() - t0:.0f}s")
        second = runtimes.start(cfg, name="runtime-2")
        [dead] = read_all(dlq_consumer, 1, timeout_s=120)
        check_dead_letter(dead, sent[1], topic, 4, "function_error")
        seen = times_invoked(rec)
        print(f"broker restart: invocations per record {dict(seen)}")
        assert seen[b"poison-1"] == 4
        wait_for(
            "every good record",
            lambda: all(seen_v >= 1 for seen_v in (times_invoked(rec)[v] for v in values)),
        )
        assert second.terminate() == 0
        dlq_consumer.close()
    finally:
        client.close()


class Order(pulsar.schema.Record):  # type: ignore[misc]
    name = pulsar.schema.String()
    qty = pulsar.schema.Integer()


@pytest.mark.parametrize("kind", ["STRING", "AVRO"])
def test_dead_letter_copy_keeps_the_writer_schema(
    stack: Stack, client: Any, runtimes: Runtimes, lambda_functions: LambdaFunctions, kind: str
) -> None:
    rec = selective(lambda_functions)
    topic, dlq = unique_topic("fp-schema"), unique_topic("fp-schema-dlq")
    schema: Any = (
        pulsar.schema.StringSchema() if kind == "STRING" else pulsar.schema.AvroSchema(Order)
    )
    good: Any = "good-0" if kind == "STRING" else Order(name="good-0", qty=1)
    bad: Any = "poison-1" if kind == "STRING" else Order(name="poison-1", qty=2)
    producer = client.create_producer(topic, schema=schema)
    producer.send(good)
    producer.send(bad, partition_key="k", properties={"n": "1"})
    producer.close()
    cfg = failure_config(stack, rec.function, topic, dlq, maxAttempts=1)
    proc = runtimes.start(cfg)
    dlq_consumer = client.subscribe(
        dlq, "check", schema=schema, initial_position=pulsar.InitialPosition.Earliest
    )
    [dead] = read_all(dlq_consumer, 1)
    if kind == "STRING":
        assert dead.value() == "poison-1"
    else:
        assert (dead.value().name, dead.value().qty) == ("poison-1", 2)
    assert dead.partition_key() == "k" and dead.properties()["n"] == "1"
    path = dlq.split("://", 1)[1]
    status, info = admin(stack, "GET", f"/admin/v2/schemas/{path}/schema")
    assert status == 200, info
    assert info["type"] == kind
    if kind == "AVRO":  # the writer schema itself (a primitive schema has no definition)
        _, source = admin(stack, "GET", f"/admin/v2/schemas/{topic.split('://', 1)[1]}/schema")
        assert json.loads(info["data"]) == json.loads(source["data"])
    assert proc.terminate() == 0
    dlq_consumer.close()


def test_bisect_isolates_the_poison_record(
    stack: Stack, client: Any, runtimes: Runtimes, lambda_functions: LambdaFunctions
) -> None:
    rec = selective(lambda_functions)
    topic, dlq = unique_topic("fp-bisect"), unique_topic("fp-bisect-dlq")
    dlq_consumer = client.subscribe(dlq, "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(topic, batching_enabled=False)
    values = [(b"poison-5" if i == 5 else f"good-{i}".encode()) for i in range(8)]
    for v in values:
        send(producer, topic, v)
    producer.close()
    cfg = failure_config(stack, rec.function, topic, dlq, bisectOnFunctionError=True)
    cfg["sink"].update({"batchMaxSize": 8, "batchMaxTimeMs": 1000})
    proc = runtimes.start(cfg)
    [dead] = read_all(dlq_consumer, 1)
    assert dead.data() == b"poison-5"
    assert dead.properties()["lambdasink.attempts"] == "3"
    wait_for(
        "an empty backlog", lambda: backlog(stack, topic, cfg["pulsar"]["subscriptionName"]) == 0
    )
    calls = invocations(rec)
    print(f"bisect: invocations {[len(c) for c in calls]}")
    # 8 fail → halves of 4 (the first succeeds) → 2 → 1: splits use no attempts; alone, 3.
    assert calls[:4] == [values, values[:4], values[4:], values[4:6]]
    assert calls.count([b"poison-5"]) == 3
    # Each record rides along in every failing half it is in (as with Lambda's own bisection);
    # each is acknowledged once, and only the poison record is dead-lettered.
    seen = times_invoked(rec)
    assert [seen[v] for v in values] == [2, 2, 2, 2, 4, 6, 3, 3], seen
    assert nothing_more(dlq_consumer)
    _, metrics = proc.probe("/metrics")
    assert "lambdasink_bisects_total 3" in metrics
    assert proc.terminate() == 0
    dlq_consumer.close()
