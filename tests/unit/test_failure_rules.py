"""Pure failure rules: which failures count, partial responses, dead-letter properties, the
circuit breaker and the failurePolicy configuration."""

from __future__ import annotations

import pytest

from lambdasink_runtime.breaker import CircuitBreaker
from lambdasink_runtime.config import RuntimeConfig
from lambdasink_runtime.errors import ConfigError, InvokeError
from lambdasink_runtime.failure import (
    Failure,
    PartialResponseError,
    batch_item_failures,
    dead_letter_properties,
    from_invoke_error,
)

IDS = ["1:0:-1:-1", "1:1:-1:-1"]


@pytest.mark.parametrize(
    ("err", "reason", "counts"),
    [
        (
            InvokeError("x", retriable=True, code="FunctionError", error_type="ValueError"),
            "function_error",
            True,
        ),
        (
            InvokeError(
                "x", retriable=True, code="FunctionError", error_type="Runtime.ImportModuleError"
            ),
            "function_init_error",
            False,
        ),
        (InvokeError("x", retriable=False, status=413), "too_large", True),
        (InvokeError("x", retriable=False, status=400), "bad_request", True),
        (InvokeError("x", retriable=True, status=429), "throttled", False),
        (InvokeError("x", retriable=True, status=503), "server_error", False),
        (InvokeError("x", retriable=False, status=403), "forbidden", False),
        (InvokeError("x", retriable=False, status=404), "not_found", False),
        (InvokeError("x", retriable=True, code="Timeout"), "timeout", False),
    ],
)
def test_which_failures_use_up_attempts(err: InvokeError, reason: str, counts: bool) -> None:
    failure = from_invoke_error(err)
    assert (failure.reason, failure.counts) == (reason, counts)


@pytest.mark.parametrize(
    "body", [b"", b"null", b'"ok"', b"{}", b'{"batchItemFailures": []}', b"not json"]
)
def test_success_shapes(body: bytes) -> None:
    assert batch_item_failures(body, IDS) == set()


def test_listed_items() -> None:
    body = b'{"batchItemFailures": [{"itemIdentifier": "1:1:-1:-1"}]}'
    assert batch_item_failures(body, IDS) == {"1:1:-1:-1"}


@pytest.mark.parametrize(
    "body",
    [
        b'{"batchItemFailures": {"itemIdentifier": "1:1:-1:-1"}}',
        b'{"batchItemFailures": [{"itemIdentifier": null}]}',
        b'{"batchItemFailures": [{"itemIdentifier": 5}]}',
        b'{"batchItemFailures": ["1:1:-1:-1"]}',
        b'{"batchItemFailures": [{"itemIdentifier": "2:2:-1:-1"}]}',
    ],
)
def test_malformed_or_unknown_fails_the_batch(body: bytes) -> None:
    with pytest.raises(PartialResponseError):
        batch_item_failures(body, IDS)


def test_dead_letter_properties_say_why() -> None:
    failure = Failure(
        "function_error", "boom", error_type="ValueError", status=200, request_id="r1"
    )
    props = dead_letter_properties(
        topic="persistent://public/default/t",
        message_id="1:2:-1:-1",
        attempts=3,
        failure=failure,
        subscription="s",
        now_ms=1_700_000_000_123,
    )
    assert props == {
        "REAL_TOPIC": "persistent://public/default/t",
        "ORIGIN_MESSAGE_ID": "1:2:-1:-1",
        "lambdasink.subscription": "s",
        "lambdasink.attempts": "3",
        "lambdasink.reason": "function_error",
        "lambdasink.error": "boom",
        "lambdasink.errorType": "ValueError",
        "lambdasink.httpStatus": "200",
        "lambdasink.requestId": "r1",
        "lambdasink.deadLetteredAt": "2023-11-14T22:13:20.123Z",
    }


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(
        failure_ratio=0.5,
        minimum_calls=4,
        window_s=10,
        probe_initial_s=1,
        probe_max_s=4,
        clock=clock,
    )


def test_breaker_opens_on_sustained_failures_and_probes_with_backoff() -> None:
    clock = Clock()
    cb = breaker(clock)
    for ok in (True, False, False, True):
        cb.record(ok, "server_error")
    assert str(cb.state) == "open"  # 2 of 4 failed
    assert cb.acquire() == pytest.approx(1.0)
    clock.now = 1.0
    assert cb.acquire() == 0  # the probe
    assert str(cb.state) == "probing"
    assert cb.acquire() > 0  # one probe at a time
    cb.record(False, "server_error", probe=True)
    clock.now = 2.5
    assert cb.acquire() == pytest.approx(0.5)  # interval doubled to 2 s
    clock.now = 3.0
    assert cb.acquire() == 0
    cb.record(True, probe=True)
    assert str(cb.state) == "closed" and cb.acquire() == 0


def test_breaker_needs_minimum_calls_and_forgets_old_ones() -> None:
    clock = Clock()
    cb = breaker(clock)
    for _ in range(3):
        cb.record(False, "timeout")
    assert cb.state == "closed"
    clock.now = 11  # the failures left the window
    cb.record(True)
    cb.record(False)
    cb.record(True)
    cb.record(True)
    assert cb.state == "closed"


def doc(**failure: object) -> dict[str, object]:
    return {
        "pulsar": {"topics": ["persistent://t1/ns1/in"], "subscriptionName": "s"},
        "sink": {"awsRegion": "r", "lambdaFunctionName": "f"},
        "failurePolicy": failure,
    }


def test_failure_policy_defaults() -> None:
    cfg = RuntimeConfig.from_mapping(doc()).failure
    assert (cfg.max_attempts, cfg.on_exhausted, cfg.max_record_age_ms) == (3, "block", 0)
    assert cfg.attempts_topic == "persistent://t1/ns1/s-lambdasink-attempts"
    assert cfg.circuit_breaker.enabled and cfg.circuit_breaker.failure_ratio == 0.5


def test_reference_dead_letter_settings_set_the_defaults() -> None:
    d = doc()
    d["pulsar"] = {"topics": ["in"], "maxRedeliverCount": 4, "deadLetterTopic": "dlq"}
    cfg = RuntimeConfig.from_mapping(d).failure
    assert (cfg.max_attempts, cfg.on_exhausted) == (5, "deadLetter")


@pytest.mark.parametrize(
    ("failure", "field"),
    [
        ({"onExhausted": "retry"}, "failurePolicy.onExhausted"),
        ({"maxAttempts": 0}, "failurePolicy.maxAttempts"),
        ({"maxRecordAgeMs": 1000}, "failurePolicy.maxRecordAgeMs"),  # with block
        ({"retryBackoffInitialMs": 10, "retryBackoffMaxMs": 5}, "failurePolicy.retryBackoffMaxMs"),
        ({"circuitBreaker": {"failureRatio": 1.5}}, "failurePolicy.circuitBreaker.failureRatio"),
        ({"circuitBreaker": {"nope": 1}}, "failurePolicy.circuitBreaker.nope"),
        ({"bisect": True}, "failurePolicy.bisect"),
    ],
)
def test_failure_policy_errors_name_the_field(failure: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RuntimeConfig.from_mapping(doc(**failure))
    assert info.value.field == field


def test_partial_responses_need_synchronous_invocation() -> None:
    d = doc(reportBatchItemFailures=True)
    d["sink"] = {"awsRegion": "r", "lambdaFunctionName": "f", "synchronousInvocation": False}
    with pytest.raises(ConfigError, match="asynchronous invocation"):
        RuntimeConfig.from_mapping(d)


def test_pattern_must_not_match_our_own_topics() -> None:
    d = doc(attemptsTopic="persistent://public/default/in-attempts")
    d["pulsar"] = {"topicsPattern": "persistent://public/default/in-.*"}
    with pytest.raises(ConfigError) as info:
        RuntimeConfig.from_mapping(d)
    assert info.value.field == "failurePolicy.attemptsTopic"


def test_partial_responses_put_message_id_in_every_item() -> None:
    d = doc(reportBatchItemFailures=True)
    d["sink"] = {"awsRegion": "r", "lambdaFunctionName": "f", "metadataFields": "topic"}
    cfg = RuntimeConfig.from_mapping(d)
    assert cfg.sink.metadata_fields == ("topic", "messageId")
