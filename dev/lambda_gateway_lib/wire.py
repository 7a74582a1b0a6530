"""Lambda's REST wire protocol as botocore speaks it: paths, payload limits and the JSON bodies
of function errors and throttles (pure; the HTTP side is `handler`)."""

from __future__ import annotations

import json
import re
import urllib.parse

SYNC_LIMIT = 6 * 1024 * 1024  # 6 MB (6291456 bytes) for RequestResponse
ASYNC_LIMIT = 1024 * 1024  # 1 MB for Event since late 2025
INVOKE_RE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations/?$")
FUNCTION_RE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/?$")
CONFIGURATION_RE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/configuration/?$")
FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CREDENTIAL_RE = re.compile(r"Credential=(?P<akid>[^/]+)/\d+/(?P<region>[^/]+)/")


def is_error_body(body: bytes, request_id: str, strict: bool = True) -> bool:
    """awslambdaric reports a raised exception as {errorMessage, errorType, requestId, stackTrace}.

    RIE passes it on as a plain 200; the request id we sent tells it apart from a handler that
    merely returns a dict with those keys.
    """
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if not isinstance(data, dict) or "errorType" not in data or "errorMessage" not in data:
        return False
    if not set(data) <= {"errorMessage", "errorType", "requestId", "stackTrace"}:
        return False
    return data.get("requestId") == request_id or not strict


def error_json(request_id: str, error_type: str, message: str) -> bytes:
    return json.dumps(
        {"errorType": error_type, "errorMessage": message, "requestId": request_id}
    ).encode()


def throttle_body(
    message: str, reason: str = "ConcurrentInvocationLimitExceeded", retry_after: str = "1"
) -> bytes:
    return json.dumps(
        {"message": message, "Reason": reason, "retryAfterSeconds": retry_after, "Type": "User"}
    ).encode()


def parse_function_name(raw: str) -> tuple[str, str | None]:
    """name | name:qualifier | [arn:aws:lambda:region:]account:function:name[:qualifier]."""
    raw = urllib.parse.unquote(raw)
    if ":function:" in raw:
        raw = raw.split(":function:", 1)[1]
    name, _, qualifier = raw.partition(":")
    return name, qualifier or None
