"""Pure condition bookkeeping: what the status says, Kubernetes style (no phase string).

Conditions: `Ready` (overall), `ConfigValid` (the effective configuration passed the runtime's
model) and `SecretsResolved` (every referenced Secret key exists). A merge patch replaces lists,
so callers always write the whole list that `merge` returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

READY = "Ready"
CONFIG_VALID = "ConfigValid"
SECRETS_RESOLVED = "SecretsResolved"
ORDER = (READY, CONFIG_VALID, SECRETS_RESOLVED)

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
#: Waiting reasons of the worker container that mean it will not start without help.
FAILING_WAITING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "RunContainerError",
    }
)
MESSAGE_LIMIT = 1024


def condition(
    type_: str, status: str, reason: str, message: str, generation: int | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message[:MESSAGE_LIMIT],
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for item in conditions or ():
        if item.get("type") == type_:
            return item
    return None


def merge(
    existing: Sequence[Mapping[str, Any]] | None,
    updates: Sequence[Mapping[str, Any]],
    now: str,
) -> list[dict[str, Any]]:
    """The new full list: `lastTransitionTime` kept while a condition's status is unchanged,
    conditions of other types kept, ours first in a stable order."""
    by_type: dict[str, dict[str, Any]] = {
        str(c["type"]): dict(c) for c in existing or () if c.get("type")
    }
    for update in updates:
        old = by_type.get(str(update["type"]))
        new = dict(update)
        if old is not None and old.get("status") == new["status"] and old.get("lastTransitionTime"):
            new["lastTransitionTime"] = old["lastTransitionTime"]
        else:
            new["lastTransitionTime"] = now
        by_type[str(update["type"])] = new
    ours = [by_type.pop(t) for t in ORDER if t in by_type]
    return ours + [by_type[t] for t in sorted(by_type)]


def config_valid(error: str | None, generation: int | None) -> dict[str, Any]:
    if error:
        return condition(CONFIG_VALID, FALSE, "InvalidSpec", error, generation)
    return condition(
        CONFIG_VALID, TRUE, "Valid", "the effective configuration is valid", generation
    )


def secrets_resolved(missing: Sequence[str], generation: int | None) -> dict[str, Any]:
    if missing:
        return condition(SECRETS_RESOLVED, FALSE, "SecretNotFound", "; ".join(missing), generation)
    return condition(
        SECRETS_RESOLVED, TRUE, "Resolved", "all referenced Secret keys exist", generation
    )


@dataclass(frozen=True)
class Workers:
    """What the Deployment and its pods say."""

    desired: int
    exists: bool = False
    replicas: int = 0
    ready: int = 0
    updated: int = 0
    failing: str | None = None
    #: The Ready reason for `failing`: `WorkerOOMKilled` when the kernel killed the worker at
    #: its memory limit (raising the limit is the fix, not the configuration).
    failing_reason: str = "WorkerFailing"


#: Ready reasons by the termination reason the kubelet reports.
TERMINATION_READY_REASONS = {"OOMKilled": "WorkerOOMKilled"}


def worker_problem(
    pods: Sequence[Mapping[str, Any]], container: str = "worker"
) -> tuple[str, str] | None:
    """The first reason a worker pod cannot run, as (Ready reason, message), with the worker's
    own termination message (`lastState.terminated.message`, written to /dev/termination-log)
    when it left one. A worker restarted after an OOM kill counts until it is ready again: it
    is usually killed again on its way up."""
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name", ""))):
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        pod_name = (pod.get("metadata") or {}).get("name", "?")
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") != container:
                continue
            state = status.get("state") or {}
            last = (status.get("lastState") or {}).get("terminated") or {}
            terminated = state.get("terminated") or {}
            waiting = state.get("waiting") or {}
            if terminated and terminated.get("exitCode", 0) != 0:
                return _failure(pod_name, terminated)
            if waiting.get("reason") in FAILING_WAITING_REASONS:
                if last and last.get("exitCode", 0) != 0:
                    return _failure(pod_name, last)
                text = f"pod {pod_name}: {waiting['reason']}: {waiting.get('message', '')}"
                return "WorkerFailing", text.strip()
            if last.get("reason") in TERMINATION_READY_REASONS and not status.get("ready"):
                return _failure(pod_name, last)
    return None


def worker_failure(pods: Sequence[Mapping[str, Any]], container: str = "worker") -> str | None:
    """The message of `worker_problem`."""
    problem = worker_problem(pods, container)
    return problem[1] if problem else None


def _failure(pod_name: str, terminated: Mapping[str, Any]) -> tuple[str, str]:
    reason = str(terminated.get("reason") or "")
    code = terminated.get("exitCode")
    if reason in TERMINATION_READY_REASONS:
        # With FallbackToLogsOnError the message is the log's tail: the reason comes first.
        head = f"pod {pod_name}: worker {reason} (exit code {code})"
        if reason == "OOMKilled":
            head += ": the kernel killed it at its memory limit (spec.pod.resources.limits.memory)"
        message = str(terminated.get("message") or "").strip()
        return TERMINATION_READY_REASONS[reason], f"{head}; {message}" if message else head
    message = str(terminated.get("message") or reason).strip()
    return "WorkerFailing", f"pod {pod_name}: worker exited with code {code}: {message}"


def ready(
    *,
    generation: int | None,
    config_error: str | None,
    blocked: str | None,
    missing_secrets: Sequence[str],
    workers: Workers,
    preflight: str | None = None,
) -> dict[str, Any]:
    """The overall Ready condition; the first problem found wins. `preflight`: a pre-flight
    check's answer that no invocation can succeed (`preflight_rules.blocking`); a paused sink
    stays Ready (Paused) whatever it says."""

    def make(status: str, reason: str, message: str) -> dict[str, Any]:
        return condition(READY, status, reason, message, generation)

    if config_error:
        running = " (the workers keep the last valid configuration)" if workers.exists else ""
        return make(FALSE, "InvalidSpec", config_error + running)
    if blocked:
        return make(FALSE, "DeploymentBlocked", blocked)
    if missing_secrets:
        return make(FALSE, "SecretNotFound", "; ".join(missing_secrets))
    if workers.desired == 0:
        return make(TRUE, "Paused", "spec.replicas is 0: no worker runs")
    if preflight:
        return make(FALSE, "PreflightFailed", preflight)
    if workers.failing:
        return make(FALSE, workers.failing_reason, workers.failing)
    if not workers.exists:
        return make(FALSE, "Deploying", "the worker Deployment is being created")
    counts = f"{workers.ready}/{workers.desired} workers ready"
    if workers.updated < workers.desired:
        return make(FALSE, "RollingOut", f"{counts}, {workers.updated} updated")
    if workers.ready < workers.desired:
        return make(FALSE, "WorkersNotReady", counts)
    return make(TRUE, "WorkersReady", counts)
