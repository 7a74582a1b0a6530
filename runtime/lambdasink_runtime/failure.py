"""Why a record failed, whether that failure counts against it, and what Lambda said back.

Pure (no Pulsar, no AWS): the pipeline, the dead-letter producer and the tests share these rules.

Two kinds of failure, because they call for opposite reactions:
- *record failures* say something about the records in the call: the function ran and raised
  (a function error), Lambda refused the payload (400, 413), or the function listed the record
  in `batchItemFailures`. They count against each record's `maxAttempts`.
- *service failures* say the function cannot be reached or run at all: throttling, 5xx,
  timeouts, connection errors, 403/404/credentials (permission revoked, function deleted) and
  the runtime's init errors (`Runtime.ImportModuleError`, ...). They never count against a
  record (a record is not poison because the function is down); they feed the circuit breaker,
  and the records wait.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import InvokeError, LambdaSinkError, failure_reason

#: Function error types that mean the function cannot start, whatever the payload.
INIT_ERROR_TYPES = frozenset(
    {
        "Runtime.ImportModuleError",
        "Runtime.HandlerNotFound",
        "Runtime.UserCodeSyntaxError",
        "Runtime.InvalidEntrypoint",
        "Runtime.MalformedHandlerName",
    }
)
#: Failures about the records in the call: the only ones that use up their attempts.
_RECORD_REASONS = frozenset(
    {"function_error", "too_large", "bad_request", "partial_failure", "invalid_response"}
)


class PartialResponseError(LambdaSinkError):
    """The function's `batchItemFailures` response is malformed or names an unknown record."""


@dataclass(frozen=True, slots=True)
class Failure:
    """The last thing that went wrong for a record, as the dead-letter properties show it."""

    #: Bounded label: function_error, partial_failure, invalid_response, too_large, bad_request,
    #: throttled, server_error, timeout, connectionerror, forbidden, not_found, too_old,
    #: serialization, schema, ...
    reason: str
    message: str = ""
    error_type: str = ""
    status: int | None = None
    request_id: str = ""

    @property
    def counts(self) -> bool:
        """Whether this failure uses up one of the record's attempts."""
        return self.reason in _RECORD_REASONS

    def as_dict(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "message": self.message,
            "errorType": self.error_type,
            "status": self.status,
            "requestId": self.request_id,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, object]) -> Failure:
        status = doc.get("status")
        return cls(
            reason=str(doc.get("reason") or "unknown"),
            message=str(doc.get("message") or ""),
            error_type=str(doc.get("errorType") or ""),
            status=status if isinstance(status, int) else None,
            request_id=str(doc.get("requestId") or ""),
        )


def from_invoke_error(err: InvokeError) -> Failure:
    """The Failure for an invocation that raised; init errors become service failures."""
    reason = failure_reason(err)
    if reason == "function_error" and err.error_type in INIT_ERROR_TYPES:
        reason = "function_init_error"
    return Failure(
        reason=reason,
        message=str(err)[:500],
        error_type=err.error_type or err.code,
        status=err.status,
        request_id=err.request_id,
    )


def too_old(age_ms: int, limit_ms: int, last: Failure | None) -> Failure:
    detail = f"record is {age_ms} ms old, over failurePolicy.maxRecordAgeMs {limit_ms}"
    if last is not None:
        detail += f"; last error: {last.reason}: {last.message}"[:400]
    return Failure(
        reason="too_old",
        message=detail,
        error_type=last.error_type if last else "",
        status=last.status if last else None,
        request_id=last.request_id if last else "",
    )


def batch_item_failures(body: bytes, ids: Iterable[str]) -> set[str]:
    """The identifiers the function reported as failed, from an SQS/Kinesis-style response.

    No body, `null`, a non-object or an object without `batchItemFailures` (or with an empty
    list) means every record succeeded, as with Lambda's event source mappings. A list that is
    not a list of objects with a known, non-empty string `itemIdentifier` fails the whole batch
    (`PartialResponseError`), as Lambda does.
    """
    known = set(ids)
    text = body.strip()
    if not text:
        return set()
    try:
        doc = json.loads(text)
    except ValueError:
        return set()  # a function may return any text when it succeeded
    if not isinstance(doc, dict) or doc.get("batchItemFailures") is None:
        return set()
    items = doc["batchItemFailures"]
    if not isinstance(items, list):
        raise PartialResponseError(f"batchItemFailures is a {type(items).__name__}, not a list")
    failed: set[str] = set()
    for item in items:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(ident, str) or not ident:
            raise PartialResponseError(
                f"batchItemFailures item {item!r:.100} has no itemIdentifier"
            )
        if ident not in known:
            raise PartialResponseError(f"batchItemFailures names {ident!r:.100}, not in this batch")
        failed.add(ident)
    return failed


def dead_letter_properties(
    *,
    topic: str,
    message_id: str,
    attempts: int,
    failure: Failure,
    subscription: str,
    now_ms: int | None = None,
) -> dict[str, str]:
    """What a dead-lettered copy adds to the original's properties, to say why.

    `REAL_TOPIC` and `ORIGIN_MESSAGE_ID` are the names Pulsar's own dead-letter producer uses,
    so tools that read Pulsar DLQs keep working; the `lambdasink.*` ones are ours.
    """
    when = now_ms if now_ms is not None else int(time.time() * 1000)
    props = {
        "REAL_TOPIC": topic,
        "ORIGIN_MESSAGE_ID": message_id,
        "lambdasink.subscription": subscription,
        "lambdasink.attempts": str(attempts),
        "lambdasink.reason": failure.reason,
        "lambdasink.error": failure.message[:1000],
        "lambdasink.deadLetteredAt": _iso_ms(when),
    }
    if failure.error_type:
        props["lambdasink.errorType"] = failure.error_type
    if failure.status is not None:
        props["lambdasink.httpStatus"] = str(failure.status)
    if failure.request_id:
        props["lambdasink.requestId"] = failure.request_id
    return props


def _iso_ms(epoch_ms: int) -> str:
    secs, ms = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"


@dataclass(frozen=True, slots=True)
class Attempts:
    """How often a record was invoked and failed (counted failures only), and the last failure."""

    count: int
    last: Failure


def record_key(topic: str, message_id: str) -> str:
    """The identity of a message within its subscription: topic (with partition) and id."""
    return f"{topic}|{message_id}"


class MemoryAttemptLog:
    """Attempt counts kept in memory only: lost on restart. For tests and tools; the runtime
    uses the durable log in `attempts.py`."""

    def __init__(self) -> None:
        self.counts: dict[str, Attempts] = {}

    def __len__(self) -> int:
        return len(self.counts)

    def lookup(self, key: str) -> Attempts | None:
        return self.counts.get(key)

    async def save(self, entries: Mapping[str, Attempts]) -> None:
        self.counts.update(entries)

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.counts.pop(key, None)
