"""Pure autoscaling: a sink's backlog and limits → how many workers it should have.

The rules, in order:
1. `ceil(backlog / targetBacklogPerReplica)` between minReplicas and maxReplicas; at least one
   worker while the subscription does not exist yet (only a consumer creates it).
2. Capped so that replicas x maxInFlight stays within `maxConcurrency` and within the
   function's reserved concurrency (more workers would only be throttled).
3. No scale-up while the workers report sustained throttling (they already ask for more than
   Lambda gives).
4. Up at once; down only to the highest recommendation of the last
   `scaleDownStabilizationSeconds`, and only once the operator has watched that long (after a
   restart it has no history, and must not drop workers on one sample). With minReplicas 0 this
   is scale to zero when the backlog stayed empty for the window; any message brings one back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MIN = 1
DEFAULT_MAX = 10
DEFAULT_TARGET = 1000
DEFAULT_STABILIZATION_S = 300


@dataclass(frozen=True)
class Policy:
    """`spec.autoscaling`, with defaults (the CRD carries the same)."""

    min_replicas: int = DEFAULT_MIN
    max_replicas: int = DEFAULT_MAX
    target_backlog_per_replica: int = DEFAULT_TARGET
    scale_down_stabilization_s: float = DEFAULT_STABILIZATION_S
    max_concurrency: int | None = None


def _int(value: object, default: int, floor: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(floor, value)
    return default


def policy(sink_spec: Mapping[str, Any]) -> Policy | None:
    """The policy when `spec.autoscaling` is present and not `enabled: false`, else None
    (replicas then belong to the user, `kubectl scale` or an HPA/KEDA)."""
    doc = sink_spec.get("autoscaling")
    if not isinstance(doc, Mapping) or doc.get("enabled") is False:
        return None
    low = _int(doc.get("minReplicas"), DEFAULT_MIN, 0)
    high = max(low, _int(doc.get("maxReplicas"), DEFAULT_MAX, 1))
    input_spec = sink_spec.get("input")
    if isinstance(input_spec, Mapping) and input_spec.get("subscriptionType") == "Exclusive":
        low, high = min(low, 1), 1  # one consumer only (the CRD refuses replicas > 1)
    cap = doc.get("maxConcurrency")
    return Policy(
        min_replicas=low,
        max_replicas=high,
        target_backlog_per_replica=_int(doc.get("targetBacklogPerReplica"), DEFAULT_TARGET, 1),
        scale_down_stabilization_s=float(
            _int(doc.get("scaleDownStabilizationSeconds"), DEFAULT_STABILIZATION_S, 0)
        ),
        max_concurrency=cap if isinstance(cap, int) and cap > 0 else None,
    )


@dataclass(frozen=True)
class Inputs:
    """What one round knows."""

    backlog: int
    current: int  # spec.replicas now
    max_in_flight: int = 4
    subscription_missing: bool = False
    reserved_concurrency: int | None = None  # the function's, when it has one
    throttled: bool = False  # sustained throttling reported by the workers


@dataclass(frozen=True)
class Decision:
    replicas: int  # what spec.replicas should be
    recommended: int  # this round's recommendation (kept in the history)
    cap: int | None  # the concurrency cap in replicas, when one applies
    reason: str  # why, for the Event and the log


def concurrency_cap(policy_: Policy, max_in_flight: int, reserved: int | None) -> int | None:
    """Most replicas whose in-flight invocations fit the smaller of maxConcurrency and the
    function's reserved concurrency; at least 1 (a sink with a backlog must make progress)."""
    limits = [x for x in (policy_.max_concurrency, reserved) if x is not None]
    if not limits:
        return None
    return max(1, min(limits) // max(1, max_in_flight))


def recommend(policy_: Policy, inputs: Inputs) -> tuple[int, int | None, str]:
    """Rules 1-3: (replicas, cap, reason) before stabilisation."""
    want = math.ceil(max(0, inputs.backlog) / policy_.target_backlog_per_replica)
    reason = f"backlog {inputs.backlog} / target {policy_.target_backlog_per_replica} per replica"
    if inputs.subscription_missing and want == 0:
        want, reason = 1, "the subscription does not exist yet: a worker creates it"
    if want > policy_.max_replicas:
        reason += f", capped at maxReplicas {policy_.max_replicas}"
    want = min(policy_.max_replicas, max(policy_.min_replicas, want))
    cap = concurrency_cap(policy_, inputs.max_in_flight, inputs.reserved_concurrency)
    if cap is not None and want > cap:
        want = cap
        reason += f", capped at {cap} by concurrency (x maxInFlight {inputs.max_in_flight})"
    if inputs.throttled and want > inputs.current:
        want = inputs.current
        reason += ", held: the workers are being throttled"
    return want, cap, reason


@dataclass(frozen=True)
class Memory:
    """What rule 4 remembers per sink: since when it watches, and the recommendations of the
    last window (time, replicas), oldest first."""

    since: float | None = None
    recent: tuple[tuple[float, int], ...] = ()


def decide(policy_: Policy, inputs: Inputs, memory: Memory, now: float) -> tuple[Decision, Memory]:
    """Rule 4 on top of `recommend`; returns the decision and the memory for the next round."""
    want, cap, reason = recommend(policy_, inputs)
    window = policy_.scale_down_stabilization_s
    since = now if memory.since is None else memory.since
    recent = (*((t, r) for t, r in memory.recent if now - t <= window), (now, want))
    kept = Memory(since, recent)
    if want >= inputs.current:
        return Decision(want, want, cap, reason), kept
    if now - since < window:
        held = f"{reason}; held at {inputs.current} until watched for {window:g}s"
        return Decision(inputs.current, want, cap, held), kept
    replicas = min(inputs.current, max(r for _, r in recent))
    if replicas > want:
        reason += f"; held at {replicas} by the {window:g}s stabilisation window"
    return Decision(replicas, want, cap, reason), kept
