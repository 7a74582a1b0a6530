"""Pure: how long a worker pod may take to stop, from what its invocations can take.

On SIGTERM a worker stops pulling, flushes its batch and waits for the invocations in flight
(`runtime.drainTimeoutSeconds`), then the kubelet kills it at the end of
`terminationGracePeriodSeconds`. Kubernetes' default of 30 s cuts a call to a function that
runs longer short: the batch is nacked and invoked again by another worker (a duplicate). So
unless the user sets `spec.pod.terminationGracePeriodSeconds`, the grace period covers the
longest call (the function's timeout when known, capped by the invoker's `invokeTimeoutMs`,
after which the call is abandoned anyway) plus time to acknowledge, plus the margin before the
kill.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

K8S_DEFAULT_GRACE_S = 30  # the floor: never shorter than what Kubernetes would give
MAX_GRACE_S = 3600  # the CRD's maximum for the user's own value
ACK_MARGIN_S = 5  # acknowledgements and the dead-letter/attempts writes after the last call
DEFAULT_INVOKE_TIMEOUT_MS = 60000  # the runtime's invokeTimeoutMs default


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def longest_call_s(sink_spec: Mapping[str, Any], function_timeout_s: int | None = None) -> float:
    """How long one invocation can last: the invoker's read timeout, or less when the
    function's own timeout is known and shorter (Lambda ends the call then)."""
    sink = sink_spec.get("sinkConfig")
    invoke_ms = _int(sink.get("invokeTimeoutMs")) if isinstance(sink, Mapping) else None
    call_s = (invoke_ms if invoke_ms and invoke_ms > 0 else DEFAULT_INVOKE_TIMEOUT_MS) / 1000.0
    if function_timeout_s and function_timeout_s > 0:
        call_s = min(call_s, function_timeout_s + 1.0)  # +1: Lambda's answer after its timeout
    return call_s


def kill_margin_s(grace_s: int) -> int:
    """Seconds between the end of the drain and the kubelet's SIGKILL."""
    return min(5, grace_s // 2)


def grace_seconds(sink_spec: Mapping[str, Any], function_timeout_s: int | None = None) -> int:
    """`terminationGracePeriodSeconds` of the worker pods: the user's when set, else derived."""
    pod = sink_spec.get("pod")
    user = _int(pod.get("terminationGracePeriodSeconds")) if isinstance(pod, Mapping) else None
    if user is not None and user >= 0:
        return user
    needed = math.ceil(longest_call_s(sink_spec, function_timeout_s)) + ACK_MARGIN_S
    needed += kill_margin_s(needed + 5)
    return min(MAX_GRACE_S, max(K8S_DEFAULT_GRACE_S, needed))


def drain_timeout_s(grace_s: int) -> int:
    """`runtime.drainTimeoutSeconds`: the drain ends before the kill."""
    return max(0, grace_s - kill_margin_s(grace_s))
