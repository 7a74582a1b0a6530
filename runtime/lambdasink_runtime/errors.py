"""The runtime's error tree: one root, and every error says whether trying again can help."""

from __future__ import annotations


class LambdaSinkError(Exception):
    """Root of every error the runtime raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(LambdaSinkError):
    """A configuration value is wrong; names the field, the value given and what is allowed."""

    def __init__(self, field: str, value: object, allowed: str, *, sensitive: bool = False) -> None:
        shown = "<redacted>" if sensitive else repr(value)
        super().__init__(f"{field}: {shown} is not valid; {allowed}")
        self.field = field
        self.allowed = allowed


class SerializationError(LambdaSinkError):
    """A message cannot be turned into JSON (bad bytes for its schema, unknown schema type)."""


class SchemaRegistryError(LambdaSinkError):
    """The writer schema of a message could not be fetched from the broker."""

    retriable = True


class PayloadTooLargeError(LambdaSinkError):
    """A record alone exceeds the Lambda invocation payload limit; it can never be sent."""


class InvokeError(LambdaSinkError):
    """An invocation failed; `retriable` says whether the same payload may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        retriable: bool,
        code: str = "",
        status: int | None = None,
        retry_after_s: float | None = None,
        request_id: str = "",
        error_type: str = "",
    ) -> None:
        super().__init__(message, retriable=retriable)
        self.code = code
        self.status = status
        self.retry_after_s = retry_after_s
        #: Lambda's request id (x-amzn-RequestId) when the call reached Lambda.
        self.request_id = request_id
        #: A function error's `errorType` (e.g. "ValueError", "Runtime.ImportModuleError").
        self.error_type = error_type


class FunctionCheckError(LambdaSinkError):
    """The start-up check of the Lambda function failed (missing, forbidden, unreachable)."""


class PulsarError(LambdaSinkError):
    """The Pulsar side failed (connect, subscribe, receive)."""

    retriable = True


def failure_reason(err: InvokeError) -> str:
    """A short, bounded label for metrics and nack reasons."""
    if err.code == "FunctionError":
        return "function_error"
    if err.code in ("Timeout", "ConnectionError", "Credentials"):
        return err.code.lower()
    status = err.status or 0
    if status == 429:
        return "throttled"
    if status == 413:
        return "too_large"
    if status >= 500:
        return "server_error"
    return {404: "not_found", 403: "forbidden", 400: "bad_request"}.get(status, "client_error")
