"""Lambda invocations: one boto3 client, our own retry policy, and error classification.

botocore's retries are off (one attempt per call) so the policy here is the only one:

- success: the call returned and carried no `FunctionError` (sync 200, async 202);
- retried here, with bounded, jittered exponential backoff (`invokeMaxRetries`): calls that did
  not run the function: 429 throttles (waiting at least `Retry-After`/`retryAfterSeconds`),
  5xx, 409 conflicts (function being updated), timeouts and connection errors;
- raised at once: function errors (Handled/Unhandled: the records' failure policy decides,
  counting attempts per record in the pipeline), 413 (the same payload can never fit; the
  pipeline splits multi-record batches) and other 4xx (missing function, denied permission,
  bad request).

An attempt is blocking and runs in a thread pool sized to `max_in_flight`; waits between
attempts are `asyncio.sleep`, so a retrying batch holds no thread. Invocations go through
`lambda_http` (botocore's credentials and SigV4, our own kept-alive connections, ~3x less CPU
per call) unless a proxy applies, in which case they use the boto3 client like GetFunction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from .credentials import AwsSession, session_for
from .errors import FunctionCheckError, InvokeError, failure_reason
from .inflight_limit import AttemptObserver
from .lambda_http import LambdaHttp, http_error, parse_retry_after, proxied
from .metrics import Metrics

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

    from .config import SinkConfig

log = logging.getLogger("lambdasink.invoker")

MAX_RETRY_AFTER_S = 300.0
Transport = Literal["auto", "http", "botocore"]


def classify(exc: Exception) -> InvokeError:
    """Turn what botocore raised into an `InvokeError` saying whether a retry may help."""
    if isinstance(exc, InvokeError):
        return exc
    if isinstance(exc, ClientError):
        resp: dict[str, Any] = dict(exc.response)
        error = resp.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) or None
        message = str(error.get("Message", ""))[:300]
        raw = resp.get("retryAfterSeconds") or error.get("retryAfterSeconds")
        return http_error(status, code, message, parse_retry_after(raw, MAX_RETRY_AFTER_S))
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return InvokeError(f"timed out: {exc}", retriable=True, code="Timeout")
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError):
        return InvokeError(f"connection failed: {exc}", retriable=True, code="ConnectionError")
    if isinstance(exc, NoCredentialsError):
        return InvokeError("no AWS credentials found", retriable=False, code="Credentials")
    if isinstance(exc, BotoCoreError):
        return InvokeError(f"{type(exc).__name__}: {exc}", retriable=True, code="ConnectionError")
    return InvokeError(f"{type(exc).__name__}: {exc}", retriable=False, code="Unexpected")


def _function_error(kind: str, body: bytes, request_id: str) -> InvokeError:
    detail = ""
    error_type = ""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error_type = str(parsed.get("errorType", ""))
        detail = f"{error_type}: {str(parsed.get('errorMessage', ''))[:200]}"
    return InvokeError(
        f"function error ({kind}) {detail}".rstrip(),
        retriable=True,
        code="FunctionError",
        request_id=request_id,
        error_type=error_type or kind,
    )


@dataclass(frozen=True, slots=True)
class Response:
    """What a successful invocation returned (the body is empty for asynchronous ones)."""

    body: bytes = b""
    request_id: str = ""


class Invoker:
    """Invokes one Lambda function; `invoke` applies the retry policy and raises on failure."""

    def __init__(
        self,
        sink: SinkConfig,
        *,
        session: AwsSession | None = None,
        metrics: Metrics | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        transport: Transport = "auto",
        observer: AttemptObserver | None = None,
    ) -> None:
        #: Hears how each attempt ended (the adaptive in-flight limit learns from throttles
        #: that the retries here would otherwise hide).
        self.observer = observer
        self.function = sink.lambda_function_name
        self.invocation_type = "RequestResponse" if sink.synchronous_invocation else "Event"
        self.max_retries = sink.invoke_max_retries
        self.backoff_initial_s = sink.invoke_backoff_initial_ms / 1000
        self.backoff_max_s = sink.invoke_backoff_max_ms / 1000
        self.metrics = metrics or Metrics()
        self._sleep = sleep
        self._rng = rng
        if session is None:
            session = session_for(sink)
        timeout_s = sink.invoke_timeout_ms / 1000
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max(1, sink.max_in_flight),
            connect_timeout=min(10.0, timeout_s),
            read_timeout=timeout_s,
            tcp_keepalive=True,
            user_agent_extra="lambdasink",
            # Our own arguments (validated in config.py) on every call: botocore's per-call
            # validation is ~5% of an invocation's CPU (bench/README.md).
            parameter_validation=False,
        )
        self.client: LambdaClient = session.client(
            "lambda",
            region_name=sink.aws_region or None,
            endpoint_url=sink.aws_endpoint or None,
            config=config,
        )
        self.http: LambdaHttp | None = None
        endpoint = self.client.meta.endpoint_url
        if transport == "http" or (transport == "auto" and not proxied(endpoint)):
            self.http = LambdaHttp(
                endpoint_url=endpoint,
                region=self.client.meta.region_name,
                function=self.function,
                invocation_type=self.invocation_type,
                credentials=session.get_credentials(),
                connect_timeout_s=min(10.0, timeout_s),
                read_timeout_s=timeout_s,
                ca_bundle=session.botocore_session.get_config_variable("ca_bundle"),
                retry_after_cap_s=MAX_RETRY_AFTER_S,
            )
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, sink.max_in_flight), thread_name_prefix="invoke"
        )

    # -- start-up check -------------------------------------------------------------------

    def check_function(self, attempts: int = 3) -> None:
        """GetFunction: the function exists and we may reach it, or `FunctionCheckError`."""
        name = self.function
        for attempt in range(attempts):
            try:
                self.client.get_function(FunctionName=name)
                return
            except Exception as exc:  # noqa: BLE001 - classified below
                err = classify(exc)
            if err.status == 404:
                raise FunctionCheckError(
                    f"lambda function {name!r} not found ({err.code}); check lambdaFunctionName "
                    "and awsRegion"
                )
            if err.status == 403 or err.code == "Credentials":
                raise FunctionCheckError(
                    f"access to lambda function {name!r} denied ({err.code}); the identity needs "
                    "lambda:GetFunction and lambda:InvokeFunction"
                )
            if not err.retriable or attempt == attempts - 1:
                raise FunctionCheckError(f"cannot check lambda function {name!r}: {err}")
            time.sleep(min(self.backoff_max_s, self.backoff_initial_s * (1 << attempt)))

    # -- invocations ----------------------------------------------------------------------

    def invoke_once(self, payload: bytes) -> Response:
        """One attempt, blocking; raises a classified `InvokeError` on any failure."""
        kind: str | None
        try:
            if self.http is not None:
                kind, body, request_id = self.http.invoke(payload)
            else:
                resp = self.client.invoke(
                    FunctionName=self.function,
                    InvocationType=self.invocation_type,  # type: ignore[arg-type]
                    Payload=payload,
                )
                body = resp["Payload"].read() if "Payload" in resp else b""
                kind = resp.get("FunctionError")
                request_id = str(resp.get("ResponseMetadata", {}).get("RequestId", ""))
        except InvokeError:
            raise  # already classified by the lean path
        except Exception as exc:  # boto/network/credential-refresh errors become InvokeError
            err = classify(exc)
            if isinstance(exc, ClientError):
                err.request_id = str(exc.response.get("ResponseMetadata", {}).get("RequestId", ""))
            raise err from exc
        if kind:
            raise _function_error(kind, body, request_id)
        return Response(body, request_id)

    def backoff(self, attempt: int, err: InvokeError) -> float:
        """Jittered exponential delay before retry `attempt` (0-based), at least Retry-After."""
        base = min(self.backoff_max_s, self.backoff_initial_s * (1 << attempt))
        delay = base / 2 + self._rng() * base / 2
        if err.retry_after_s is not None:
            delay = max(delay, err.retry_after_s)
        return delay

    async def invoke(self, payload: bytes) -> Response:
        """Invoke with the retry policy; returns the response, raises the last `InvokeError`.

        A function error is raised at once: whether the records deserve another attempt is the
        failure policy's call (the pipeline counts attempts per record, durably). What is
        retried here are the calls that did not run the function (throttles, 5xx, timeouts).
        """
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        attempt = 0
        try:
            while True:
                begun = time.monotonic()
                try:
                    resp = await loop.run_in_executor(self._pool, self.invoke_once, payload)
                    self.metrics.invocations.labels("success").inc()
                    self._observe(begun, "success", None)
                    return resp
                except InvokeError as err:
                    reason = failure_reason(err)
                    self._observe(begun, reason, err.retry_after_s)
                    final = not err.retriable or err.code == "FunctionError"
                    if final or attempt >= self.max_retries:
                        self.metrics.invocations.labels(reason).inc()
                        raise
                    delay = self.backoff(attempt, err)
                    self.metrics.invoke_retries.labels(reason).inc()
                    log.debug("invoke retry %d in %.3fs: %s", attempt + 1, delay, err)
                    attempt += 1
                    if self.observer is not None:
                        await self.observer.wait_retry(delay, self._sleep)
                    else:
                        await self._sleep(delay)
        finally:
            self.metrics.invoke_latency.observe(time.monotonic() - started)

    def _observe(self, begun: float, outcome: str, retry_after_s: float | None) -> None:
        if self.observer is not None:
            self.observer.attempt_ended(begun, time.monotonic() - begun, outcome, retry_after_s)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.http is not None:
            self.http.close()
        self.client.close()
