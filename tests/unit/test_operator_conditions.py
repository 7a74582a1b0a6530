"""Condition bookkeeping and the Ready verdict (pure)."""

from __future__ import annotations

from typing import Any

from lambdasink_operator import conditions as c
from lambdasink_operator.conditions import Workers


def pod(name: str, container_status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"containerStatuses": [{"name": "worker", **container_status}]},
    }


def test_merge_keeps_transition_time_while_status_is_unchanged() -> None:
    first = c.merge([], [c.config_valid(None, 1)], "t1")
    assert first == [
        {
            "type": "ConfigValid",
            "status": "True",
            "reason": "Valid",
            "message": "the effective configuration is valid",
            "observedGeneration": 1,
            "lastTransitionTime": "t1",
        }
    ]
    same = c.merge(first, [c.config_valid(None, 2)], "t2")
    assert same[0]["lastTransitionTime"] == "t1" and same[0]["observedGeneration"] == 2
    flipped = c.merge(same, [c.config_valid("spec.x: bad", 3)], "t3")
    assert flipped[0]["status"] == "False" and flipped[0]["lastTransitionTime"] == "t3"


def test_merge_orders_ours_first_and_keeps_foreign_conditions() -> None:
    existing = [
        {"type": "Zeta", "status": "True"},
        {"type": "ConfigValid", "status": "True", "lastTransitionTime": "t0"},
    ]
    merged = c.merge(
        existing,
        [
            c.ready(
                generation=1,
                config_error=None,
                blocked=None,
                missing_secrets=[],
                workers=Workers(desired=0),
            )
        ],
        "t1",
    )
    assert [x["type"] for x in merged] == ["Ready", "ConfigValid", "Zeta"]


def test_ready_verdicts_in_priority_order() -> None:
    def verdict(**kw: Any) -> tuple[str, str]:
        args: dict[str, Any] = {
            "generation": 1,
            "config_error": None,
            "blocked": None,
            "missing_secrets": [],
            "workers": Workers(desired=1, exists=True, ready=1, updated=1, replicas=1),
        }
        args.update(kw)
        cond = c.ready(**args)
        return cond["status"], cond["reason"]

    assert verdict() == ("True", "WorkersReady")
    assert verdict(config_error="bad") == ("False", "InvalidSpec")
    assert verdict(blocked="taken") == ("False", "DeploymentBlocked")
    assert verdict(missing_secrets=['Secret "aws" not found']) == ("False", "SecretNotFound")
    assert verdict(workers=Workers(desired=0, exists=True)) == ("True", "Paused")
    assert verdict(workers=Workers(desired=1, exists=True, failing="pod p: exit 2")) == (
        "False",
        "WorkerFailing",
    )
    assert verdict(workers=Workers(desired=1)) == ("False", "Deploying")
    assert verdict(workers=Workers(desired=3, exists=True, ready=1, updated=3)) == (
        "False",
        "WorkersNotReady",
    )
    assert verdict(workers=Workers(desired=3, exists=True, ready=1, updated=1)) == (
        "False",
        "RollingOut",
    )


def test_worker_failure_reads_the_termination_message() -> None:
    crashing = pod(
        "w-1",
        {
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
            "lastState": {
                "terminated": {
                    "exitCode": 2,
                    "message": "sink.payloadFormat: 'V3' is not valid; one of V1, V2\n",
                }
            },
        },
    )
    expected = "sink.payloadFormat: 'V3' is not valid; one of V1, V2"
    assert c.worker_failure([crashing]) == f"pod w-1: worker exited with code 2: {expected}"
    config_error = pod(
        "w-2",
        {
            "state": {
                "waiting": {
                    "reason": "CreateContainerConfigError",
                    "message": 'secret "aws" not found',
                }
            }
        },
    )
    assert (
        c.worker_failure([config_error])
        == 'pod w-2: CreateContainerConfigError: secret "aws" not found'
    )
    healthy = pod("w-3", {"state": {"running": {}}, "lastState": {}})
    pending = {"metadata": {"name": "w-4"}, "status": {"phase": "Pending"}}
    assert c.worker_failure([healthy, pending]) is None
    # a pod being deleted does not count
    crashing["metadata"]["deletionTimestamp"] = "now"
    assert c.worker_failure([crashing]) is None


def test_an_oom_killed_worker_is_named_with_its_pod_and_the_reason() -> None:
    """The kubelet reports the kernel's OOM kill as the termination reason; with
    FallbackToLogsOnError the message is the log's tail, so the reason must lead."""
    oom = {"exitCode": 137, "reason": "OOMKilled", "message": "INFO starting: function=f"}
    looping = pod(
        "w-oom",
        {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": oom}},
    )
    reason, message = c.worker_problem([looping]) or ("", "")
    assert reason == "WorkerOOMKilled"
    assert message.startswith("pod w-oom: worker OOMKilled (exit code 137)")
    assert "limits.memory" in message and message.endswith("INFO starting: function=f")
    # restarted and running again, but not ready yet: still the OOM kill
    restarted = pod(
        "w-oom", {"state": {"running": {}}, "ready": False, "lastState": {"terminated": oom}}
    )
    assert (c.worker_problem([restarted]) or ("",))[0] == "WorkerOOMKilled"
    # ready again: the earlier kill no longer makes it failing
    recovered = pod(
        "w-oom", {"state": {"running": {}}, "ready": True, "lastState": {"terminated": oom}}
    )
    assert c.worker_problem([recovered]) is None
    ready = c.ready(
        generation=1,
        config_error=None,
        blocked=None,
        missing_secrets=[],
        workers=c.Workers(desired=1, exists=True, failing=message, failing_reason=reason),
    )
    assert (ready["status"], ready["reason"]) == ("False", "WorkerOOMKilled")
    assert "w-oom" in ready["message"] and "OOMKilled" in ready["message"]


def test_messages_are_bounded() -> None:
    assert len(c.config_valid("x" * 5000, 1)["message"]) == c.MESSAGE_LIMIT
