"""The backlog loop over an in-memory Kube, with the Pulsar read replaced (the broker part is
tested end to end in tests/e2e/test_e2e_autoscaling.py): status, conditions, scale writes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.unit.operator_fakes import MemoryKube, sink_body

from lambdasink_operator import pulsar_admin, sizing
from lambdasink_operator.backlog import Backlog, BacklogError
from lambdasink_operator.reconcile import Reconciler


def setup(
    monkeypatch: pytest.MonkeyPatch, answers: list[Any], **spec: Any
) -> tuple[MemoryKube, sizing.Sizer, list[float]]:
    kube = MemoryKube()
    body = sink_body()
    body["spec"].update(spec)
    kube.add_sink(body)
    clock = [0.0]
    sizer = sizing.Sizer(Reconciler(kube, runtime_image="img:1"), clock=lambda: clock[0])

    async def read(sink_spec: Any, name: str, read_secret: Any) -> Backlog:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    monkeypatch.setattr(pulsar_admin, "read_sink_backlog", read)
    return kube, sizer, clock


def test_backlog_goes_to_status_and_unreachable_is_a_condition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: list[Any] = [Backlog(12, 1000, 2.0), BacklogError("refused", reachable=False)]
    kube, sizer, _ = setup(monkeypatch, answers)
    asyncio.run(sizer.round(kube.view()))
    status = kube.sink()["status"]
    assert status["backlog"]["messages"] == 12
    asyncio.run(sizer.round(kube.view()))
    cond = {c["type"]: c for c in kube.sink()["status"]["conditions"]}["BacklogKnown"]
    assert (cond["status"], cond["reason"]) == ("False", "PulsarUnreachable")
    assert kube.sink()["status"]["backlog"]["messages"] == 12  # the last figures stay
    assert [e[1] for e in kube.events] == ["PulsarUnreachable"]
    assert not [c for c in kube.calls if c.startswith("scale_sink")]  # autoscaling is off


def test_autoscaling_writes_replicas_through_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[Any] = [Backlog(250), Backlog(0), Backlog(0)]
    auto = {
        "minReplicas": 0,
        "maxReplicas": 5,
        "targetBacklogPerReplica": 100,
        "scaleDownStabilizationSeconds": 30,
    }
    kube, sizer, clock = setup(monkeypatch, answers, replicas=0, autoscaling=auto)
    asyncio.run(sizer.round(kube.view()))
    assert kube.sink()["spec"]["replicas"] == 3
    assert kube.sink()["status"]["autoscaling"]["desiredReplicas"] == 3
    clock[0] = 10.0
    asyncio.run(sizer.round(kube.view()))
    assert kube.sink()["spec"]["replicas"] == 3  # within the window
    clock[0] = 41.0
    asyncio.run(sizer.round(kube.view()))
    assert kube.sink()["spec"]["replicas"] == 0
    assert [c for c in kube.calls if c.startswith("scale_sink")] == [
        "scale_sink orders 3",
        "scale_sink orders 0",
    ]
    assert [e[1] for e in kube.events] == ["ScaledUp", "ScaledDown"]
