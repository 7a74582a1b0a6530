"""What the workers report about failures, folded into conditions (pure).

Each worker serves `/status` (breaker state, records dead-lettered or dropped by reason, the
last dead-letter write error). The operator reads it from every worker pod on a timer and
turns it into two conditions a user sees in `kubectl describe`:

- `Delivering`: False (CircuitBreakerOpen) while any worker stopped pulling because the
  function cannot be reached or run; True when every reachable worker delivers; Unknown when
  no worker could be asked.
- `DeadLettering`: True (RecordsDeadLettered / RecordsDropped / DeadLetterWriteFailing) when
  the workers gave up on records within `RECENT_S`, or cannot write the dead-letter topic;
  False (NoneGivenUp) otherwise.

The totals are since each worker started, summed over the current workers; `status.failures`
keeps them with the time they last grew, so "recently" survives operator restarts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .conditions import FALSE, TRUE, UNKNOWN, condition

DELIVERING = "Delivering"
DEAD_LETTERING = "DeadLettering"
#: How long DeadLettering stays True after the totals last grew.
RECENT_S = 300


@dataclass(frozen=True)
class WorkerReport:
    """One worker's /status, or why it could not be read."""

    pod: str
    status: Mapping[str, Any] | None = None
    error: str = ""


@dataclass
class Totals:
    dead_lettered: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(self.dead_lettered.values()) + sum(self.dropped.values())


def _counts(doc: object) -> dict[str, int]:
    if not isinstance(doc, Mapping):
        return {}
    out = {}
    for reason, value in doc.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[str(reason)] = int(value)
    return out


def totals(reports: Sequence[WorkerReport]) -> Totals:
    out = Totals()
    for report in reports:
        doc = report.status or {}
        for target, key in ((out.dead_lettered, "deadLettered"), (out.dropped, "dropped")):
            for reason, n in _counts(doc.get(key)).items():
                target[reason] = target.get(reason, 0) + n
    return out


def _since(stamp: object, now: datetime) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (now - then).total_seconds()


def _breakdown(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items()) if n)


def fold(
    reports: Sequence[WorkerReport],
    previous: Mapping[str, Any] | None,
    generation: int | None,
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(conditions, new `status.failures`) from this round of reports and the last failures."""
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    read = [r for r in reports if r.status is not None]
    current = totals(read)
    prev = previous or {}
    before = Totals(_counts(prev.get("deadLettered")), _counts(prev.get("dropped")))
    last = prev.get("lastGivenUpTime")
    # Grew, or workers restarted with new counts (totals fell but are not zero).
    if current.count and current.count != before.count:
        last = stamp
    failures: dict[str, Any] = {
        "deadLettered": current.dead_lettered,
        "dropped": current.dropped,
    }
    if last:
        failures["lastGivenUpTime"] = last

    if not read:
        why = "; ".join(f"{r.pod}: {r.error}" for r in reports[:3]) or "no worker pod"
        delivering = condition(
            DELIVERING, UNKNOWN, "NoWorkerStatus", f"no worker answered /status ({why})", generation
        )
    else:
        open_ = [r for r in read if (r.status or {}).get("breaker", {}).get("state") != "closed"]
        if open_:
            first = open_[0].status or {}
            breaker = first.get("breaker") or {}
            delivering = condition(
                DELIVERING,
                FALSE,
                "CircuitBreakerOpen",
                f"{len(open_)} of {len(read)} workers stopped pulling: circuit breaker "
                f"{breaker.get('state')} for {breaker.get('openForSeconds', 0)}s: "
                f"{breaker.get('reason', '')} (pod {open_[0].pod})",
                generation,
            )
        else:
            delivering = condition(
                DELIVERING, TRUE, "Delivering", f"{len(read)} workers delivering", generation
            )

    write_errors = [(r.pod, str((r.status or {}).get("deadLetterError") or "")) for r in read]
    write_errors = [(pod, err) for pod, err in write_errors if err]
    age = _since(last, now)
    if write_errors:
        pod, err = write_errors[0]
        dead = condition(
            DEAD_LETTERING,
            TRUE,
            "DeadLetterWriteFailing",
            f"records are kept unacknowledged until the dead-letter topic accepts them: "
            f"{err} (pod {pod})",
            generation,
        )
    elif age is not None and age < RECENT_S and current.count:
        parts = []
        if current.dead_lettered:
            parts.append(f"dead-lettered {_breakdown(current.dead_lettered)}")
        if current.dropped:
            parts.append(f"dropped {_breakdown(current.dropped)}")
        reason = "RecordsDeadLettered" if current.dead_lettered else "RecordsDropped"
        dead = condition(
            DEAD_LETTERING,
            TRUE,
            reason,
            f"workers gave up on records (last at {last}): " + "; ".join(parts),
            generation,
        )
    else:
        dead = condition(
            DEAD_LETTERING,
            FALSE,
            "NoneGivenUp",
            f"no record given up in the last {RECENT_S // 60} minutes",
            generation,
        )
    return [delivering, dead], failures
