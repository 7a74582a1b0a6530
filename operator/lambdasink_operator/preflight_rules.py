"""Pure pre-flight bookkeeping: what the probes found → four conditions, and whether Ready cares.

The probes (`lambda_check`, `pulsar_topics` via `preflight`) return the plain results below;
`fold` turns them into `FunctionReachable`, `TimeoutsCompatible`, `TopicsExist` and
`SubscriptionReady`. A check that could not run says `Unknown` with the reason; a definite
problem says `False`. Only a definite answer that no invocation can succeed (the function does
not exist, the identity may not invoke it) blocks `Ready` (`blocking`): everything else either
heals by itself (an endpoint down, a topic Pulsar auto-creates on subscribe) or delivers with a
risk that its own condition names (duplicates from a timeout set too short).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .conditions import FALSE, TRUE, UNKNOWN, condition, find

FUNCTION_REACHABLE = "FunctionReachable"
TIMEOUTS_COMPATIBLE = "TimeoutsCompatible"
TOPICS_EXIST = "TopicsExist"
SUBSCRIPTION_READY = "SubscriptionReady"
TYPES = (FUNCTION_REACHABLE, TIMEOUTS_COMPATIBLE, TOPICS_EXIST, SUBSCRIPTION_READY)
#: FunctionReachable reasons that mean no invocation can succeed: these make Ready False.
BLOCKING_REASONS = frozenset({"FunctionNotFound", "AccessDenied"})


@dataclass(frozen=True)
class FunctionProbe:
    """A DryRun Invoke and a GetFunction with the sink's own credentials.

    `outcome`: ok | not_found | denied | throttled | unreachable | failed | skipped.
    `timeout_s` is the function's configured Timeout when GetFunction answered.
    """

    function: str
    outcome: str
    detail: str = ""
    timeout_s: int | None = None
    timeout_detail: str = ""


@dataclass(frozen=True)
class TopicProbe:
    """The input topics and the subscription as the Pulsar admin API sees them.

    `error` set: the check could not run (`skipped` True: by design, not a failure).
    """

    topics: tuple[str, ...] = ()
    pattern: str | None = None
    missing: tuple[str, ...] = ()
    matched: tuple[str, ...] = ()
    subscribed: tuple[str, ...] = ()  # topics that have the subscription
    error: str = ""
    skipped: bool = False


@dataclass(frozen=True)
class Settings:
    """The effective configuration the rules look at (from the runtime's own model)."""

    synchronous: bool
    invoke_timeout_ms: int
    drain_timeout_s: float
    payload_format: str
    batch_max_size: int
    batch_max_time_ms: int
    max_record_age_ms: int
    subscription: str
    initial_position: str
    extra: Mapping[str, Any] = field(default_factory=dict)


def timeout_problems(s: Settings, function_timeout_s: int) -> list[tuple[str, str]]:
    """(reason, message) for each rule the settings break against the function's Timeout.

    - Synchronous invocations wait for the function: a read timeout not above its Timeout cuts
      a long invocation off while the function keeps running, and the runtime retries it
      (a timeout is retriable), so the record is processed twice.
    - A shutdown waits `drainTimeoutSeconds` for invocations in flight, then cancels them and
      the records come again: a drain shorter than the Timeout makes that a duplicate.
    - Records wait in a V2 batch up to batchMaxTimeMs before the age screen
      (failurePolicy.maxRecordAgeMs) runs: a wait not below the age limit gives up fresh
      records without invoking them.
    """
    out: list[tuple[str, str]] = []
    limit_ms = function_timeout_s * 1000
    if s.synchronous and s.invoke_timeout_ms <= limit_ms:
        out.append(
            (
                "InvokeTimeoutBelowFunctionTimeout",
                f"spec.sinkConfig.invokeTimeoutMs ({s.invoke_timeout_ms} ms) is not above the "
                f"function's Timeout ({function_timeout_s} s): a longer invocation is cut off "
                "and retried while the first still runs (duplicates); set it above "
                f"{limit_ms} ms, or lower the function's Timeout",
            )
        )
    if s.synchronous and s.drain_timeout_s < function_timeout_s:
        out.append(
            (
                "DrainShorterThanFunctionTimeout",
                f"the workers' drain ({s.drain_timeout_s:g} s, from "
                "spec.pod.terminationGracePeriodSeconds) is shorter than the function's Timeout "
                f"({function_timeout_s} s): invocations still running at shutdown are cancelled "
                "and their records delivered again; raise terminationGracePeriodSeconds to at "
                f"least {function_timeout_s + 5}",
            )
        )
    batching = s.payload_format == "V2" and s.batch_max_size > 1
    if batching and s.max_record_age_ms and s.batch_max_time_ms >= s.max_record_age_ms:
        out.append(
            (
                "BatchWaitExceedsRecordAge",
                f"spec.sinkConfig.batchMaxTimeMs ({s.batch_max_time_ms} ms) is not below "
                f"spec.failurePolicy.maxRecordAgeMs ({s.max_record_age_ms} ms): records "
                "waiting for a batch are given up before they are invoked",
            )
        )
    return out


def function_reachable(p: FunctionProbe, generation: int | None) -> dict[str, Any]:
    name = f'function "{p.function}"'
    table = {
        "ok": (TRUE, "Invocable", f"{name} exists and this sink's identity may invoke it (DryRun)"),
        "not_found": (FALSE, "FunctionNotFound", f"{name} not found: {p.detail}"),
        "denied": (FALSE, "AccessDenied", f"DryRun invoke of {name} denied: {p.detail}"),
        "throttled": (UNKNOWN, "Throttled", f"DryRun invoke of {name} throttled: {p.detail}"),
        "unreachable": (
            FALSE,
            "EndpointUnreachable",
            f"the Lambda endpoint for {name} cannot be reached: {p.detail}",
        ),
        "failed": (FALSE, "CheckFailed", f"DryRun invoke of {name} failed: {p.detail}"),
    }
    status, reason, message = table.get(p.outcome, (UNKNOWN, "NotChecked", p.detail))
    return condition(FUNCTION_REACHABLE, status, reason, message, generation)


def timeouts_compatible(
    p: FunctionProbe, s: Settings | None, generation: int | None
) -> dict[str, Any]:
    if s is None or p.timeout_s is None:
        why = p.timeout_detail or p.detail or "the function's Timeout is not known"
        return condition(TIMEOUTS_COMPATIBLE, UNKNOWN, "FunctionTimeoutUnknown", why, generation)
    problems = timeout_problems(s, p.timeout_s)
    if problems:
        return condition(
            TIMEOUTS_COMPATIBLE,
            FALSE,
            problems[0][0],
            "; ".join(m for _, m in problems),
            generation,
        )
    mode = "synchronous" if s.synchronous else "asynchronous"
    return condition(
        TIMEOUTS_COMPATIBLE,
        TRUE,
        "Compatible",
        f"function Timeout {p.timeout_s} s fits the {mode} invoke timeout "
        f"({s.invoke_timeout_ms} ms), the drain ({s.drain_timeout_s:g} s) and the batch wait "
        f"({s.batch_max_time_ms} ms)",
        generation,
    )


def topics_exist(p: TopicProbe, generation: int | None) -> dict[str, Any]:
    if p.error:
        reason = "NotChecked" if p.skipped else "PulsarUnreachable"
        return condition(TOPICS_EXIST, UNKNOWN, reason, p.error, generation)
    if p.pattern is not None:
        if not p.matched:
            return condition(
                TOPICS_EXIST,
                FALSE,
                "NoTopicMatchesPattern",
                f'no topic matches topicsPattern "{p.pattern}" (yet); the workers pick up '
                "matching topics as they appear",
                generation,
            )
        return condition(
            TOPICS_EXIST,
            TRUE,
            "PatternMatches",
            f'topicsPattern "{p.pattern}" matches {len(p.matched)} topic(s): '
            + ", ".join(p.matched[:10]),
            generation,
        )
    if p.missing:
        return condition(
            TOPICS_EXIST,
            FALSE,
            "TopicNotFound",
            "topic(s) not found: " + ", ".join(p.missing),
            generation,
        )
    return condition(
        TOPICS_EXIST, TRUE, "TopicsFound", f"all {len(p.topics)} input topic(s) exist", generation
    )


def subscription_ready(p: TopicProbe, s: Settings | None, generation: int | None) -> dict[str, Any]:
    if s is None or p.error:
        why = p.error or "the configuration is not valid"
        return condition(SUBSCRIPTION_READY, UNKNOWN, "NotChecked", why, generation)
    present = (
        p.matched if p.pattern is not None else tuple(t for t in p.topics if t not in p.missing)
    )
    if not present:
        return condition(
            SUBSCRIPTION_READY,
            UNKNOWN,
            "TopicsMissing",
            f'subscription "{s.subscription}" cannot be checked before its topics exist',
            generation,
        )
    lacking = [t for t in present if t not in p.subscribed]
    if not lacking:
        return condition(
            SUBSCRIPTION_READY,
            TRUE,
            "SubscriptionExists",
            f'subscription "{s.subscription}" exists on every input topic; the workers resume '
            "where it stands",
            generation,
        )
    where = (
        "the oldest retained message (Earliest)"
        if s.initial_position == "Earliest"
        else "the next message published (Latest)"
    )
    return condition(
        SUBSCRIPTION_READY,
        TRUE,
        f"WillBeCreatedAt{s.initial_position}",
        f'subscription "{s.subscription}" does not exist yet on '
        + ", ".join(lacking[:10])
        + f"; the workers create it at {where}",
        generation,
    )


def fold(
    function: FunctionProbe,
    topics: TopicProbe,
    settings: Settings | None,
    generation: int | None,
) -> list[dict[str, Any]]:
    """The four pre-flight conditions from one round of probes."""
    return [
        function_reachable(function, generation),
        timeouts_compatible(function, settings, generation),
        topics_exist(topics, generation),
        subscription_ready(topics, settings, generation),
    ]


def blocking(existing: Sequence[Mapping[str, Any]] | None) -> str | None:
    """The pre-flight problem that makes Ready False, from the conditions the status holds."""
    found = find(existing, FUNCTION_REACHABLE)
    if found and found.get("status") == FALSE and found.get("reason") in BLOCKING_REASONS:
        return str(found.get("message") or found.get("reason"))
    return None


def turned_bad(
    old: Sequence[Mapping[str, Any]] | None, new: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Conditions that became False (or changed their False reason): one Warning Event each."""
    out: list[dict[str, Any]] = []
    for cond in new:
        if cond.get("type") not in TYPES or cond.get("status") != FALSE:
            continue
        before = find(old, str(cond["type"]))
        if before is None or (before.get("status"), before.get("reason")) != (
            FALSE,
            cond.get("reason"),
        ):
            out.append(dict(cond))
    return out
