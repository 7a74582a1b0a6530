"""One reconcile pass, and the handlers around it, over `MemoryKube` (see operator_fakes.py).

What a pass decides: apply or not, conditions, status writes, Events (once per change), and
which API calls it makes; the handlers' index reads and the per-sink lock's lifetime.
"""

from __future__ import annotations

import asyncio
import copy
from types import SimpleNamespace
from typing import Any

import pytest
from tests.unit.operator_fakes import NS, MemoryKube, b64, sink_body

from lambdasink_operator import handlers as _handlers
from lambdasink_operator import manifests
from lambdasink_operator.kube import KubeError
from lambdasink_operator.observed import View
from lambdasink_operator.reconcile import Reconciler

#: The handlers as plain callables: kopf's decorators retype them for its own registry.
handlers: Any = _handlers

DEPLOYMENT = (NS, "lambdasink-orders")


def make(kube: MemoryKube) -> Reconciler:
    return Reconciler(kube, runtime_image="img:1", clock=lambda: "2026-01-01T00:00:00Z")


def cond(kube: MemoryKube, type_: str, name: str = "orders") -> dict[str, Any]:
    for c in kube.sink(name).get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    raise AssertionError(f"no {type_} condition")


def worker_pod(name: str = "lambdasink-orders-abc", sink: str = "orders") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": manifests.labels(sink),
        },
        "status": {
            "containerStatuses": [
                {
                    "name": "worker",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 3, "message": "function not found"}},
                }
            ]
        },
    }


@pytest.fixture
def kube() -> MemoryKube:
    k = MemoryKube()
    k.add_secret("aws", accessKeyId="AKIA", secretAccessKey="s3cr3t")
    k.add_sink(sink_body())
    return k


def test_first_pass_applies_and_reports_then_a_quiet_pass_calls_nothing(kube: MemoryKube) -> None:
    async def scenario() -> None:
        r = make(kube)
        out = await r.reconcile(kube.sink(), kube.view())
        assert out.applied and out.config_error is None
        dep = kube.deployments[DEPLOYMENT]
        assert dep["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert kube.sink()["status"]["observedGeneration"] == 1
        assert cond(kube, "Ready")["reason"] == "RollingOut"
        assert cond(kube, "SecretsResolved")["status"] == "True"
        assert kube.events == [
            ("Normal", "DeploymentApplied", "worker Deployment lambdasink-orders applied")
        ]
        # the Deployment was not indexed yet (it did not exist): one read, then the apply
        assert kube.calls == [
            "get_deployment lambdasink-orders",
            "apply_deployment lambdasink-orders",
            "patch_sink_status orders",
        ]

        kube.calls.clear()
        again = await r.reconcile(kube.sink(), kube.view())
        assert not again.applied
        assert kube.calls == []  # everything from the indexes, nothing changed, nothing written
        assert len(kube.events) == 1

    asyncio.run(scenario())


def test_a_deployment_controlled_by_someone_else_is_left_alone(kube: MemoryKube) -> None:
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "lambdasink-orders",
            "namespace": NS,
            "uid": "theirs",
            "ownerReferences": [{"kind": "Thing", "name": "x", "uid": "other", "controller": True}],
        },
        "spec": {"replicas": 5},
    }
    kube.deployments[DEPLOYMENT] = copy.deepcopy(foreign)

    async def scenario() -> None:
        r = make(kube)
        for _ in range(3):
            out = await r.reconcile(kube.sink(), kube.view())
            assert not out.applied

    asyncio.run(scenario())
    assert kube.deployments[DEPLOYMENT] == foreign
    assert not [c for c in kube.calls if c.startswith("apply")]
    ready = cond(kube, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "DeploymentBlocked")
    assert "not controlled by this LambdaSink" in ready["message"]
    assert [e[:2] for e in kube.events] == [("Warning", "DeploymentBlocked")]  # once


def test_an_invalid_spec_never_touches_the_running_deployment(kube: MemoryKube) -> None:
    async def scenario() -> None:
        r = make(kube)
        await r.reconcile(kube.sink(), kube.view())
        running = copy.deepcopy(kube.deployments[DEPLOYMENT])
        sink = kube.sinks[(NS, "orders")]
        sink["spec"]["sinkConfig"]["batchMaxSize"] = 0
        sink["metadata"]["generation"] = 2
        kube.calls.clear()
        for _ in range(2):
            out = await r.reconcile(kube.sink(), kube.view())
            assert out.config_error is not None and not out.applied
        assert kube.deployments[DEPLOYMENT] == running
        assert not [c for c in kube.calls if c.startswith("apply")]

    asyncio.run(scenario())
    valid = cond(kube, "ConfigValid")
    assert (valid["status"], valid["reason"]) == ("False", "InvalidSpec")
    assert valid["message"].startswith("spec.sinkConfig.batchMaxSize")
    assert "the workers keep the last valid configuration" in cond(kube, "Ready")["message"]
    warnings = [e for e in kube.events if e[0] == "Warning"]
    assert [e[1] for e in warnings] == ["InvalidSpec"]  # once, for ConfigValid
    assert kube.sink()["status"]["observedGeneration"] == 2


@pytest.mark.parametrize(
    ("selector", "reads"),
    [("", []), ("lambdasink.dev/secret=true", ["get_secret_data aws"])],
    ids=["all-secrets-watched", "secret-selector"],
)
def test_a_missing_secret_is_reported_then_picked_up_when_it_appears(
    selector: str, reads: list[str]
) -> None:
    """With every Secret watched the index is the truth; with --secret-selector a Secret
    outside the selector may exist, so a miss is asked for by name."""
    kube = MemoryKube()
    kube.add_sink(sink_body())
    memo = SimpleNamespace(reconciler=make(kube), secret_selector=selector)

    async def scenario() -> None:
        await handlers.sink_changed(body=kube.sink(), memo=memo, **kube.indexes())
        assert [c for c in kube.calls if c.startswith("get_secret")] == reads
        missing = cond(kube, "SecretsResolved")
        assert (missing["status"], missing["reason"]) == ("False", "SecretNotFound")
        assert missing["message"] == 'Secret "aws" not found in namespace team-a'
        assert cond(kube, "Ready")["reason"] == "SecretNotFound"
        first_hash = kube.deployments[DEPLOYMENT]["metadata"]["annotations"][
            manifests.HASH_ANNOTATION
        ]
        await handlers.sink_changed(body=kube.sink(), memo=memo, **kube.indexes())
        assert [e[1] for e in kube.events if e[0] == "Warning"] == ["SecretNotFound"]

        kube.add_secret("aws", accessKeyId="AKIA", secretAccessKey="s3cr3t")
        indexes = kube.indexes()
        assert handlers._is_referenced(NS, "aws", **indexes)
        assert not handlers._is_referenced(NS, "unrelated", **indexes)
        kube.calls.clear()
        await handlers.secret_changed(namespace=NS, name="aws", memo=memo, **indexes)
        assert not [c for c in kube.calls if c.startswith("get_secret")]  # from the index now
        assert cond(kube, "SecretsResolved")["status"] == "True"
        new_hash = kube.deployments[DEPLOYMENT]["metadata"]["annotations"][
            manifests.HASH_ANNOTATION
        ]
        assert new_hash != first_hash  # the workers roll onto the Secret

    asyncio.run(scenario())


def test_a_rotated_secret_rolls_the_workers_and_values_never_reach_the_index(
    kube: MemoryKube,
) -> None:
    async def scenario() -> None:
        r = make(kube)
        await r.reconcile(kube.sink(), kube.view())
        before = kube.deployments[DEPLOYMENT]["spec"]["template"]["metadata"]["annotations"]
        kube.secrets[(NS, "aws")]["data"]["secretAccessKey"] = b64("rotated")
        assert "rotated" not in repr(kube.view().secrets)
        assert b64("rotated") not in repr(kube.view().secrets)
        out = await r.reconcile_by_name(NS, "orders", kube.view())
        assert out is not None and out.applied
        after = kube.deployments[DEPLOYMENT]["spec"]["template"]["metadata"]["annotations"]
        assert after[manifests.HASH_ANNOTATION] != before[manifests.HASH_ANNOTATION]

    asyncio.run(scenario())


def test_drift_is_repaired_on_the_deployment_event(kube: MemoryKube) -> None:
    memo = SimpleNamespace(reconciler=make(kube))

    async def scenario() -> None:
        await handlers.sink_changed(body=kube.sink(), memo=memo, **kube.indexes())
        dep = kube.deployments[DEPLOYMENT]
        dep["spec"]["replicas"] = 4
        del dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
        kube.calls.clear()
        await handlers.child_changed(body=dep, namespace=NS, memo=memo, **kube.indexes())
        assert kube.calls == ["apply_deployment lambdasink-orders"]

    asyncio.run(scenario())
    dep = kube.deployments[DEPLOYMENT]
    assert dep["spec"]["replicas"] == 1
    assert "readinessProbe" in dep["spec"]["template"]["spec"]["containers"][0]
    assert [e[1] for e in kube.events] == ["DeploymentApplied", "DeploymentApplied"]


def test_a_sidecar_injector_does_not_cause_a_reapply_loop(kube: MemoryKube) -> None:
    def inject(dep: dict[str, Any]) -> None:
        pod = dep["spec"]["template"]["spec"]
        if not any(c["name"] == "proxy" for c in pod["containers"]):
            pod["containers"].append({"name": "proxy", "image": "proxy:1"})
            pod["volumes"].append({"name": "proxy-certs", "emptyDir": {}})
            pod["containers"][0]["env"].append({"name": "PROXY_PORT", "value": "15001"})

    kube.webhook = inject
    memo = SimpleNamespace(reconciler=make(kube))

    async def scenario() -> None:
        await handlers.sink_changed(body=kube.sink(), memo=memo, **kube.indexes())
        dep = kube.deployments[DEPLOYMENT]
        assert len(dep["spec"]["template"]["spec"]["containers"]) == 2
        for _ in range(3):
            await handlers.child_changed(body=dep, namespace=NS, memo=memo, **kube.indexes())

    asyncio.run(scenario())
    assert [c for c in kube.calls if c.startswith("apply")] == [
        "apply_deployment lambdasink-orders"
    ]


def test_a_pod_event_costs_no_api_read_and_its_event_is_not_repeated(kube: MemoryKube) -> None:
    memo = SimpleNamespace(reconciler=make(kube))

    async def scenario() -> None:
        await handlers.sink_changed(body=kube.sink(), memo=memo, **kube.indexes())
        pod = worker_pod()
        kube.pods[(NS, pod["metadata"]["name"])] = pod
        kube.calls.clear()
        await handlers.child_changed(body=pod, namespace=NS, memo=memo, **kube.indexes())
        assert kube.calls == ["patch_sink_status orders"]  # the new condition, nothing read
        kube.calls.clear()
        await handlers.child_changed(body=pod, namespace=NS, memo=memo, **kube.indexes())
        assert kube.calls == []

    asyncio.run(scenario())
    failing = cond(kube, "Ready")
    assert failing["reason"] == "WorkerFailing"
    assert "function not found" in failing["message"]
    assert [e[1] for e in kube.events if e[0] == "Warning"] == ["WorkerFailing"]


def test_an_index_lagging_behind_our_apply_does_not_undo_it(kube: MemoryKube) -> None:
    """kopf's Deployment index may not have seen our last apply yet: the pass trusts the
    newer generation it got back from the server instead of re-applying."""

    async def scenario() -> None:
        r = make(kube)
        await r.reconcile(kube.sink(), kube.view())
        before = kube.view()
        sink = kube.sinks[(NS, "orders")]
        sink["spec"]["replicas"] = 2
        sink["metadata"]["generation"] = 2
        assert (await r.reconcile(kube.sink(), kube.view())).applied
        lagging = View(
            sinks=kube.view().sinks,
            deployments=before.deployments,
            pods=before.pods,
            secrets=before.secrets,
        )
        kube.calls.clear()
        out = await r.reconcile_by_name(NS, "orders", lagging)
        assert out is not None and not out.applied
        assert not [c for c in kube.calls if c.startswith("apply")]

    asyncio.run(scenario())
    assert kube.deployments[DEPLOYMENT]["spec"]["replicas"] == 2


def test_a_refused_deployment_is_reported_not_retried(kube: MemoryKube) -> None:
    kube.refuse = KubeError("422 Deployment is invalid: toleration", status=422, retriable=False)

    async def scenario() -> None:
        r = make(kube)
        out = await r.reconcile(kube.sink(), kube.view())
        assert not out.applied

    asyncio.run(scenario())
    ready = cond(kube, "Ready")
    assert ready["reason"] == "DeploymentBlocked"
    assert "the API server refused the worker Deployment" in ready["message"]


def test_a_failing_api_call_leaves_a_condition_and_is_raised_for_kopf_to_retry(
    kube: MemoryKube,
) -> None:
    kube.refuse = KubeError("apply: 503 unavailable", status=503, retriable=True)
    memo = SimpleNamespace(reconciler=make(kube))

    async def scenario() -> None:
        with pytest.raises(handlers.kopf.TemporaryError):
            await handlers.sink_changed(body=kube.sink(), memo=memo, **kube.indexes())

    asyncio.run(scenario())
    ready = cond(kube, "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "ReconcileError")
    assert "503" in ready["message"]


def test_the_plugin_parameter_is_the_only_secret_value_read() -> None:
    kube = MemoryKube()
    kube.add_secret("aws", accessKeyId="AKIA", secretAccessKey="s3cr3t")
    kube.add_secret("plugin", awsCredentialPluginParam='{"roleArn": "not-an-arn-key-set"}')
    kube.add_sink(
        sink_body(
            sinkConfig={
                "awsRegion": "us-east-1",
                "lambdaFunctionName": "fn",
                "awsCredentialPluginName": "org.apache.pulsar.io.aws.STSAssumeRoleProviderPlugin",
            },
            aws={"credentialPluginParamSecretRef": {"name": "plugin"}},
        )
    )

    async def scenario() -> None:
        out = await make(kube).reconcile(kube.sink(), kube.view())
        assert out.config_error is not None
        assert out.config_error.startswith("spec.sinkConfig.awsCredentialPluginParam")
        assert "not-an-arn" not in out.config_error

    asyncio.run(scenario())
    assert [c for c in kube.calls if c.startswith("get_secret")] == ["get_secret_data plugin"]


class SlowKube(MemoryKube):
    """Holds every Deployment read for a moment and records which sinks overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.active: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.most_overall = 0

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.active[name] = self.active.get(name, 0) + 1
        self.most[name] = max(self.most.get(name, 0), self.active[name])
        self.most_overall = max(self.most_overall, sum(self.active.values()))
        await asyncio.sleep(0.01)
        self.active[name] -= 1
        return await super().get_deployment(namespace, name)


def test_passes_over_one_sink_are_serialised_and_its_lock_goes_with_it() -> None:
    kube = SlowKube()
    kube.add_secret("aws", accessKeyId="AKIA", secretAccessKey="s3cr3t")
    kube.add_sink(sink_body("orders"))
    kube.add_sink(sink_body("billing", uid="uid-2"))
    r = make(kube)
    memo = SimpleNamespace(reconciler=r)

    async def scenario() -> None:
        empty = View(sinks=kube.view().sinks)  # no Deployment indexed: every pass reads it
        await asyncio.gather(
            *(r.reconcile_by_name(NS, name, empty) for name in ["orders", "billing"] * 4)
        )
        assert kube.most == {"lambdasink-orders": 1, "lambdasink-billing": 1}
        assert kube.most_overall == 2  # different sinks do not wait for each other
        assert r.tracked() == [(NS, "billing"), (NS, "orders")]

        del kube.sinks[(NS, "orders")]
        await handlers.sink_deleted(namespace=NS, name="orders", memo=memo)
        assert r.tracked() == [(NS, "billing")]
        # a late pod event of the deleted sink neither calls the API nor brings its lock back
        kube.calls.clear()
        pod = worker_pod()
        await handlers.child_changed(body=pod, namespace=NS, memo=memo, **kube.indexes())
        assert kube.calls == []
        assert r.tracked() == [(NS, "billing")]

    asyncio.run(scenario())


def test_many_sinks_come_and_go_without_leaving_state() -> None:
    kube = MemoryKube()
    kube.add_secret("aws", accessKeyId="AKIA", secretAccessKey="s3cr3t")
    r = make(kube)
    memo = SimpleNamespace(reconciler=r)

    async def scenario() -> None:
        for i in range(50):
            body = kube.add_sink(sink_body(f"s{i}", uid=f"u{i}"))
            await handlers.sink_changed(body=body, memo=memo, **kube.indexes())
            del kube.sinks[(NS, f"s{i}")]
            await handlers.sink_deleted(namespace=NS, name=f"s{i}", memo=memo)

    asyncio.run(scenario())
    assert r.tracked() == []


def test_handlers_read_the_indexes_kopf_passes(kube: MemoryKube) -> None:
    indexes = kube.indexes()
    view = handlers.view(SimpleNamespace(), indexes)
    assert view.secrets_complete
    assert view.sink(NS, "orders") == kube.sink()
    digests = view.secret(NS, "aws")
    assert digests is not None and set(digests) == {"accessKeyId", "secretAccessKey"}
    assert not digests["accessKeyId"].blank
