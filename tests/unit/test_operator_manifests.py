"""The worker Deployment built from a LambdaSink: pure dict in, dict out."""

from __future__ import annotations

import json
from typing import Any

from lambdasink_operator import manifests, spec
from lambdasink_operator.spec import SecretKey


def sink(**spec_overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "lambdasink.dev/v1alpha1",
        "kind": "LambdaSink",
        "metadata": {"name": "orders", "namespace": "team-a", "uid": "uid-1", "generation": 3},
        "spec": {
            "replicas": 2,
            "pulsar": {"serviceUrl": "pulsar://broker:6650"},
            "input": {"topics": ["orders"]},
            "sinkConfig": {"awsRegion": "us-east-1", "lambdaFunctionName": "fn"},
            "aws": {"credentialsSecret": {"name": "aws"}},
        },
    }
    body["spec"].update(spec_overrides)
    return body


def build(
    body: dict[str, Any], digests: dict[SecretKey, str | None] | None = None
) -> dict[str, Any]:
    plan = spec.plan_worker(body["metadata"]["name"], body["spec"])
    h = manifests.config_hash(plan, digests or {})
    return manifests.build_deployment(body, plan, image="img:1", config_hash=h)


def container(dep: dict[str, Any]) -> dict[str, Any]:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = c
    return result


def test_deployment_identity_labels_and_owner() -> None:
    dep = build(sink())
    meta = dep["metadata"]
    assert (meta["name"], meta["namespace"]) == ("lambdasink-orders", "team-a")
    assert meta["labels"] == {
        "app.kubernetes.io/name": "lambdasink",
        "app.kubernetes.io/instance": "orders",
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "lambda-sink",
        "app.kubernetes.io/managed-by": "lambdasink-operator",
    }
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "lambdasink.dev/v1alpha1",
            "kind": "LambdaSink",
            "name": "orders",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"] == {
        "matchLabels": {
            "app.kubernetes.io/name": "lambdasink",
            "app.kubernetes.io/instance": "orders",
        }
    }
    assert (
        manifests.selector_string("orders")
        == "app.kubernetes.io/instance=orders,app.kubernetes.io/name=lambdasink"
    )
    assert manifests.owner_sink_name(dep) == "orders"


def test_container_config_secrets_probes() -> None:
    c = container(build(sink()))
    assert c["image"] == "img:1" and c["command"] == ["lambdasink-runtime"]
    env = {e["name"]: e for e in c["env"]}
    config = json.loads(env["LAMBDASINK_CONFIG"]["value"])
    assert config["sink"]["lambdaFunctionName"] == "fn"
    # the AWS keys are files (a rotation reaches the running worker), never env values
    assert "LAMBDASINK_AWS_ACCESS_KEY" not in env and "LAMBDASINK_AWS_SECRET_KEY" not in env
    directory = config["sink"]["awsCredentialsDirectory"]
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == directory]
    assert mount["readOnly"] is True
    pod_spec = build(sink())["spec"]["template"]["spec"]
    (volume,) = [v for v in pod_spec["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"] == {
        "secretName": "aws",
        "items": [
            {"key": "accessKeyId", "path": "accessKeyId"},
            {"key": "secretAccessKey", "path": "secretAccessKey"},
        ],
    }
    assert all("value" not in e for n, e in env.items() if n != "LAMBDASINK_CONFIG")
    assert c["ports"] == [{"name": "http", "containerPort": 8081, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_pod_settings_pass_through_and_our_labels_win() -> None:
    pod = {
        "labels": {"team": "a", "app.kubernetes.io/instance": "hijack"},
        "annotations": {"note": "x"},
        "resources": {"limits": {"memory": "256Mi"}},
        "env": [{"name": "EXTRA", "value": "1"}],
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {}},
        "serviceAccountName": "irsa",
        "imagePullSecrets": [{"name": "regcred"}],
        "securityContext": {"runAsUser": 1000},
        "podSecurityContext": {"fsGroup": 2000},
    }
    dep = build(sink(pod=pod, image="custom:2", imagePullPolicy="Always"))
    template = dep["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == "a"
    assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "orders"
    assert template["metadata"]["annotations"]["note"] == "x"
    pod_spec = template["spec"]
    for key in (
        "nodeSelector",
        "tolerations",
        "affinity",
        "serviceAccountName",
        "imagePullSecrets",
    ):
        assert pod_spec[key] == pod[key]
    assert pod_spec["securityContext"] == {"fsGroup": 2000}
    c = container(dep)
    assert (c["image"], c["imagePullPolicy"]) == ("custom:2", "Always")
    assert c["resources"] == {"limits": {"memory": "256Mi"}}
    assert c["securityContext"] == {"runAsUser": 1000}
    assert c["env"][-1] == {"name": "EXTRA", "value": "1"}


def test_secret_files_are_mounted_read_only() -> None:
    body = sink(
        pulsar={
            "serviceUrl": "pulsar+ssl://b:6651",
            "authentication": {"tls": {"secretName": "client-tls"}},
        }
    )
    dep = build(body)
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["secret-pulsar-tls"]["secret"] == {
        "secretName": "client-tls",
        "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
    }
    mounts = {m["name"]: m for m in container(dep)["volumeMounts"]}
    assert mounts["secret-pulsar-tls"] == {
        "name": "secret-pulsar-tls",
        "mountPath": "/etc/lambdasink/secrets/pulsar-tls",
        "readOnly": True,
    }


def test_hash_follows_config_and_secret_content_but_not_replicas() -> None:
    def hash_of(body: dict[str, Any], digest: str | None = "d1") -> str:
        dep = build(
            body,
            {SecretKey("aws", "accessKeyId"): digest, SecretKey("aws", "secretAccessKey"): "d2"},
        )
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations[manifests.HASH_ANNOTATION]
        assert dep["metadata"]["annotations"][manifests.HASH_ANNOTATION] == value
        return value

    base = hash_of(sink())
    assert hash_of(sink()) == base
    assert hash_of(sink(replicas=5)) == base
    assert hash_of(sink(), digest="rotated") != base
    assert hash_of(sink(), digest=None) != base
    changed = sink()
    changed["spec"]["sinkConfig"]["batchMaxSize"] = 1
    assert hash_of(changed) != base


def test_exclusive_subscriptions_recreate() -> None:
    assert build(sink())["spec"]["strategy"]["type"] == "RollingUpdate"
    exclusive = build(sink(input={"topics": ["t"], "subscriptionType": "Exclusive"}, replicas=1))
    assert exclusive["spec"]["strategy"] == {"type": "Recreate"}


def test_controller_uid() -> None:
    dep = build(sink())
    assert manifests.controller_uid(dep) == "uid-1"
    assert manifests.controller_uid({"metadata": {}}) is None
