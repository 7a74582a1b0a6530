"""Ask Lambda, as the sink, whether its function can be invoked: a DryRun Invoke and GetFunction.

Only with the sink's own static credentials (`spec.aws.credentialsSecret`, or the static keys in
its credential plugin parameter), optionally wrapped in its `awsAssumeRoleArn`: the session is
the runtime's own (`credentials.session_for`). A sink whose identity comes from the pod (the
default chain, IRSA, the STS plugin's base identity, a Python plugin) is not checked: the
operator would have to use its own identity, which it never does (RBAC.md). Blocking boto3,
run in a thread by the caller; one attempt per call, short timeouts.
"""

from __future__ import annotations

from typing import Any

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

from lambdasink_runtime import credentials
from lambdasink_runtime.config_sink import PLUGIN_DEFAULT_CHAIN, SinkConfig
from lambdasink_runtime.errors import ConfigError

from .preflight_rules import FunctionProbe

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
_DENIED_CODES = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)


def own_credentials(sink: SinkConfig) -> str | None:
    """Why the sink's identity cannot be used by the operator, or None when it can."""
    plugin = (sink.aws_credential_plugin_name or "").strip()
    if plugin and plugin != PLUGIN_DEFAULT_CHAIN:
        return (
            f"awsCredentialPluginName {plugin} resolves the identity inside the worker; the "
            "operator reaches AWS only with the sink's own static keys, so it does not check"
        )
    if (sink.aws_access_key and sink.aws_secret_key) or sink.aws_credentials_directory:
        return None
    try:
        params = sink.credential_plugin_params
    except ValueError:
        params = {}
    if params.get("accessKey") and params.get("secretKey"):
        return None
    return (
        "no spec.aws.credentialsSecret: the workers use the pod's identity (default chain, "
        "IRSA) and the operator never invokes with its own, so it does not check"
    )


def probe(sink: SinkConfig) -> FunctionProbe:
    """DryRun Invoke, then GetFunction for the Timeout; never raises."""
    name = sink.lambda_function_name
    why_not = own_credentials(sink)
    if why_not:
        return FunctionProbe(name, "skipped", why_not)
    try:
        session = credentials.session_for(sink)
    except ConfigError as exc:
        return FunctionProbe(name, "skipped", f"credentials: {exc}")
    client: Any = session.client(
        "lambda",
        region_name=sink.aws_region or None,
        endpoint_url=sink.aws_endpoint or None,
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            user_agent_extra="lambdasink-operator-preflight",
        ),
    )
    try:
        client.invoke(FunctionName=name, InvocationType="DryRun")
    except Exception as exc:  # noqa: BLE001 - classified
        outcome, detail = classify(exc)
        return FunctionProbe(name, outcome, detail, timeout_detail="DryRun failed: " + detail)
    try:
        found = client.get_function(FunctionName=name)
    except Exception as exc:  # noqa: BLE001 - classified
        _, detail = classify(exc)
        return FunctionProbe(
            name,
            "ok",
            timeout_detail=f"GetFunction (the Timeout; lambda:GetFunction) failed: {detail}",
        )
    conf = found.get("Configuration")
    timeout = conf.get("Timeout") if isinstance(conf, dict) else None
    return FunctionProbe(name, "ok", timeout_s=int(timeout) if timeout else None)


def classify(exc: BaseException) -> tuple[str, str]:
    """(outcome, detail) of a failed call; the detail names AWS's error code and message."""
    if isinstance(exc, ClientError):
        response: dict[str, Any] = dict(exc.response)
        error: dict[str, Any] = dict(response.get("Error") or {})
        code = str(error.get("Code") or "")
        status = int(dict(response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        detail = f"{code}: {error.get('Message') or ''}".strip()[:400]
        if code == "ResourceNotFoundException" or status == 404:
            return "not_found", detail
        if code in _DENIED_CODES or status in (401, 403):
            return "denied", detail
        if code == "TooManyRequestsException" or status == 429:
            return "throttled", detail
        return "failed", f"HTTP {status} {detail}"
    if isinstance(
        exc,
        EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError,
    ):
        return "unreachable", str(exc)[:400]
    if isinstance(exc, NoCredentialsError):
        return "skipped", "no AWS credentials"
    if isinstance(exc, BotoCoreError):
        return "failed", f"{type(exc).__name__}: {exc}"[:400]
    return "failed", f"{type(exc).__name__}: {exc}"[:400]
