"""The invoker's error classification and retry policy, through botocore's real HTTP stack.

The endpoint is tests/lambda_api.py, a fake Lambda API used only because the real local
emulator cannot produce throttles, 5xx, 413, function errors or GetFunction answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace

import pytest
from tests.lambda_api import LambdaApi, Reply

from lambdasink_runtime.config import SinkConfig
from lambdasink_runtime.errors import FunctionCheckError, InvokeError, failure_reason
from lambdasink_runtime.invoker import Invoker, Transport, classify
from lambdasink_runtime.metrics import Metrics

PAYLOAD = b'[{"value":"hello"}]'


@pytest.fixture
def api() -> Iterator[LambdaApi]:
    with LambdaApi(functions=("fn", "other")) as server:
        yield server


def sink_for(api: LambdaApi, **overrides: object) -> SinkConfig:
    base = SinkConfig(
        aws_region="us-east-1",
        lambda_function_name="fn",
        aws_endpoint=api.url,
        aws_access_key="AKIDEXAMPLE",
        aws_secret_key="not-a-real-secret",
        invoke_max_retries=3,
        invoke_backoff_initial_ms=1,
        invoke_backoff_max_ms=4,
        invoke_timeout_ms=2000,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


class Sleeps:
    """Records requested delays; waits for real only a tiny bounded time."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(min(delay, 0.01))


@pytest.fixture(params=["http", "botocore"])
def transport(request: pytest.FixtureRequest) -> Transport:
    """Every invocation test runs on both paths: the lean HTTP one and boto3's `invoke`."""
    value: Transport = request.param
    return value


def make(
    api: LambdaApi, transport: Transport = "auto", **overrides: object
) -> tuple[Invoker, Sleeps, Metrics]:
    sleeps, metrics = Sleeps(), Metrics()
    inv = Invoker(sink_for(api, **overrides), metrics=metrics, sleep=sleeps, transport=transport)
    return inv, sleeps, metrics


def run(inv: Invoker, payload: bytes = PAYLOAD) -> None:
    try:
        asyncio.run(inv.invoke(payload))
    finally:
        inv.close()


def failure(inv: Invoker, payload: bytes = PAYLOAD) -> InvokeError:
    with pytest.raises(InvokeError) as info:
        run(inv, payload)
    return info.value


def test_sync_success_sends_payload_as_request_response(
    api: LambdaApi, transport: Transport
) -> None:
    inv, sleeps, metrics = make(api, transport)
    run(inv)
    (req,) = api.invocations()
    assert req.path == "/2015-03-31/functions/fn/invocations"
    assert req.headers["x-amz-invocation-type"] == "RequestResponse"
    assert req.body == PAYLOAD
    assert "AKIDEXAMPLE" in req.headers["authorization"]  # signed with the static keys
    assert sleeps.delays == []
    assert metrics.invocations.value("success") == 1


def test_event_invocation_202_is_success(api: LambdaApi, transport: Transport) -> None:
    inv, _, metrics = make(api, transport, synchronous_invocation=False)
    run(inv)
    (req,) = api.invocations()
    assert req.headers["x-amz-invocation-type"] == "Event"
    assert metrics.invocations.value("success") == 1


@pytest.mark.parametrize("kind", ["Handled", "Unhandled"])
def test_function_error_is_raised_at_once_for_the_failure_policy(
    api: LambdaApi, kind: str, transport: Transport
) -> None:
    # Whether a record gets another attempt is the pipeline's failure policy (counted per
    # record, durably); the invoker only retries calls that did not run the function.
    api.script(*[Reply.function_error(kind)] * 4)
    inv, sleeps, metrics = make(api, transport, invoke_max_retries=3)
    err = failure(inv)
    assert err.code == "FunctionError"
    assert kind in str(err) and "RuntimeError" in str(err)
    assert err.error_type == "RuntimeError"
    assert failure_reason(err) == "function_error"
    assert len(api.invocations()) == 1
    assert sleeps.delays == []
    assert metrics.invoke_retries.value("function_error") == 0
    assert metrics.invocations.value("function_error") == 1
    assert metrics.invocations.value("success") == 0


def test_success_returns_body_and_request_id(api: LambdaApi, transport: Transport) -> None:
    inv, _, metrics = make(api, transport)
    reply = asyncio.run(inv.invoke(b'[{"v": 1}]'))
    inv.close()
    assert isinstance(reply.body, bytes)
    assert reply.request_id
    assert metrics.invocations.value("success") == 1


def test_throttle_honours_retry_after(api: LambdaApi, transport: Transport) -> None:
    api.script(Reply.error(429, "TooManyRequestsException", "Rate exceeded", retry_after=0.05))
    inv, sleeps, metrics = make(api, transport)
    run(inv)
    assert len(api.invocations()) == 2
    assert sleeps.delays and sleeps.delays[0] >= 0.05  # backoff alone would be <= 4 ms
    assert metrics.invoke_retries.value("throttled") == 1


class Attempts:
    def __init__(self) -> None:
        self.seen: list[tuple[float, float, str]] = []

    def attempt_ended(
        self, started_at: float, latency_s: float, outcome: str, retry_after_s: float | None
    ) -> None:
        self.seen.append((started_at, latency_s, outcome))
        if outcome == "throttled":
            assert retry_after_s == pytest.approx(0.01)

    async def wait_retry(self, delay_s: float, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.seen.append((0.0, delay_s, "wait"))
        await sleep(delay_s)


def test_every_attempt_is_reported_to_the_observer(api: LambdaApi, transport: Transport) -> None:
    """The adaptive in-flight limit hears the throttles the retries here would hide."""
    api.script(
        Reply.error(429, "TooManyRequestsException", retry_after=0.01),
        Reply.error(503, "ServiceException"),
    )
    inv, _, _ = make(api, transport)
    inv.observer = observer = Attempts()
    run(inv)
    outcomes = [o for _, _, o in observer.seen]
    assert outcomes == ["throttled", "wait", "server_error", "wait", "success"]
    waits = [d for _, d, o in observer.seen if o == "wait"]
    assert waits[0] >= 0.01  # Retry-After, waited through the observer (it frees the slot)
    starts = [s for s, _, o in observer.seen if o != "wait"]
    assert starts == sorted(starts) and all(lat >= 0 for _, lat, _ in observer.seen)


def test_throttle_retry_after_is_parsed_by_botocore(api: LambdaApi, transport: Transport) -> None:
    api.script(Reply.error(429, "TooManyRequestsException", retry_after=0.02))
    inv, _, _ = make(api, transport, invoke_max_retries=0)
    err = failure(inv)
    assert err.status == 429 and err.retriable
    assert err.retry_after_s == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "ServiceException"), (502, "EC2UnexpectedException"), (503, "ServiceUnavailable")],
)
def test_server_errors_are_retried(
    api: LambdaApi, status: int, code: str, transport: Transport
) -> None:
    api.script(Reply.error(status, code), Reply.error(status, code))
    inv, sleeps, metrics = make(api, transport)
    run(inv)
    assert len(api.invocations()) == 3
    assert len(sleeps.delays) == 2
    assert metrics.invoke_retries.value("server_error") == 2


def test_botocore_does_not_retry_on_its_own(api: LambdaApi, transport: Transport) -> None:
    api.script(Reply.error(503, "ServiceUnavailable"), Reply.error(503, "ServiceUnavailable"))
    inv, _, _ = make(api, transport, invoke_max_retries=0)
    err = failure(inv)
    assert err.status == 503 and err.retriable
    assert len(api.invocations()) == 1  # our policy is the only one


def test_retries_are_bounded(api: LambdaApi, transport: Transport) -> None:
    api.script(*[Reply.error(500, "ServiceException")] * 10)
    inv, sleeps, _ = make(api, transport, invoke_max_retries=2)
    err = failure(inv)
    assert err.status == 500
    assert len(api.invocations()) == 3
    assert all(d <= 0.004 for d in sleeps.delays)  # capped by invokeBackoffMaxMs


def test_413_is_not_retried_with_the_same_payload(api: LambdaApi, transport: Transport) -> None:
    small = LambdaApi(max_body=10)
    with small:
        inv, sleeps, metrics = make(small, transport)
        err = failure(inv)
        assert err.status == 413 and not err.retriable
        assert err.code == "RequestTooLargeException"
        assert failure_reason(err) == "too_large"
        assert len(small.invocations()) == 1
        assert sleeps.delays == []
        assert metrics.invocations.value("too_large") == 1


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (404, "ResourceNotFoundException", "not_found"),
        (403, "AccessDeniedException", "forbidden"),
        (400, "InvalidRequestContentException", "bad_request"),
    ],
)
def test_configuration_errors_are_not_retried(
    api: LambdaApi, status: int, code: str, reason: str, transport: Transport
) -> None:
    api.script(Reply.error(status, code))
    inv, sleeps, _ = make(api, transport)
    err = failure(inv)
    assert (err.status, err.code, err.retriable) == (status, code, False)
    assert failure_reason(err) == reason
    assert len(api.invocations()) == 1
    assert sleeps.delays == []


def test_missing_function_at_invoke_is_a_404(api: LambdaApi, transport: Transport) -> None:
    inv, _, _ = make(api, transport, lambda_function_name="nope")
    err = failure(inv)
    assert err.status == 404 and not err.retriable


def test_timeout_is_retried(api: LambdaApi, transport: Transport) -> None:
    api.script(Reply(200, b"null", delay_s=1.0))
    inv, sleeps, metrics = make(api, transport, invoke_timeout_ms=300)
    run(inv)
    assert len(api.invocations()) == 2
    assert metrics.invoke_retries.value("timeout") == 1
    assert len(sleeps.delays) == 1


def test_connection_refused_is_retriable(transport: Transport) -> None:
    with LambdaApi() as gone:
        url = gone.url
    sink = SinkConfig(
        aws_region="us-east-1",
        lambda_function_name="fn",
        aws_endpoint=url,
        aws_access_key="AKIDEXAMPLE",
        aws_secret_key="x",
        invoke_max_retries=0,
    )
    inv = Invoker(sink, transport=transport)
    with pytest.raises(InvokeError) as info:
        run(inv)
    assert info.value.retriable
    assert failure_reason(info.value) == "connectionerror"


def test_client_is_sized_and_not_retrying(api: LambdaApi, transport: Transport) -> None:
    inv, _, _ = make(api, transport, max_in_flight=7)
    try:
        cfg = inv.client.meta.config
        assert getattr(cfg, "max_pool_connections", None) == 7
        assert getattr(cfg, "retries", {}).get("total_max_attempts") == 1
    finally:
        inv.close()


def test_jittered_backoff_grows_and_is_capped(api: LambdaApi, transport: Transport) -> None:
    inv, _, _ = make(api, transport, invoke_backoff_initial_ms=100, invoke_backoff_max_ms=1000)
    try:
        err = InvokeError("x", retriable=True)
        for attempt, cap in [(0, 0.1), (1, 0.2), (2, 0.4), (5, 1.0)]:
            d = inv.backoff(attempt, err)
            assert cap / 2 <= d <= cap
    finally:
        inv.close()


def test_classify_unexpected_exception_is_not_retriable() -> None:
    err = classify(ValueError("bug"))
    assert not err.retriable and err.code == "Unexpected"


# -- start-up check ---------------------------------------------------------------------------


def test_function_check_passes_for_existing_function(api: LambdaApi) -> None:
    inv, _, _ = make(api)
    try:
        inv.check_function()
    finally:
        inv.close()
    assert [r.method for r in api.requests] == ["GET"]
    assert api.requests[0].path == "/2015-03-31/functions/fn"


def test_function_check_missing_function_names_it(api: LambdaApi) -> None:
    inv, _, _ = make(api, lambda_function_name="missing-fn")
    with pytest.raises(FunctionCheckError, match="'missing-fn' not found"):
        inv.check_function()
    inv.close()


def test_function_check_denied_names_function_and_permission(api: LambdaApi) -> None:
    api.denied.add("fn")
    inv, _, _ = make(api)
    with pytest.raises(FunctionCheckError) as info:
        inv.check_function()
    inv.close()
    assert "'fn'" in str(info.value) and "lambda:GetFunction" in str(info.value)
    assert "not-a-real-secret" not in str(info.value)


def test_function_check_unreachable_endpoint() -> None:
    with LambdaApi() as gone:
        url = gone.url
    sink = SinkConfig(
        aws_region="us-east-1",
        lambda_function_name="fn",
        aws_endpoint=url,
        aws_access_key="AKIDEXAMPLE",
        aws_secret_key="x",
        invoke_backoff_initial_ms=1,
        invoke_backoff_max_ms=2,
    )
    inv = Invoker(sink)
    with pytest.raises(FunctionCheckError, match="cannot check lambda function 'fn'"):
        inv.check_function(attempts=2)
    inv.close()
