"""Pure parts of backlog reporting, autoscaling and the drain period (no broker, no cluster)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from lambdasink_operator import autoscale, backlog, drain, sizing
from lambdasink_operator.autoscale import Inputs, Memory, Policy
from lambdasink_operator.backlog import Backlog, BacklogError
from lambdasink_operator.worker_status import WorkerReport


def sub(backlog_: int, earliest: int = 0, rate: float = 0.0) -> dict[str, Any]:
    return {
        "msgBacklog": backlog_,
        "earliestMsgPublishTimeInBacklog": earliest,
        "msgRateOut": rate,
        "type": "Shared",
    }


# ------------------------------------------------------------------ admin URL and topics


@pytest.mark.parametrize(
    ("pulsar", "url"),
    [
        ({"serviceUrl": "pulsar://broker:6650", "adminUrl": "http://a:8080/"}, "http://a:8080"),
        ({"serviceUrl": "pulsar://broker.ns.svc:6650"}, "http://broker.ns.svc:8080"),
        ({"serviceUrl": "pulsar+ssl://broker:6651"}, "https://broker:8443"),
        ({"serviceUrl": "pulsar://b1:6650,b2:6650"}, "http://b1:8080"),
        ({}, "http://localhost:8080"),
    ],
)
def test_admin_url_defaults_from_the_service_url(pulsar: dict[str, Any], url: str) -> None:
    assert backlog.admin_url(pulsar) == url


def test_topic_paths_are_the_admin_apis() -> None:
    topics = backlog.parse_topics(["orders", "persistent://t/ns/a", "t/ns/a"])
    assert [t.full for t in topics] == ["persistent://public/default/orders", "persistent://t/ns/a"]
    assert backlog.topic_base(topics[1]) == "/admin/v2/persistent/t/ns/a"


def test_pattern_lists_its_namespace_and_folds_partitions() -> None:
    path, regex = backlog.split_pattern("persistent://t/ns/orders-.*")
    assert path == "/admin/v2/persistent/t/ns"
    listing = [
        "persistent://t/ns/orders-a-partition-0",
        "persistent://t/ns/orders-a-partition-1",
        "persistent://t/ns/orders-b",
        "persistent://t/ns/other",
    ]
    assert backlog.matching(listing, regex) == [
        "persistent://t/ns/orders-a",
        "persistent://t/ns/orders-b",
    ]
    with pytest.raises(BacklogError):
        backlog.matching(listing, "persistent://t/ns/(")


# ------------------------------------------------------------------ stats → backlog


def test_topic_stats_give_our_subscription_only() -> None:
    stats = {"subscriptions": {"mine": sub(5, 1_000_000, 2.5), "other": sub(99)}}
    got = backlog.from_topic_stats(stats, "mine", "t")
    assert got == Backlog(messages=5, earliest_publish_ms=1_000_000, rate_out=2.5)
    assert backlog.from_topic_stats(stats, "absent", "t") == Backlog(missing=("t",))


def test_empty_backlog_has_no_oldest_message() -> None:
    got = backlog.from_topic_stats({"subscriptions": {"s": sub(0, 123)}}, "s", "t")
    assert got.earliest_publish_ms is None


def test_partitions_sum_and_the_oldest_is_the_earliest() -> None:
    stats = {
        "metadata": {"partitions": 3},
        "subscriptions": {"s": sub(0)},  # the aggregate is ignored
        "partitions": {
            "t-partition-0": {"subscriptions": {"s": sub(3, 3000, 1.0)}},
            "t-partition-1": {"subscriptions": {"s": sub(4, 2000, 0.5)}},
            "t-partition-2": {"subscriptions": {"s": sub(0)}},
        },
    }
    assert backlog.from_partitioned_stats(stats, "s", "t") == Backlog(7, 2000, 1.5)
    none: dict[str, Any] = {"partitions": {"t-partition-0": {"subscriptions": {}}}}
    assert backlog.from_partitioned_stats(none, "s", "t").missing == ("t",)


def test_topics_add_up_into_the_status() -> None:
    total = backlog.summed([Backlog(2, 5000, 1.0), Backlog(3, None, 0.25), Backlog(missing=("x",))])
    assert total == Backlog(5, 5000, 1.25, ("x",))
    now = dt.datetime.fromtimestamp(65, dt.UTC)
    doc = backlog.status_doc(total, now)
    assert doc == {
        "messages": 5,
        "oldestAgeSeconds": 60,
        "deliveredPerSecond": 1.25,
        "observedAt": "1970-01-01T00:01:05Z",
        "subscriptionMissingOn": ["x"],
    }
    assert backlog.status_doc(Backlog(), now)["oldestAgeSeconds"] is None


def test_conditions_name_the_reason() -> None:
    assert backlog.known(Backlog(4), 2)["reason"] == "Read"
    assert backlog.known(Backlog(missing=("t",)), 2)["reason"] == "SubscriptionMissing"
    down = backlog.unknown("connection refused", 2, reachable=False)
    assert (down["status"], down["reason"]) == ("False", "PulsarUnreachable")
    assert backlog.unknown("HTTP 401", 2, reachable=True)["reason"] == "PulsarAdminError"


# ------------------------------------------------------------------ autoscaling


def test_policy_is_opt_in_with_defaults() -> None:
    assert autoscale.policy({}) is None
    assert autoscale.policy({"autoscaling": {"enabled": False}}) is None
    assert autoscale.policy({"autoscaling": {}}) == Policy()
    got = autoscale.policy({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}})
    assert got is not None and (got.min_replicas, got.max_replicas) == (5, 5)
    exclusive = {"autoscaling": {"maxReplicas": 4}, "input": {"subscriptionType": "Exclusive"}}
    got = autoscale.policy(exclusive)
    assert got is not None and (got.min_replicas, got.max_replicas) == (1, 1)


P = Policy(
    min_replicas=0, max_replicas=5, target_backlog_per_replica=100, scale_down_stabilization_s=30
)


@pytest.mark.parametrize(
    ("inputs", "want"),
    [
        (Inputs(backlog=0, current=0), 0),
        (Inputs(backlog=1, current=0), 1),
        (Inputs(backlog=250, current=1), 3),
        (Inputs(backlog=10_000, current=1), 5),  # maxReplicas
        (Inputs(backlog=0, current=0, subscription_missing=True), 1),
        (Inputs(backlog=10_000, current=1, reserved_concurrency=8, max_in_flight=4), 2),
        (Inputs(backlog=10_000, current=1, reserved_concurrency=0), 1),  # progress, at least
        (Inputs(backlog=10_000, current=2, throttled=True), 2),  # held
        (Inputs(backlog=0, current=3, throttled=True), 0),  # throttling never blocks going down
    ],
)
def test_recommendation(inputs: Inputs, want: int) -> None:
    assert autoscale.recommend(P, inputs)[0] == want


def test_max_concurrency_caps_replicas_times_in_flight() -> None:
    policy = Policy(max_replicas=10, target_backlog_per_replica=1, max_concurrency=12)
    got, cap, reason = autoscale.recommend(policy, Inputs(backlog=500, current=1, max_in_flight=4))
    assert (got, cap) == (3, 3) and "concurrency" in reason


def test_up_at_once_down_after_the_window_and_to_zero() -> None:
    memory = Memory()
    d, memory = autoscale.decide(P, Inputs(backlog=500, current=0), memory, now=0)
    assert d.replicas == 5
    d, memory = autoscale.decide(P, Inputs(backlog=0, current=5), memory, now=10)
    assert d.replicas == 5  # not watched for a window yet
    d, memory = autoscale.decide(P, Inputs(backlog=0, current=5), memory, now=35)
    assert d.replicas == 0  # the 5 of t=0 left the window; only zeros remain
    d, memory = autoscale.decide(P, Inputs(backlog=3, current=0), memory, now=40)
    assert d.replicas == 1  # a message brings one back


def test_scale_down_keeps_the_highest_recommendation_of_the_window() -> None:
    memory = Memory(since=-100)
    d, memory = autoscale.decide(P, Inputs(backlog=400, current=4), memory, now=0)
    d, memory = autoscale.decide(P, Inputs(backlog=150, current=4), memory, now=20)
    assert d.replicas == 4 and "stabilisation" in d.reason
    d, memory = autoscale.decide(P, Inputs(backlog=150, current=4), memory, now=31)
    assert d.replicas == 2


def test_sustained_throttling_needs_growth_in_consecutive_rounds() -> None:
    memory = sizing.SinkMemory()

    def rnd(throttled: float) -> bool:
        return sizing.next_throttled(memory, [WorkerReport("p", status={"throttled": throttled})])

    assert [rnd(0), rnd(5), rnd(9), rnd(9), rnd(12)] == [False, False, True, False, False]
    open_ = WorkerReport(
        "p",
        status={"breaker": {"state": "open", "reason": "5 of 5 calls failed (last: throttled)"}},
    )
    assert sizing.next_throttled(memory, [open_])


# ------------------------------------------------------------------ drain


@pytest.mark.parametrize(
    ("spec", "timeout", "grace"),
    [
        ({}, None, 70),  # invokeTimeoutMs 60 s + 5 ack + 5 kill margin
        ({"sinkConfig": {"invokeTimeoutMs": 300_000}}, None, 310),
        ({"sinkConfig": {"invokeTimeoutMs": 300_000}}, 20, 31),  # the function stops at 20 s
        ({"sinkConfig": {"invokeTimeoutMs": 2000}}, None, 30),  # never below Kubernetes' 30
        ({"pod": {"terminationGracePeriodSeconds": 12}}, 900, 12),  # the user's value wins
        ({"sinkConfig": {"invokeTimeoutMs": 10_000_000}}, None, 3600),
    ],
)
def test_grace_period_covers_the_longest_call(
    spec: dict[str, Any], timeout: int | None, grace: int
) -> None:
    assert drain.grace_seconds(spec, timeout) == grace
    assert drain.drain_timeout_s(grace) <= grace - min(5, grace // 2)


def test_keda_example_targets_the_scale_subresource() -> None:
    import yaml  # noqa: PLC0415

    root = Path(__file__).resolve().parents[2]
    scaled = yaml.safe_load((root / "examples" / "keda" / "scaledobject.yaml").read_text())
    crd = yaml.safe_load((root / "deploy" / "crds" / "lambdasink.dev_lambdasinks.yaml").read_text())
    target = scaled["spec"]["scaleTargetRef"]
    version = crd["spec"]["versions"][0]
    assert target["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
    assert target["kind"] == crd["spec"]["names"]["kind"]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert scaled["spec"]["triggers"][0]["type"] == "pulsar"
