"""Pre-flight checks: the pure rules and fold, the topic logic over a stand-in admin API, and one
round over `MemoryKube` with stand-in probes (the real Lambda and Pulsar: tests/cluster)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.unit.operator_fakes import NS, MemoryKube, sink_body

from lambdasink_operator import conditions as c
from lambdasink_operator import lambda_check, preflight
from lambdasink_operator import preflight_rules as r
from lambdasink_operator.conditions import Workers
from lambdasink_operator.pulsar_topics import PulsarAdminError
from lambdasink_operator.reconcile import Reconciler
from lambdasink_runtime.config import RuntimeConfig
from lambdasink_runtime.config_sink import AWS_ACCESS_KEY_FILE, SinkConfig

SETTINGS = r.Settings(
    synchronous=True,
    invoke_timeout_ms=60000,
    drain_timeout_s=25.0,
    payload_format="V2",
    batch_max_size=10,
    batch_max_time_ms=1000,
    max_record_age_ms=0,
    subscription="sub",
    initial_position="Earliest",
)


def by_type(conds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {x["type"]: x for x in conds}


# ---------------------------------------------------------------------- rules


def test_timeout_rules() -> None:
    assert r.timeout_problems(SETTINGS, 20) == []
    reasons = [x for x, _ in r.timeout_problems(SETTINGS, 60)]
    assert reasons == ["InvokeTimeoutBelowFunctionTimeout", "DrainShorterThanFunctionTimeout"]
    message = dict(r.timeout_problems(SETTINGS, 60))["InvokeTimeoutBelowFunctionTimeout"]
    assert "invokeTimeoutMs (60000 ms)" in message and "above 60000 ms" in message
    # asynchronous invocations return at once: the function's Timeout does not matter
    assert r.timeout_problems(replace(SETTINGS, synchronous=False), 900) == []
    aged = replace(SETTINGS, max_record_age_ms=1000)
    assert [x for x, _ in r.timeout_problems(aged, 3)] == ["BatchWaitExceedsRecordAge"]
    # no batching (V1 or batchMaxSize 1): records do not wait
    assert r.timeout_problems(replace(aged, payload_format="V1"), 3) == []
    assert r.timeout_problems(replace(aged, batch_max_size=1), 3) == []


def test_fold_all_good() -> None:
    got = by_type(
        r.fold(
            r.FunctionProbe("fn", "ok", timeout_s=20),
            r.TopicProbe(topics=("a", "b"), subscribed=("a", "b")),
            SETTINGS,
            4,
        )
    )
    assert {t: (x["status"], x["reason"]) for t, x in got.items()} == {
        "FunctionReachable": ("True", "Invocable"),
        "TimeoutsCompatible": ("True", "Compatible"),
        "TopicsExist": ("True", "TopicsFound"),
        "SubscriptionReady": ("True", "SubscriptionExists"),
    }
    assert all(x["observedGeneration"] == 4 for x in got.values())


@pytest.mark.parametrize(
    ("outcome", "status", "reason"),
    [
        ("not_found", "False", "FunctionNotFound"),
        ("denied", "False", "AccessDenied"),
        ("throttled", "Unknown", "Throttled"),
        ("unreachable", "False", "EndpointUnreachable"),
        ("failed", "False", "CheckFailed"),
        ("skipped", "Unknown", "NotChecked"),
    ],
)
def test_function_outcomes(outcome: str, status: str, reason: str) -> None:
    got = r.function_reachable(r.FunctionProbe("my-fn", outcome, "why"), 1)
    assert (got["status"], got["reason"]) == (status, reason)
    assert "why" in got["message"]
    if outcome != "skipped":
        assert '"my-fn"' in got["message"]
    timeouts = r.timeouts_compatible(r.FunctionProbe("my-fn", outcome, "why"), SETTINGS, 1)
    assert timeouts["status"] == "Unknown"


def test_missing_topics_and_subscription_positions() -> None:
    probe = r.TopicProbe(topics=("a", "gone"), missing=("gone",), subscribed=())
    got = by_type(r.fold(r.FunctionProbe("f", "ok", timeout_s=3), probe, SETTINGS, 1))
    assert got["TopicsExist"]["status"] == "False"
    assert got["TopicsExist"]["reason"] == "TopicNotFound"
    assert "gone" in got["TopicsExist"]["message"]
    sub = got["SubscriptionReady"]
    assert (sub["status"], sub["reason"]) == ("True", "WillBeCreatedAtEarliest")
    assert '"sub"' in sub["message"] and "Earliest" in sub["message"]
    latest = r.subscription_ready(probe, replace(SETTINGS, initial_position="Latest"), 1)
    assert latest["reason"] == "WillBeCreatedAtLatest"
    none_there = r.subscription_ready(r.TopicProbe(topics=("x",), missing=("x",)), SETTINGS, 1)
    assert (none_there["status"], none_there["reason"]) == ("Unknown", "TopicsMissing")


def test_pattern_and_unreachable_pulsar() -> None:
    empty = r.topics_exist(r.TopicProbe(pattern="persistent://t/n/x-.*"), 1)
    assert (empty["status"], empty["reason"]) == ("False", "NoTopicMatchesPattern")
    some = r.topics_exist(r.TopicProbe(pattern="p", matched=("t1", "t2")), 1)
    assert (some["status"], some["reason"]) == ("True", "PatternMatches")
    down = r.fold(
        r.FunctionProbe("f", "ok", timeout_s=3),
        r.TopicProbe(error="http://x cannot be reached"),
        SETTINGS,
        1,
    )
    got = by_type(down)
    assert (got["TopicsExist"]["status"], got["TopicsExist"]["reason"]) == (
        "Unknown",
        "PulsarUnreachable",
    )
    assert got["SubscriptionReady"]["status"] == "Unknown"


def test_only_a_definite_function_answer_blocks_ready() -> None:
    def blocked(outcome: str) -> str | None:
        return r.blocking([r.function_reachable(r.FunctionProbe("f", outcome, "d"), 1)])

    assert blocked("not_found") and blocked("denied")
    assert blocked("unreachable") is None and blocked("throttled") is None
    assert blocked("ok") is None and r.blocking([]) is None
    ready = c.ready(
        generation=1,
        config_error=None,
        blocked=None,
        missing_secrets=[],
        workers=Workers(desired=1, exists=True, replicas=1, ready=1, updated=1),
        preflight=blocked("not_found"),
    )
    assert (ready["status"], ready["reason"]) == ("False", "PreflightFailed")
    paused = c.ready(
        generation=1,
        config_error=None,
        blocked=None,
        missing_secrets=[],
        workers=Workers(desired=0),
        preflight="x",
    )
    assert paused["reason"] == "Paused"


def test_turned_bad_once_per_change() -> None:
    bad = r.function_reachable(r.FunctionProbe("f", "not_found", "d"), 1)
    good = r.function_reachable(r.FunctionProbe("f", "ok"), 1)
    assert r.turned_bad([good], [bad]) == [bad]
    assert r.turned_bad([bad], [bad]) == []
    assert r.turned_bad([bad], [good]) == []
    denied = r.function_reachable(r.FunctionProbe("f", "denied", "d"), 1)
    assert r.turned_bad([bad], [denied]) == [denied]


# ---------------------------------------------------------------------- topics over an admin


class Admin:
    """Stand-in for PulsarAdmin: namespaces → topics, topics → subscriptions."""

    def __init__(self, topics: dict[str, list[str]], subs: dict[str, list[str]]) -> None:
        self.topics, self.subs = topics, subs

    def namespace_topics(self, domain: str, tenant: str, namespace: str) -> list[str]:
        key = f"{domain}://{tenant}/{namespace}"
        if key not in self.topics:
            raise PulsarAdminError("HTTP 404 Namespace does not exist", status=404, retriable=False)
        return self.topics[key]

    def subscriptions(self, topic: str) -> list[str]:
        full = topic if "://" in topic else f"persistent://public/default/{topic}"
        return self.subs.get(full, [])


def pulsar_config(**pulsar: Any) -> Any:
    doc = {"pulsar": {"subscriptionName": "sub", **pulsar}, "sink": {"awsRegion": "r"}}
    doc["sink"]["lambdaFunctionName"] = "f"
    return RuntimeConfig.from_mapping(doc).pulsar


def test_probe_topics_lists_each_namespace_once_and_names_the_missing() -> None:
    admin = Admin(
        {"persistent://public/default": ["persistent://public/default/a"]},
        {"persistent://public/default/a": ["sub"]},
    )
    cfg = pulsar_config(topics=["a", "persistent://public/default/b", "persistent://t/gone/c"])
    got = preflight.probe_topics(cfg, admin)  # type: ignore[arg-type]
    assert got.missing == ("persistent://public/default/b", "persistent://t/gone/c")
    assert got.subscribed == ("a",)


def test_probe_topics_pattern() -> None:
    admin = Admin(
        {
            "persistent://t/n": [
                "persistent://t/n/x-1",
                "persistent://t/n/y",
                "persistent://t/n/x-2",
            ]
        },
        {"persistent://t/n/x-2": ["sub"]},
    )
    cfg = pulsar_config(topicsPattern="persistent://t/n/x-.*")
    got = preflight.probe_topics(cfg, admin)  # type: ignore[arg-type]
    assert got.matched == ("persistent://t/n/x-1", "persistent://t/n/x-2")
    assert got.subscribed == ("persistent://t/n/x-2",)


# ---------------------------------------------------------------------- credentials


def test_only_the_sinks_own_static_keys_are_used() -> None:
    base = {"awsRegion": "r", "lambdaFunctionName": "f"}
    assert (
        lambda_check.own_credentials(
            SinkConfig.from_mapping({**base, "awsAccessKey": "a", "awsSecretKey": "b"})
        )
        is None
    )
    chain = lambda_check.own_credentials(SinkConfig.from_mapping(base))
    assert chain and "credentialsSecret" in chain
    plugin = SinkConfig.from_mapping(
        {
            **base,
            "awsCredentialPluginName": "org.apache.pulsar.io.aws.STSAssumeRoleProviderPlugin",
            "awsCredentialPluginParam": '{"roleArn": "arn:aws:iam::1:role/x", '
            '"roleSessionName": "s"}',
        }
    )
    assert "does not check" in (lambda_check.own_credentials(plugin) or "")
    probe = lambda_check.probe(SinkConfig.from_mapping(base))
    assert probe.outcome == "skipped"


# ---------------------------------------------------------------------- one round


def test_a_round_reports_warns_once_and_ready_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = MemoryKube()
    kube.add_sink(sink_body())
    kube.add_secret("aws", accessKeyId="AKIA-own", secretAccessKey="s3cret")
    reconciler = Reconciler(kube, runtime_image="img:1", clock=lambda: "t")
    seen: list[str] = []
    answer = {"outcome": "not_found"}

    def fake_lambda(sink: SinkConfig) -> r.FunctionProbe:
        # The operator mounts the credentials Secret as files, as the worker sees it.
        key_file = Path(sink.aws_credentials_directory) / AWS_ACCESS_KEY_FILE
        seen.append(key_file.read_text() if sink.aws_credentials_directory else sink.aws_access_key)
        return r.FunctionProbe(sink.lambda_function_name, answer["outcome"], "gone", None)

    def fake_topics(pulsar: Any, admin: Any = None) -> r.TopicProbe:
        return r.TopicProbe(topics=tuple(pulsar.topics), subscribed=tuple(pulsar.topics))

    monkeypatch.setattr(lambda_check, "probe", fake_lambda)
    monkeypatch.setattr(preflight, "probe_topics", fake_topics)
    checks = preflight.Preflight(reconciler, interval_s=0)

    async def scenario() -> None:
        await reconciler.reconcile(kube.sink(), kube.view())
        await checks.check(NS, "orders", kube.view())
        await checks.check(NS, "orders", kube.view())  # same answer: no second Event
        status = kube.sink()["status"]
        got = by_type(status["conditions"])
        assert got["FunctionReachable"]["reason"] == "FunctionNotFound"
        assert '"fn"' in got["FunctionReachable"]["message"]
        assert (got["Ready"]["status"], got["Ready"]["reason"]) == ("False", "PreflightFailed")
        assert [e for e in kube.events if e[1] == "FunctionNotFound"] == [
            ("Warning", "FunctionNotFound", got["FunctionReachable"]["message"])
        ]
        answer["outcome"] = "ok"
        await checks.check(NS, "orders", kube.view())
        got = by_type(kube.sink()["status"]["conditions"])
        assert got["FunctionReachable"]["status"] == "True"
        assert got["Ready"]["reason"] != "PreflightFailed"

    asyncio.run(scenario())
    assert seen and set(seen) == {"AKIA-own"}  # the sink's own key, from its Secret


def test_a_missing_secret_skips_the_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = MemoryKube()
    kube.add_sink(sink_body())
    reconciler = Reconciler(kube, runtime_image="img:1", clock=lambda: "t")

    def never(*_: Any, **__: Any) -> Any:
        raise AssertionError("probed without credentials")

    monkeypatch.setattr(lambda_check, "probe", never)
    monkeypatch.setattr(preflight, "probe_topics", never)
    checks = preflight.Preflight(reconciler, interval_s=0)
    written = asyncio.run(checks.check(NS, "orders", kube.view()))
    got = by_type(written or [])
    assert got["FunctionReachable"]["status"] == "Unknown"
    assert 'Secret "aws"' in got["FunctionReachable"]["message"]
