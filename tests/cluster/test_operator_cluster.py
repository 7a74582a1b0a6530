"""The operator against the real kube-apiserver + kube-controller-manager of the local stack.

The stack has no kubelet: worker pods are created (Deployment → ReplicaSet → Pod by the real
controller-manager) but stay Pending. Only `test_worker_failure_is_surfaced` writes a pod status,
standing in for the kubelet, which the stack does not have (it says so below).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from cluster_support import EXAMPLES, REPO, Cluster, Operator, denied_lines
from tests.stack import wait_for

pytestmark = pytest.mark.cluster

HASH = "lambdasink.dev/config-hash"
T = TypeVar("T")


def example(name: str) -> dict[str, Any]:
    (doc,) = list(yaml.safe_load_all((EXAMPLES / name).read_text()))
    result: dict[str, Any] = doc
    return result


TEST_IMAGE = "lambdasink-runtime:test"


def local_sink() -> dict[str, Any]:
    """examples/lambdasink-local.yaml with an explicit image: should another operator watch the
    whole cluster (an e2e run sharing this API server), it builds the same Deployment instead of
    fighting ours over its own default image."""
    doc = example("lambdasink-local.yaml")
    doc["spec"]["image"] = TEST_IMAGE
    return doc


def when(value: Callable[[], T], ok: Callable[[T], Any]) -> Callable[[], T | None]:
    """For wait_for: the value once `ok(value)` holds, else None."""

    def probe() -> T | None:
        v = value()
        return v if ok(v) else None

    return probe


def pods_in(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout
    )["items"]
    return items


def wait_condition(cluster: Cluster, namespace: str, type_: str, **expected: str) -> dict[str, Any]:
    """Wait until the sink's condition `type_` has the expected fields; return it."""

    def probe() -> dict[str, Any] | None:
        found = condition(sink_status(cluster, namespace), type_)
        return found if all(found.get(k) == v for k, v in expected.items()) else None

    return wait_for(f"condition {type_} with {expected}", probe)


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            found: dict[str, Any] = c
            return found
    return {}


def deployment(cluster: Cluster, ns: str, sink: str = "orders-to-lambda") -> dict[str, Any] | None:
    return cluster.get("deployment", f"lambdasink-{sink}", ns)


def template_hash(dep: dict[str, Any] | None) -> str:
    return str(
        (
            (dep or {}).get("spec", {}).get("template", {}).get("metadata", {}).get("annotations")
            or {}
        ).get(HASH, "")
    )


def patch_sink(cluster: Cluster, namespace: str, patch: str) -> None:
    """A merge patch of the sample LambdaSink, as `kubectl patch --type=merge` sends it."""
    cluster.kubectl(
        "patch", "lambdasink", "orders-to-lambda", "-n", namespace, "--type=merge", "-p", patch
    )


def create_sample(cluster: Cluster, ns: str, sink: dict[str, Any] | None = None) -> dict[str, Any]:
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "aws-credentials-secret.yaml"))
    doc = sink or local_sink()
    cluster.apply(doc, ns)
    return doc


def sink_status(cluster: Cluster, ns: str, name: str = "orders-to-lambda") -> dict[str, Any]:
    obj = cluster.get("lambdasink", name, ns)
    assert obj is not None
    return obj


def test_crd_is_established_with_subresources(cluster: Cluster, crd: str) -> None:
    obj = cluster.get("crd", crd, "default")
    assert obj is not None
    established = [c for c in obj["status"]["conditions"] if c["type"] == "Established"]
    assert established and established[0]["status"] == "True"
    names = obj["status"]["acceptedNames"]
    assert names["kind"] == "LambdaSink" and "ls" in names["shortNames"]
    resources = cluster.kubectl("api-resources", "--api-group=lambdasink.dev", "-o", "wide").stdout
    assert "lambdasinks" in resources and "LambdaSink" in resources


def test_sample_becomes_a_worker_deployment(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    sink = create_sample(cluster, namespace)
    dep = wait_for("the worker Deployment", lambda: deployment(cluster, namespace))
    obj = sink_status(cluster, namespace)
    meta = dep["metadata"]
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "lambdasink.dev/v1alpha1",
            "kind": "LambdaSink",
            "name": "orders-to-lambda",
            "uid": obj["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "lambdasink-operator"
    assert meta["labels"]["app.kubernetes.io/instance"] == "orders-to-lambda"
    assert dep["spec"]["replicas"] == 1
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == TEST_IMAGE
    env = {e["name"]: e for e in container["env"]}
    config = json.loads(env["LAMBDASINK_CONFIG"]["value"])
    # the API server filled in the reference's defaults; they reach the worker verbatim
    assert config["sink"]["lambdaFunctionName"] == "recorder"
    assert config["sink"]["synchronousInvocation"] is True
    assert config["sink"]["batchMaxBytesSize"] == 262144
    assert (
        config["sink"]["metadataFields"] == "topic,key,partitionIndex,sequence,properties,eventTime"
    )
    assert config["pulsar"]["topics"] == sink["spec"]["input"]["topics"]
    assert config["pulsar"]["subscriptionName"] == "orders-to-lambda"
    assert "test" not in env["LAMBDASINK_CONFIG"]["value"].replace(
        "persistent", ""
    )  # no key material
    # the AWS keys are files from the Secret (a rotation reaches the running worker), not env
    assert "LAMBDASINK_AWS_ACCESS_KEY" not in env and "LAMBDASINK_AWS_SECRET_KEY" not in env
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    (aws_volume,) = [v for v in volumes.values() if "secret" in v]
    assert aws_volume["secret"]["secretName"] == "lambdasink-aws"
    assert {i["key"] for i in aws_volume["secret"]["items"]} == {"accessKeyId", "secretAccessKey"}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts[aws_volume["name"]]["mountPath"] == config["sink"]["awsCredentialsDirectory"]
    assert mounts[aws_volume["name"]]["readOnly"] is True
    assert (
        container["ports"][0]["name"] == "http" and container["ports"][0]["containerPort"] == 8081
    )
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert template_hash(dep)

    # the real controller-manager made a pod from it (Pending: the stack has no kubelet)
    pods = wait_for(
        "a worker pod",
        lambda: json.loads(
            cluster.kubectl(
                "get",
                "pods",
                "-n",
                namespace,
                "-l",
                "app.kubernetes.io/instance=orders-to-lambda",
                "-o",
                "json",
            ).stdout
        )["items"],
    )
    assert pods[0]["metadata"]["annotations"][HASH] == template_hash(dep)

    obj = wait_for(
        "status with conditions",
        when(lambda: sink_status(cluster, namespace), lambda o: condition(o, "Ready")),
    )
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert (
        status["selector"]
        == "app.kubernetes.io/instance=orders-to-lambda,app.kubernetes.io/name=lambdasink"
    )
    assert condition(obj, "ConfigValid")["status"] == "True"
    assert condition(obj, "SecretsResolved")["status"] == "True"
    ready = wait_condition(cluster, namespace, "Ready", reason="WorkersNotReady")
    assert ready["status"] == "False" and ready["message"] == "0/1 workers ready"
    assert "phase" not in status
    assert not obj["metadata"].get("finalizers")  # nothing blocks deletion

    table = cluster.kubectl("get", "lambdasinks", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "REPLICAS", "BACKLOG", "FUNCTION", "AGE"]
    row = table[1].split()  # BACKLOG is blank until the first backlog read
    assert row[:3] == ["orders-to-lambda", "False", "0/1"] and "recorder" in row[3:5]
    short = cluster.kubectl("get", "ls", "-n", namespace, "-o", "name").stdout.strip()
    assert short == "lambdasink.lambdasink.dev/orders-to-lambda"
    assert 'lambdasink_operator_reconciles_total{result="ok"}' in operator.metrics()


def _with(sink: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(sink)
    node = doc
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return doc


MALFORMED = [
    ("spec.sinkConfig.payloadFormat", "V3", 'Unsupported value: "V3"'),
    ("spec.sinkConfig.batchMaxSize", 0, "should be greater than or equal to 1"),
    (
        "spec.input.topicsPattern",
        "persistent://public/default/o-.*",
        "set exactly one of spec.input.topics and spec.input.topicsPattern",
    ),
    ("spec.sinkConfig.awsSecretKey", "wJalrXUtnFEMI", "spec.aws.credentialsSecret"),
    (
        "spec.sinkConfig.awsCredentialPluginParam",
        '{"accessKey":"a"}',
        "spec.aws.credentialPluginParamSecretRef",
    ),
    (
        "spec.sinkConfig.metadataFields",
        "topic,bogus",
        "metadataFields must be a comma-separated list",
    ),
    ("spec.sinkConfig.batchMaxBytesSize", 7000000, "should be less than or equal to 6291456"),
    ("spec.pulsar.serviceUrl", "http://broker:6650", "spec.pulsar.serviceUrl"),
    ("spec.replicas", -1, "should be greater than or equal to 0"),
    ("spec.pod.env", [{"name": "LAMBDASINK_CONFIG", "value": "{}"}], "reserved for the operator"),
    ("metadata.name", "s" * 53, "metadata.name must be at most 52 characters"),
    ("spec.failurePolicy", {"maxRecordAgeMs": 60000}, "needs onExhausted deadLetter or drop"),
    ("spec.failurePolicy.onExhausted", "retry", "supported values"),
    ("spec.failurePolicy.circuitBreaker.failureRatio", 0, "should be greater than 0"),
]


@pytest.mark.parametrize(
    ("path", "value", "message"), MALFORMED, ids=[m[0].split(".")[-1] for m in MALFORMED]
)
def test_server_rejects_malformed_specs(
    cluster: Cluster, namespace: str, path: str, value: Any, message: str
) -> None:
    doc = _with(local_sink(), path, value)
    out = cluster.kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(doc), check=False)
    assert out.returncode != 0, f"accepted: {path}={value!r}"
    assert message in " ".join(out.stderr.split()), out.stderr
    assert (
        "wJalrXUtnFEMI" not in out.stderr
        or path != "spec.sinkConfig.awsSecretKey"
        or "Invalid value" in out.stderr
    )


def test_server_rejects_missing_required_and_exclusive_with_replicas(
    cluster: Cluster, namespace: str
) -> None:
    doc = local_sink()
    del doc["spec"]["sinkConfig"]["lambdaFunctionName"]
    out = cluster.kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(doc), check=False)
    assert (
        out.returncode != 0 and "spec.sinkConfig.lambdaFunctionName: Required value" in out.stderr
    )
    doc = _with(_with(local_sink(), "spec.input.subscriptionType", "Exclusive"), "spec.replicas", 2)
    out = cluster.kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(doc), check=False)
    assert out.returncode != 0 and "Exclusive admits one consumer" in " ".join(out.stderr.split())
    # a reference --sink-config with its empty-string credentials pastes in
    doc = _with(local_sink(), "spec.sinkConfig.awsAccessKey", "")
    doc["spec"]["sinkConfig"]["awsSecretKey"] = ""
    cluster.kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def test_scale_subresource_and_spec_replicas(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    create_sample(cluster, namespace)
    wait_for("the Deployment", lambda: deployment(cluster, namespace))
    wait_for(
        "status.selector", lambda: sink_status(cluster, namespace).get("status", {}).get("selector")
    )
    cluster.kubectl("scale", "lambdasink/orders-to-lambda", "-n", namespace, "--replicas=3")
    wait_for(
        "Deployment replicas 3",
        lambda: (deployment(cluster, namespace) or {}).get("spec", {}).get("replicas") == 3,
    )
    wait_for(
        "status.replicas 3 (pods made by the controller-manager)",
        lambda: sink_status(cluster, namespace)["status"].get("replicas") == 3,
    )
    scale = json.loads(
        cluster.kubectl(
            "get",
            "--raw",
            f"/apis/lambdasink.dev/v1alpha1/namespaces/{namespace}/lambdasinks/orders-to-lambda/scale",
        ).stdout
    )
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert (
        scale["status"]["selector"]
        == "app.kubernetes.io/instance=orders-to-lambda,app.kubernetes.io/name=lambdasink"
    )

    before = template_hash(deployment(cluster, namespace))
    patch_sink(cluster, namespace, '{"spec":{"replicas":0}}')
    wait_for(
        "Deployment replicas 0",
        lambda: (deployment(cluster, namespace) or {}).get("spec", {}).get("replicas") == 0,
    )
    paused = wait_condition(cluster, namespace, "Ready", reason="Paused")
    assert paused["status"] == "True"
    assert template_hash(deployment(cluster, namespace)) == before  # scaling does not roll pods


def test_config_and_secret_changes_roll_the_pod_template(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    create_sample(cluster, namespace)
    first = template_hash(wait_for("the Deployment", lambda: deployment(cluster, namespace)))
    patch_sink(cluster, namespace, '{"spec":{"sinkConfig":{"batchMaxSize":1}}}')
    second = wait_for(
        "a new config hash",
        when(lambda: template_hash(deployment(cluster, namespace)), lambda h: h != first),
    )
    dep = deployment(cluster, namespace)
    assert dep is not None
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["LAMBDASINK_CONFIG"]["value"])["sink"]["batchMaxSize"] == 1

    rotated = base64.b64encode(b"rotated-secret-key").decode()
    cluster.kubectl(
        "patch",
        "secret",
        "lambdasink-aws",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"data": {"secretAccessKey": rotated}}),
    )
    third = wait_for(
        "a hash change after the Secret rotated",
        when(lambda: template_hash(deployment(cluster, namespace)), lambda h: h != second),
    )
    assert third not in (first, second)
    # a label-only change of the Secret does not roll anything
    cluster.kubectl("label", "secret", "lambdasink-aws", "-n", namespace, "touched=yes")
    wait_for(
        "the label reached the operator",
        lambda: (
            "touched"
            in (cluster.get("secret", "lambdasink-aws", namespace) or {})["metadata"].get(
                "labels", {}
            )
        ),
    )
    assert template_hash(deployment(cluster, namespace)) == third


def test_missing_secret_is_reported_then_picked_up(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    cluster.apply(local_sink(), namespace)  # without examples/aws-credentials-secret.yaml
    obj = wait_for(
        "SecretsResolved=False",
        when(
            lambda: sink_status(cluster, namespace),
            lambda o: condition(o, "SecretsResolved").get("status") == "False",
        ),
    )
    assert condition(obj, "SecretsResolved")["reason"] == "SecretNotFound"
    assert 'Secret "lambdasink-aws" not found' in condition(obj, "SecretsResolved")["message"]
    assert condition(obj, "Ready")["reason"] == "SecretNotFound"
    before = template_hash(
        wait_for(
            "the Deployment (pods wait for the Secret)", lambda: deployment(cluster, namespace)
        )
    )
    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=SecretNotFound", "-o", "json"
    ).stdout
    assert json.loads(events)["items"], "no SecretNotFound event"

    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "aws-credentials-secret.yaml"))
    wait_for(
        "SecretsResolved=True",
        lambda: (
            condition(sink_status(cluster, namespace), "SecretsResolved").get("status") == "True"
        ),
    )
    assert template_hash(deployment(cluster, namespace)) != before


def test_secret_selector_narrows_the_watch_and_unlabelled_secrets_still_resolve(
    cluster: Cluster, namespace: str, start_operator: Callable[..., Operator]
) -> None:
    """--secret-selector: the API server sends only matching Secrets. An unlabelled referenced
    Secret is read by name (the sink resolves); once labelled, its rotation rolls the workers."""
    selector = "lambdasink.dev/watched=true"
    start_operator(extra_args=["--secret-selector", selector])
    create_sample(cluster, namespace)  # examples/aws-credentials-secret.yaml has no such label
    wait_condition(cluster, namespace, "SecretsResolved", status="True")
    first = template_hash(wait_for("the Deployment", lambda: deployment(cluster, namespace)))

    cluster.kubectl("label", "secret", "lambdasink-aws", "-n", namespace, selector)
    rotated = base64.b64encode(b"rotated-under-selector").decode()
    cluster.kubectl(
        "patch",
        "secret",
        "lambdasink-aws",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"data": {"secretAccessKey": rotated}}),
    )
    wait_for(
        "a hash change after the labelled Secret rotated",
        when(lambda: template_hash(deployment(cluster, namespace)), lambda h: h != first),
    )


def test_invalid_spec_leaves_the_running_deployment_alone(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    create_sample(cluster, namespace)
    dep = wait_for("the Deployment", lambda: deployment(cluster, namespace))
    # valid for the schema, invalid for the runtime's model (an unknown credential plugin)
    patch_sink(
        cluster,
        namespace,
        '{"spec":{"replicas":2,"sinkConfig":{"awsCredentialPluginName":"no such plugin"}}}',
    )
    obj = wait_for(
        "ConfigValid=False",
        when(
            lambda: sink_status(cluster, namespace),
            lambda o: condition(o, "ConfigValid").get("status") == "False",
        ),
    )
    cv = condition(obj, "ConfigValid")
    assert cv["reason"] == "InvalidSpec"
    assert cv["message"].startswith(
        "spec.sinkConfig.awsCredentialPluginName: 'no such plugin' is not valid"
    )
    assert (
        condition(obj, "Ready")["status"] == "False"
        and condition(obj, "Ready")["reason"] == "InvalidSpec"
    )
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    events = json.loads(
        cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector", "reason=InvalidSpec", "-o", "json"
        ).stdout
    )["items"]
    assert (
        events
        and events[0]["type"] == "Warning"
        and "awsCredentialPluginName" in events[0]["message"]
    )
    after = deployment(cluster, namespace)
    assert after is not None
    assert after["metadata"]["generation"] == dep["metadata"]["generation"]  # spec untouched
    assert template_hash(after) == template_hash(dep)
    assert after["spec"]["replicas"] == 1

    patch_sink(cluster, namespace, '{"spec":{"sinkConfig":{"awsCredentialPluginName":""}}}')
    wait_for(
        "ConfigValid=True again",
        lambda: condition(sink_status(cluster, namespace), "ConfigValid").get("status") == "True",
    )
    wait_for(
        "the held-back replicas change applied",
        lambda: (deployment(cluster, namespace) or {})["spec"]["replicas"] == 2,
    )


def test_drift_is_put_back(cluster: Cluster, namespace: str, operator: Operator) -> None:
    create_sample(cluster, namespace)
    dep = wait_for("the Deployment", lambda: deployment(cluster, namespace))
    cluster.kubectl("scale", "deployment", dep["metadata"]["name"], "-n", namespace, "--replicas=4")
    cluster.kubectl(
        "patch",
        "deployment",
        dep["metadata"]["name"],
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/spec/template/spec/containers/0/readinessProbe"}]',
    )
    wait_for(
        "replicas and probe restored",
        when(
            lambda: deployment(cluster, namespace),
            lambda d: (
                d is not None
                and d["spec"]["replicas"] == 1
                and "readinessProbe" in d["spec"]["template"]["spec"]["containers"][0]
            ),
        ),
    )

    cluster.kubectl("delete", "deployment", dep["metadata"]["name"], "-n", namespace, "--wait=true")
    again = wait_for(
        "the Deployment recreated",
        when(
            lambda: deployment(cluster, namespace),
            lambda d: d and d["metadata"]["uid"] != dep["metadata"]["uid"],
        ),
    )
    assert template_hash(again) == template_hash(dep)


def test_deleting_the_sink_garbage_collects_the_deployment(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    create_sample(cluster, namespace)
    wait_for("the Deployment", lambda: deployment(cluster, namespace))
    wait_for(
        "the first pod",
        lambda: json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)[
            "items"
        ],
    )
    cluster.kubectl(
        "delete", "lambdasink", "orders-to-lambda", "-n", namespace, "--wait=true", "--timeout=30s"
    )
    wait_for(
        "the Deployment gone (kube-controller-manager's garbage collector)",
        lambda: deployment(cluster, namespace) is None,
    )
    wait_for(
        "the pods gone",
        lambda: (
            not json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)[
                "items"
            ]
        ),
    )
    # and the operator did not resurrect it
    assert deployment(cluster, namespace) is None


def test_worker_failure_is_surfaced(cluster: Cluster, namespace: str, operator: Operator) -> None:
    create_sample(cluster, namespace)
    pod = wait_for(
        "a worker pod",
        lambda: next(iter(pods_in(cluster, namespace)), None),
    )
    # FAKE KUBELET: the stack runs no kubelet, so nothing reports container states. This is the
    # status a kubelet writes after the worker exits with code 2 and its /dev/termination-log line.
    message = (
        "sink.lambdaFunctionName: 'recorder' is not valid; function not found (ResourceNotFound)"
    )
    status = {
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "worker",
                    "image": "lambdasink-runtime:test",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 3,
                    "started": False,
                    "state": {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": "back-off 40s restarting failed container",
                        }
                    },
                    "lastState": {
                        "terminated": {
                            "exitCode": 3,
                            "reason": "Error",
                            "message": message,
                            "startedAt": "2026-01-01T00:00:00Z",
                            "finishedAt": "2026-01-01T00:00:01Z",
                        }
                    },
                }
            ],
        }
    }
    cluster.kubectl(
        "patch",
        "pod",
        pod["metadata"]["name"],
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    ready = wait_condition(cluster, namespace, "Ready", reason="WorkerFailing")
    assert ready["status"] == "False"
    assert (
        ready["message"] == f"pod {pod['metadata']['name']}: worker exited with code 3: {message}"
    )
    events = json.loads(
        cluster.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            "reason=WorkerFailing",
            "-o",
            "json",
        ).stdout
    )["items"]
    assert events and message in events[0]["message"]


RBAC_RULES = REPO / "operator/lambdasink_operator/RBAC.md"


def test_operator_runs_with_the_documented_least_privilege(
    cluster: Cluster, namespace: str, start_operator: Any, tmp_path: Path
) -> None:
    """A ServiceAccount with exactly the Role rules of RBAC.md runs the whole flow."""
    text = RBAC_RULES.read_text()
    rules_yaml = text.split("## As rules", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    rules = yaml.safe_load(rules_yaml)["rules"]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "lambdasink-operator"},
        "rules": rules,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "lambdasink-operator"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "lambdasink-operator",
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": "lambdasink-operator", "namespace": namespace}
        ],
    }
    cluster.kubectl("create", "serviceaccount", "lambdasink-operator", "-n", namespace)
    cluster.apply(role, namespace)
    cluster.apply(binding, namespace)
    token = cluster.kubectl(
        "create", "token", "lambdasink-operator", "-n", namespace, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    user = admin["contexts"][0]["context"]["user"]
    for entry in admin["users"]:
        if entry["name"] == user:
            entry["user"] = {"token": token}
    kubeconfig = tmp_path / "operator.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(admin))
    # nothing more than the Role: e.g. no cluster-wide secrets, no namespaces
    denied = cluster.kubectl(
        "auth",
        "can-i",
        "list",
        "secrets",
        "--all-namespaces",
        kubeconfig=str(kubeconfig),
        check=False,
    )
    assert denied.stdout.strip() == "no"

    op = start_operator(str(kubeconfig))
    create_sample(cluster, namespace)
    wait_for("the Deployment", lambda: deployment(cluster, namespace))
    wait_for(
        "Ready condition written",
        lambda: (
            condition(sink_status(cluster, namespace), "SecretsResolved").get("status") == "True"
        ),
    )
    cluster.kubectl(
        "delete", "deployment", "lambdasink-orders-to-lambda", "-n", namespace, "--wait=true"
    )
    wait_for("the Deployment recreated", lambda: deployment(cluster, namespace))
    log = op.log()
    assert not denied_lines(log), log[-3000:]


def test_operator_restart_catches_up(
    cluster: Cluster, namespace: str, start_operator: Callable[..., Operator]
) -> None:
    """What happened while the operator was down is reconciled when it comes back."""
    first = start_operator()
    create_sample(cluster, namespace)
    dep = wait_for("the Deployment", lambda: deployment(cluster, namespace))
    first.stop()

    # resume: nothing changed in the spec, but the Deployment went away
    cluster.kubectl("delete", "deployment", dep["metadata"]["name"], "-n", namespace)
    second = start_operator()
    wait_for("the Deployment recreated on resume", lambda: deployment(cluster, namespace))
    second.stop()

    # update: the spec changed while the operator was down
    patch_sink(cluster, namespace, '{"spec":{"replicas":2,"sinkConfig":{"payloadFormat":"V1"}}}')
    start_operator()
    updated = wait_for(
        "the Deployment updated after restart",
        when(
            lambda: deployment(cluster, namespace),
            lambda d: d is not None and d["spec"]["replicas"] == 2,
        ),
    )
    env = {e["name"]: e for e in updated["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["LAMBDASINK_CONFIG"]["value"])["sink"]["payloadFormat"] == "V1"
    obj = sink_status(cluster, namespace)
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]


def test_deployment_refused_by_the_server_is_reported(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    """Pod fields pass through unchecked (preserve-unknown-fields); when the API server refuses
    the Deployment built from them, the sink says why instead of retrying silently."""
    sink = _with(local_sink(), "spec.pod.affinity", {"nodeAffinity": {"bogusField": True}})
    create_sample(cluster, namespace, sink)
    ready = wait_condition(cluster, namespace, "Ready", reason="DeploymentBlocked")
    assert ready["status"] == "False"
    assert "the API server refused the worker Deployment" in ready["message"]
    assert "bogusField" in ready["message"]  # the server's own words
    assert deployment(cluster, namespace) is None
    events = json.loads(
        cluster.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            "reason=DeploymentBlocked",
            "-o",
            "json",
        ).stdout
    )["items"]
    assert events and events[0]["type"] == "Warning"

    # a value the Deployment validation refuses (422) is reported the same way
    patch_sink(
        cluster,
        namespace,
        '{"spec":{"pod":{"affinity":null,"tolerations":[{"operator":"Sometimes"}]}}}',
    )
    wait_for(
        "DeploymentBlocked about the toleration",
        lambda: (
            "Sometimes"
            in wait_condition(cluster, namespace, "Ready", reason="DeploymentBlocked")["message"]
        ),
    )
    assert deployment(cluster, namespace) is None

    cluster.kubectl(
        "patch",
        "lambdasink",
        "orders-to-lambda",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/spec/pod"}]',
    )
    wait_for("the Deployment once the spec is fixed", lambda: deployment(cluster, namespace))
    wait_condition(cluster, namespace, "Ready", reason="WorkersNotReady")


def test_every_example_is_accepted_by_the_api_server(cluster: Cluster, namespace: str) -> None:
    """examples/ (README, demo, e2e) stay valid against the installed CRD."""
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) >= 4
    for path in files:
        out = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path))
        assert "(server dry run)" in out.stdout, (path.name, out.stdout, out.stderr)
