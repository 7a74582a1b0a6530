"""Pre-flight conditions on the real stack: the operator asks the real Lambda gateway (DryRun,
GetFunction) and the real Pulsar admin API with the sink's own Secrets, and writes what it found
to the real kube-apiserver. The only fake is the gateway's per-access-key deny, standing in for
IAM (the emulator checks no policy); the test uses an access key of its own for it."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cluster_support import Cluster, Operator
from tests.stack import LambdaFaults, LambdaFunctions, Stack, wait_for

pytestmark = pytest.mark.cluster

SINK = "preflight"
#: Seconds between background rounds: fixes made outside Kubernetes (a function created, a
#: deny lifted, a topic created) are seen on the next round.
INTERVAL = "2"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def admin_put(stack: Stack, path: str) -> None:
    req = urllib.request.Request(stack.pulsar_admin_url + path, method="PUT", data=b"")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status in (200, 204)


def sink_doc(stack: Stack, *, function: str, topic: str, secret: str, **sink: Any) -> Any:
    return {
        "apiVersion": "lambdasink.dev/v1alpha1",
        "kind": "LambdaSink",
        "metadata": {"name": SINK},
        "spec": {
            "replicas": 1,
            "image": "lambdasink-runtime:test",
            "pulsar": {
                "serviceUrl": stack.pulsar_service_url,
                "adminUrl": stack.pulsar_admin_url,
            },
            "input": {
                "topics": [topic],
                "subscriptionName": "preflight-sub",
                "subscriptionInitialPosition": "Earliest",
            },
            "sinkConfig": {
                "awsEndpoint": stack.lambda_endpoint,
                "awsRegion": stack.lambda_region,
                "lambdaFunctionName": function,
                **sink,
            },
            "aws": {"credentialsSecret": {"name": secret}},
        },
    }


def add_credentials(cluster: Cluster, namespace: str, access_key: str) -> str:
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "preflight-aws",
        "-n",
        namespace,
        f"--from-literal=accessKeyId={access_key}",
        "--from-literal=secretAccessKey=irrelevant-locally",
    )
    return "preflight-aws"


def conditions_of(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    obj = cluster.get("lambdasink", SINK, namespace) or {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def wait_condition(
    cluster: Cluster, namespace: str, type_: str, status: str, reason: str
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        found = conditions_of(cluster, namespace).get(type_) or {}
        return found if (found.get("status"), found.get("reason")) == (status, reason) else None

    return wait_for(f"{type_}={status} ({reason})", probe, timeout=90)


def warning_reasons(cluster: Cluster, namespace: str) -> set[str]:
    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
    return {e["reason"] for e in events["items"] if e.get("type") == "Warning"}


@pytest.fixture
def preflight_operator(
    start_operator: Callable[..., Operator], monkeypatch: pytest.MonkeyPatch
) -> Operator:
    monkeypatch.setenv("LAMBDASINK_OPERATOR_PREFLIGHT_INTERVAL", INTERVAL)
    return start_operator()


def test_missing_function_and_topic_are_reported_then_clear(
    cluster: Cluster,
    namespace: str,
    stack: Stack,
    lambda_functions: LambdaFunctions,
    preflight_operator: Operator,
) -> None:
    function = lambda_functions.unused_name("pf")
    topic = f"persistent://public/default/{unique('pf-missing')}"
    secret = add_credentials(cluster, namespace, unique("AKIAPF"))
    cluster.apply(sink_doc(stack, function=function, topic=topic, secret=secret), namespace)

    missing = wait_condition(cluster, namespace, "FunctionReachable", "False", "FunctionNotFound")
    assert f'"{function}"' in missing["message"]
    ready = wait_condition(cluster, namespace, "Ready", "False", "PreflightFailed")
    assert function in ready["message"]
    no_topic = wait_condition(cluster, namespace, "TopicsExist", "False", "TopicNotFound")
    assert topic in no_topic["message"]
    assert conditions_of(cluster, namespace)["SubscriptionReady"]["status"] == "Unknown"
    wait_for(
        "Warning Events FunctionNotFound and TopicNotFound",
        lambda: {"FunctionNotFound", "TopicNotFound"} <= warning_reasons(cluster, namespace),
    )

    # fixed outside Kubernetes: the background round notices
    lambda_functions.create("recorder.handler", name=function, concurrency=1, timeout=3)
    admin_put(stack, "/admin/v2/" + topic.replace("://", "/"))
    wait_condition(cluster, namespace, "FunctionReachable", "True", "Invocable")
    wait_condition(cluster, namespace, "TopicsExist", "True", "TopicsFound")
    will = wait_condition(
        cluster, namespace, "SubscriptionReady", "True", "WillBeCreatedAtEarliest"
    )
    assert '"preflight-sub"' in will["message"]
    assert conditions_of(cluster, namespace)["TimeoutsCompatible"]["status"] == "True"
    ready = wait_for(
        "Ready no longer PreflightFailed",
        lambda: (
            (r := conditions_of(cluster, namespace)["Ready"])["reason"] != "PreflightFailed" and r
        ),
    )
    assert ready["reason"] != "PreflightFailed"

    admin_put(stack, "/admin/v2/" + topic.replace("://", "/") + "/subscription/preflight-sub")
    wait_condition(cluster, namespace, "SubscriptionReady", "True", "SubscriptionExists")


def test_denied_dry_run_and_short_invoke_timeout_are_reported_then_clear(
    cluster: Cluster,
    namespace: str,
    stack: Stack,
    lambda_functions: LambdaFunctions,
    lambda_faults: LambdaFaults,
    preflight_operator: Operator,
) -> None:
    function = lambda_functions.create("recorder.handler", prefix="pf", concurrency=1, timeout=90)
    key = unique("AKIAPF")
    deny = lambda_faults.deny(key, function=function, actions=["lambda:InvokeFunction"])
    topic = f"persistent://public/default/{unique('pf-topic')}"
    admin_put(stack, "/admin/v2/" + topic.replace("://", "/"))
    secret = add_credentials(cluster, namespace, key)
    cluster.apply(sink_doc(stack, function=function, topic=topic, secret=secret), namespace)

    denied = wait_condition(cluster, namespace, "FunctionReachable", "False", "AccessDenied")
    assert f'"{function}"' in denied["message"]
    assert "AccessDeniedException" in denied["message"]
    wait_condition(cluster, namespace, "Ready", "False", "PreflightFailed")
    wait_condition(cluster, namespace, "TopicsExist", "True", "TopicsFound")

    lambda_faults.lift(deny)
    wait_condition(cluster, namespace, "FunctionReachable", "True", "Invocable")
    # the function's Timeout (90 s) is above the default invokeTimeoutMs (60 s)
    short = wait_condition(
        cluster, namespace, "TimeoutsCompatible", "False", "InvokeTimeoutBelowFunctionTimeout"
    )
    assert "invokeTimeoutMs (60000 ms)" in short["message"]
    assert "terminationGracePeriodSeconds" in short["message"]  # the drain rule too

    cluster.kubectl(
        "patch",
        "lambdasink",
        SINK,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "sinkConfig": {"invokeTimeoutMs": 95000},
                    "pod": {"terminationGracePeriodSeconds": 100},
                }
            }
        ),
    )
    ok = wait_condition(cluster, namespace, "TimeoutsCompatible", "True", "Compatible")
    assert "90 s" in ok["message"]
