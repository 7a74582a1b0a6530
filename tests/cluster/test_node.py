"""The stack's real node (dev/stack): containerd + runc + a CNI bridge, the kubelet and the
kube-scheduler. A pod from the stack's locally built toolbox image (static busybox + an in-cluster
API client) runs on the pod network; kubectl logs/exec/port-forward go through the kubelet; the
pod reaches Pulsar, the Lambda gateway and the kube-apiserver (through the `kubernetes` Service).
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
from tests.stack import Stack, kubectl, wait_for

pytestmark = pytest.mark.cluster

JSON = dict[str, Any]
START_LINE = "toolbox pod started"


@pytest.fixture(scope="module")
def node(stack: Stack) -> JSON:
    info: JSON = stack.get("node") or {}
    if info.get("mode") != "kubelet":
        pytest.fail(
            f"the stack runs no kubelet (node: {info!r}); start it with `dev/stack up` "
            "(not LAMBDASINK_NODE=agent)",
            pytrace=False,
        )
    return info


@pytest.fixture(scope="module")
def pod(stack: Stack, node: JSON) -> Iterator[JSON]:
    """A toolbox pod serving a token over HTTP on :8080, in a namespace of its own."""
    ns = f"node-{uuid.uuid4().hex[:8]}"
    token = uuid.uuid4().hex
    kubectl(stack, "create", "namespace", ns)
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "toolbox", "namespace": ns},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": node["images"]["toolbox"],
                    "imagePullPolicy": "IfNotPresent",
                    "command": [
                        "sh",
                        "-c",
                        f"echo {START_LINE}; mkdir -p /www; echo {token} > /www/index.html;"
                        " exec httpd -f -p 8080 -h /www",
                    ],
                    "ports": [{"containerPort": 8080}],
                }
            ],
        },
    }
    try:
        kubectl(stack, "apply", "-f", "-", input=json.dumps(manifest))
        kubectl(stack, "wait", "--for=condition=Ready", "pod/toolbox", "-n", ns, "--timeout=90s")
        doc = json.loads(kubectl(stack, "get", "pod", "toolbox", "-n", ns, "-o", "json").stdout)
        yield {"ns": ns, "token": token, "doc": doc}
    finally:
        kubectl(stack, "delete", "namespace", ns, "--wait=false", check=False)


def exec_in(stack: Stack, pod: JSON, *cmd: str) -> str:
    return kubectl(stack, "exec", "toolbox", "-n", pod["ns"], "--", *cmd).stdout


def test_the_node_is_ready_with_the_stacks_kubelet_and_containerd(stack: Stack, node: JSON) -> None:
    doc = json.loads(kubectl(stack, "get", "node", node["name"], "-o", "json").stdout)
    ready = [c for c in doc["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True", ready
    assert node["ready"] is True
    info = doc["status"]["nodeInfo"]
    assert info["kubeletVersion"] == stack["kubernetes"]["version"]
    containerd = stack["versions"]["CONTAINERD_VERSION"].lstrip("v")
    assert info["containerRuntimeVersion"] == f"containerd://{containerd}"
    addresses = {a["type"]: a["address"] for a in doc["status"]["addresses"]}
    assert addresses["InternalIP"] == node["address"] == node["network"]["gateway"]


def test_a_pod_runs_in_a_container_on_the_pod_network(pod: JSON, node: JSON) -> None:
    doc = pod["doc"]
    assert doc["spec"]["nodeName"] == node["name"]
    assert ipaddress.ip_address(doc["status"]["podIP"]) in ipaddress.ip_network(
        node["network"]["subnet"]
    )
    (status,) = doc["status"]["containerStatuses"]
    assert status["containerID"].startswith("containerd://")
    assert status["image"].endswith(node["images"]["toolbox"].split("/", 1)[1])


def test_kubectl_logs_shows_the_containers_output(stack: Stack, pod: JSON) -> None:
    logs = kubectl(stack, "logs", "toolbox", "-n", pod["ns"]).stdout
    assert START_LINE in logs


def test_kubectl_exec_runs_in_the_container(stack: Stack, pod: JSON) -> None:
    assert exec_in(stack, pod, "cat", "/www/index.html").strip() == pod["token"]
    assert exec_in(stack, pod, "hostname").strip() == "toolbox"
    # PID 1 of the container's own PID namespace is the container's command
    assert "httpd" in exec_in(stack, pod, "cat", "/proc/1/cmdline")


def test_kubectl_port_forward_reaches_the_container(stack: Stack, pod: JSON) -> None:
    cmd = [
        stack["bin"]["kubectl"],
        "--kubeconfig",
        str(stack.kubeconfig),
        "port-forward",
        "-n",
        pod["ns"],
        "pod/toolbox",
        ":8080",
    ]
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            found = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) -> 8080", line)
            assert found, line
            url = f"http://127.0.0.1:{found[1]}/index.html"
            with urllib.request.urlopen(url, timeout=20) as resp:
                assert resp.read().decode().strip() == pod["token"]
        finally:
            proc.terminate()


def test_a_pod_reaches_pulsar(stack: Stack, pod: JSON) -> None:
    broker = urlparse(stack.pulsar_service_url)
    # The broker's binary port accepts the pod's connection (nc exits 0 once connected) ...
    exec_in(stack, pod, "sh", "-c", f"echo | nc -w 5 {broker.hostname} {broker.port}")
    # ... and the broker answers the pod on its admin API, at the address it advertises.
    clusters = exec_in(
        stack, pod, "wget", "-q", "-O-", f"{stack.pulsar_admin_url}/admin/v2/clusters"
    )
    assert json.loads(clusters) == ["standalone"]
    lookup = exec_in(
        stack,
        pod,
        "wget",
        "-q",
        "-O-",
        f"{stack.pulsar_admin_url}/lookup/v2/topic/persistent/public/default/node-test",
    )
    assert json.loads(lookup)["brokerUrl"] == stack.pulsar_service_url


def test_a_pod_invokes_a_function_through_the_lambda_gateway(stack: Stack, pod: JSON) -> None:
    payload = json.dumps({"from": "pod", "token": pod["token"]})
    url = f"{stack.lambda_endpoint}/2015-03-31/functions/echo/invocations"
    out = exec_in(stack, pod, "wget", "-q", "-O-", f"--post-data={payload}", url)
    assert json.loads(out) == json.loads(payload)


def test_a_pod_reaches_the_apiserver_through_the_kubernetes_service(
    stack: Stack, pod: JSON
) -> None:
    env = exec_in(stack, pod, "env")
    assert "KUBERNETES_SERVICE_HOST=10.0.0.1" in env
    # kube-probe: the ServiceAccount token and CA the kubelet mounted, TLS verified
    out = exec_in(stack, pod, "kube-probe", "/version")
    status, _, body = out.partition(" ")
    assert status == "200", out
    assert json.loads(body)["gitVersion"] == stack["kubernetes"]["version"]


def test_deleting_a_pod_stops_its_container(stack: Stack, node: JSON) -> None:
    ns = f"node-del-{uuid.uuid4().hex[:8]}"
    kubectl(stack, "create", "namespace", ns)
    try:
        kubectl(
            stack, "run", "short", "-n", ns, f"--image={node['images']['toolbox']}",
            "--image-pull-policy=IfNotPresent", "--command", "--", "sleep", "3600",
        )  # fmt: skip
        kubectl(stack, "wait", "--for=condition=Ready", "pod/short", "-n", ns, "--timeout=90s")
        doc = json.loads(kubectl(stack, "get", "pod", "short", "-n", ns, "-o", "json").stdout)
        container_id = doc["status"]["containerStatuses"][0]["containerID"].split("://")[1]
        kubectl(stack, "delete", "pod", "short", "-n", ns, "--grace-period=1", "--wait=true")
        crictl = [
            stack["bin"]["crictl"],
            "--config",
            "/dev/null",
            "--runtime-endpoint",
            node["containerd"]["endpoint"],
        ]

        def gone() -> bool:
            out = subprocess.run([*crictl, "ps", "-q"], capture_output=True, text=True, check=True)
            return container_id not in out.stdout

        wait_for("the deleted pod's container to stop", gone, timeout=60)
    finally:
        kubectl(stack, "delete", "namespace", ns, "--wait=false", check=False)
