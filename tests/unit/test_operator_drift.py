"""Drift: only what the operator sets is compared, list items by their merge keys."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.unit.test_operator_manifests import build, container, sink

from lambdasink_operator.drift import drifted, quantity


def live(desired: dict[str, Any]) -> dict[str, Any]:
    """The Deployment as the API server returns it: our fields plus defaults and bookkeeping."""
    actual = copy.deepcopy(desired)
    actual["metadata"]["resourceVersion"] = "42"
    actual["metadata"]["generation"] = 1
    actual["spec"]["progressDeadlineSeconds"] = 600
    container(actual)["readinessProbe"]["timeoutSeconds"] = 1
    actual["status"] = {"replicas": 1}
    return actual


def test_server_defaults_are_not_drift_and_changed_values_are() -> None:
    desired = build(sink())
    actual = live(desired)
    assert drifted(desired, actual) is None
    actual["spec"]["replicas"] = 7
    assert drifted(desired, actual) == "spec.replicas"
    actual = live(desired)
    del container(actual)["readinessProbe"]
    assert drifted(desired, actual) == "spec.template.spec.containers[name=worker].readinessProbe"


def test_a_removed_env_var_of_ours_is_drift() -> None:
    desired = build(sink())
    actual = live(desired)
    gone = container(actual)["env"].pop()
    found = drifted(desired, actual)
    assert found is not None and f"env[name={gone['name']}]" in found


def test_what_a_sidecar_injector_appends_is_not_drift() -> None:
    """An admission webhook adds a container, a volume, a mount and env vars, some of them
    before ours: still no drift, so the operator does not re-apply forever."""
    desired = build(sink())
    actual = live(desired)
    pod = actual["spec"]["template"]["spec"]
    pod["containers"].insert(0, {"name": "istio-proxy", "image": "proxy:1"})
    pod["initContainers"] = [{"name": "istio-init", "image": "proxy:1"}]
    pod["volumes"].append({"name": "istio-envoy", "emptyDir": {}})
    worker = pod["containers"][1]
    worker["env"].insert(0, {"name": "INJECTED_FIRST", "value": "1"})
    worker["env"].append({"name": "INJECTED_LAST", "value": "2"})
    worker["volumeMounts"].append({"name": "istio-envoy", "mountPath": "/etc/istio/proxy"})
    worker["ports"].append({"name": "envoy", "containerPort": 15090, "protocol": "TCP"})
    actual["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/status"] = "{}"
    actual["spec"]["template"]["metadata"]["labels"]["security.istio.io/tlsMode"] = "istio"
    assert drifted(desired, actual) is None
    # ...while a change to one of our own entries among them still is
    worker["env"][1]["value"] = "edited"
    assert drifted(desired, actual) == (
        f"spec.template.spec.containers[name=worker].env[name={worker['env'][1]['name']}].value"
    )


def test_lists_without_merge_keys_compare_exactly() -> None:
    desired = build(sink())
    actual = live(desired)
    container(actual)["command"].append("--extra")
    assert drifted(desired, actual) == "spec.template.spec.containers[name=worker].command"
    assert drifted({"tolerations": [{"key": "a"}]}, {"tolerations": [{"key": "a"}, {}]})


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("0.5", "500m"),
        ("1000m", "1"),
        ("1024Mi", "1Gi"),
        (1, "1"),
        ("1e3", "1k"),
        ("128Mi", "128Mi"),
    ],
)
def test_quantities_the_server_rewrites_are_not_drift(given: object, stored: str) -> None:
    desired = {"resources": {"limits": {"cpu": given}}, "replicas": 1}
    actual = {"resources": {"limits": {"cpu": stored}}, "replicas": 1, "extra": True}
    assert drifted(desired, actual) is None


def test_changed_quantities_and_values_outside_resources_are_drift() -> None:
    assert (
        drifted(
            {"resources": {"requests": {"memory": "128Mi"}}},
            {"resources": {"requests": {"memory": "256Mi"}}},
        )
        == "resources.requests.memory"
    )
    # Only resource quantities compare by value: an env value "1k" is not "1000".
    assert drifted(
        {"env": [{"name": "A", "value": "1k"}]}, {"env": [{"name": "A", "value": "1000"}]}
    )
    assert quantity("lots") is None
    assert quantity(True) is None
