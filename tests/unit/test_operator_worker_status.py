"""Worker /status reports folded into the Delivering and DeadLettering conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lambdasink_operator.worker_status import WorkerReport, fold

NOW = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)


def ok(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "breaker": {"state": "closed", "reason": "", "openForSeconds": 0},
        "deadLettered": {},
        "dropped": {},
        "deadLetterError": "",
    }
    doc.update(extra)
    return doc


def by_type(conds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conds}


def test_all_delivering_nothing_given_up() -> None:
    conds, failures = fold([WorkerReport("p1", ok()), WorkerReport("p2", ok())], None, 3, NOW)
    c = by_type(conds)
    assert (c["Delivering"]["status"], c["Delivering"]["reason"]) == ("True", "Delivering")
    assert (c["DeadLettering"]["status"], c["DeadLettering"]["reason"]) == ("False", "NoneGivenUp")
    assert c["Delivering"]["observedGeneration"] == 3
    assert failures == {"deadLettered": {}, "dropped": {}}


def test_open_breaker_names_the_reason_and_pod() -> None:
    broken = ok(breaker={"state": "open", "reason": "10 of 10 calls failed", "openForSeconds": 42})
    conds, _ = fold([WorkerReport("p1", ok()), WorkerReport("p2", broken)], None, 1, NOW)
    delivering = by_type(conds)["Delivering"]
    assert (delivering["status"], delivering["reason"]) == ("False", "CircuitBreakerOpen")
    assert "1 of 2 workers" in delivering["message"]
    assert "10 of 10 calls failed" in delivering["message"] and "p2" in delivering["message"]


def test_no_worker_answers_is_unknown() -> None:
    conds, _ = fold([WorkerReport("p1", error="connection refused")], None, 1, NOW)
    delivering = by_type(conds)["Delivering"]
    assert (delivering["status"], delivering["reason"]) == ("Unknown", "NoWorkerStatus")
    assert "connection refused" in delivering["message"]


def test_dead_lettering_while_recent_then_clears() -> None:
    reports = [
        WorkerReport("p1", ok(deadLettered={"function_error": 2.0})),
        WorkerReport("p2", ok(deadLettered={"function_error": 1, "too_old": 4})),
    ]
    conds, failures = fold(reports, None, 1, NOW)
    dead = by_type(conds)["DeadLettering"]
    assert (dead["status"], dead["reason"]) == ("True", "RecordsDeadLettered")
    assert "function_error: 3, too_old: 4" in dead["message"]
    assert failures["deadLettered"] == {"function_error": 3, "too_old": 4}
    assert failures["lastGivenUpTime"] == "2026-12-03T10:00:00Z"
    # Same totals six minutes later: no longer "recent".
    later = NOW + timedelta(minutes=6)
    conds, failures2 = fold(reports, failures, 1, later)
    assert by_type(conds)["DeadLettering"]["status"] == "False"
    assert failures2["lastGivenUpTime"] == "2026-12-03T10:00:00Z"


def test_drops_are_reported() -> None:
    conds, _ = fold([WorkerReport("p1", ok(dropped={"too_large": 1}))], None, 1, NOW)
    dead = by_type(conds)["DeadLettering"]
    assert (dead["reason"], dead["status"]) == ("RecordsDropped", "True")
    assert "dropped too_large: 1" in dead["message"]


def test_dead_letter_write_failure_wins() -> None:
    conds, _ = fold(
        [WorkerReport("p1", ok(deadLetterError="cannot write to dead-letter topic t: denied"))],
        None,
        1,
        NOW,
    )
    dead = by_type(conds)["DeadLettering"]
    assert (dead["status"], dead["reason"]) == ("True", "DeadLetterWriteFailing")
    assert "denied" in dead["message"]
