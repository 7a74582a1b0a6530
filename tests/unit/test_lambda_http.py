"""The lean invoke path (`lambda_http`): signatures AWS would accept, kept-alive connections.

The endpoint is the fake `lambda_api.LambdaApi` (see its docstring for why a fake): it records
each request with its headers and the client connection that carried it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from tests.lambda_api import LambdaApi, Reply, Request

from lambdasink_runtime.config import SinkConfig
from lambdasink_runtime.credentials import AwsSession
from lambdasink_runtime.errors import InvokeError
from lambdasink_runtime.invoker import Invoker, Transport
from lambdasink_runtime.lambda_http import LambdaHttp, proxied

SECRET = "not-a-real-secret"
TLS_DIR = Path(__file__).parent / "tls"
CERT, KEY = str(TLS_DIR / "localhost.pem"), str(TLS_DIR / "localhost-key.pem")


@pytest.fixture
def api() -> Iterator[LambdaApi]:
    with LambdaApi(functions=("fn", "fn:live")) as server:
        yield server


def sink(api: LambdaApi, **overrides: object) -> SinkConfig:
    base = SinkConfig(
        aws_region="eu-west-1",
        lambda_function_name="fn",
        aws_endpoint=api.url,
        aws_access_key="AKIDEXAMPLE",
        aws_secret_key=SECRET,
        invoke_max_retries=0,
        invoke_timeout_ms=2000,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def invoke(inv: Invoker, payload: bytes = b"[1]") -> None:
    asyncio.run(inv.invoke(payload))


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def verify_sigv4(req: Request, secret: str, region: str) -> None:
    """Recompute the AWS Signature V4 of a received request from the spec, independently."""
    algorithm, _, fields = req.headers["authorization"].partition(" ")
    assert algorithm == "AWS4-HMAC-SHA256"
    parts = dict(p.strip().split("=", 1) for p in fields.split(","))
    _, date, scope_region, service, terminator = parts["Credential"].split("/")
    assert (scope_region, service, terminator) == (region, "lambda", "aws4_request")
    signed = parts["SignedHeaders"].split(";")
    assert {"host", "x-amz-date"} <= set(signed)
    canonical = "\n".join(
        [
            req.method,
            urllib.parse.quote(req.path, safe="/~"),  # non-S3 services encode the path again
            "",
            "".join(f"{h}:{' '.join(req.headers[h].split())}\n" for h in signed),
            ";".join(signed),
            hashlib.sha256(req.body).hexdigest(),
        ]
    )
    amz_date = req.headers["x-amz-date"]
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            f"{date}/{region}/lambda/aws4_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = _hmac(f"AWS4{secret}".encode(), date)
    for step in (region, "lambda", "aws4_request"):
        key = _hmac(key, step)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    assert parts["Signature"] == expected


@pytest.mark.parametrize("transport", ["http", "botocore"])
@pytest.mark.parametrize("function", ["fn", "fn:live"])
def test_signature_verifies(api: LambdaApi, transport: Transport, function: str) -> None:
    """Both paths sign identically by the spec (botocore's path validates the verifier)."""
    inv = Invoker(sink(api, lambda_function_name=function), transport=transport)
    try:
        invoke(inv, b'[{"value":"x"}]')
    finally:
        inv.close()
    (req,) = api.invocations()
    assert urllib.parse.unquote(req.path) == f"/2015-03-31/functions/{function}/invocations"
    verify_sigv4(req, SECRET, "eu-west-1")


def test_session_token_is_sent_and_signed(api: LambdaApi) -> None:
    session = AwsSession(
        aws_access_key_id="ASIAEXAMPLE",
        aws_secret_access_key=SECRET,
        aws_session_token="tok-123",
        region_name="eu-west-1",
    )
    inv = Invoker(sink(api), session=session, transport="http")
    try:
        invoke(inv)
    finally:
        inv.close()
    (req,) = api.invocations()
    assert req.headers["x-amz-security-token"] == "tok-123"
    assert "x-amz-security-token" in req.headers["authorization"]
    verify_sigv4(req, SECRET, "eu-west-1")


def test_auto_uses_the_lean_path_unless_a_proxy_applies(
    api: LambdaApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    inv = Invoker(sink(api))
    assert inv.http is not None and not proxied(api.url)
    inv.close()
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert proxied(api.url)
    inv = Invoker(sink(api))
    assert inv.http is None  # botocore honours the proxy; the lean path does not speak it
    inv.close()


def test_connection_is_kept_alive(api: LambdaApi) -> None:
    inv = Invoker(sink(api, max_in_flight=1), transport="http")
    try:
        for _ in range(5):
            invoke(inv)
    finally:
        inv.close()
    peers = {r.peer for r in api.invocations()}
    assert len(api.invocations()) == 5 and len(peers) == 1


def test_connection_closed_while_idle_is_reopened_without_an_error(api: LambdaApi) -> None:
    inv = Invoker(sink(api, max_in_flight=1), transport="http")
    try:
        invoke(inv)
        api.drop_connections()
        invoke(inv)  # invoke_max_retries=0: a stale socket would surface as an error
    finally:
        inv.close()
    first, second = api.invocations()
    assert first.peer != second.peer
    assert inv.metrics.invocations.value("success") == 2


def test_connection_close_from_server_is_honoured(api: LambdaApi) -> None:
    api.script(Reply(200, b"null", {"Connection": "close"}))
    inv = Invoker(sink(api, max_in_flight=1), transport="http")
    try:
        invoke(inv)
        invoke(inv)
    finally:
        inv.close()
    first, second = api.invocations()
    assert first.peer != second.peer


def test_error_without_error_type_header_uses_the_body(api: LambdaApi) -> None:
    body = b'{"__type":"com.amazonaws#ServiceException","message":"try later"}'
    api.script(Reply(502, body))
    inv = Invoker(sink(api), transport="http")
    try:
        with pytest.raises(InvokeError) as info:
            invoke(inv)
    finally:
        inv.close()
    err = info.value
    assert err.code == "ServiceException"
    assert err.status == 502 and err.retriable
    assert "try later" in str(err)


@pytest.mark.parametrize("transport", ["http", "botocore"])
def test_https_endpoint_verified_with_the_aws_ca_bundle(
    transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production endpoints are HTTPS: the CA bundle botocore would use (AWS_CA_BUNDLE) applies."""
    with LambdaApi(tls=(CERT, KEY)) as tls_api:
        monkeypatch.setenv("AWS_CA_BUNDLE", CERT)
        inv = Invoker(sink(tls_api), transport=transport)
        try:
            invoke(inv)
            invoke(inv)
        finally:
            inv.close()
        assert len(tls_api.invocations()) == 2
        verify_sigv4(tls_api.invocations()[0], SECRET, "eu-west-1")


@pytest.mark.parametrize("transport", ["http", "botocore"])
def test_https_endpoint_with_an_unknown_certificate_is_refused(
    transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LambdaApi(tls=(CERT, KEY)) as tls_api:
        monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
        inv = Invoker(sink(tls_api), transport=transport)
        try:
            with pytest.raises(InvokeError) as info:
                invoke(inv)
        finally:
            inv.close()
        assert info.value.code == "ConnectionError" and info.value.retriable
        assert "certificate" in str(info.value).lower() or "ssl" in str(info.value).lower()
        assert tls_api.invocations() == []


def test_endpoint_must_be_http_or_https() -> None:
    with pytest.raises(ValueError, match="unsupported endpoint URL"):
        LambdaHttp(
            endpoint_url="ftp://example.com",
            region="us-east-1",
            function="fn",
            invocation_type="Event",
            credentials=None,
            connect_timeout_s=1,
            read_timeout_s=1,
        )
