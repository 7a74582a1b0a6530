"""A sidecar injector (a real mutating admission webhook on the stack's kube-apiserver) appends
a container, a volume and an env var to every worker Deployment: the operator applies once and
then leaves it alone, however many passes follow.

The webhook is served from this test over HTTPS (tests/unit/tls's self-signed 127.0.0.1
certificate) and registered for the test's namespace only; it stands in for injectors such as
Istio's, which the stack does not run.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cluster_support import REPO, Cluster, Operator
from test_operator_cluster import create_sample, deployment, pods_in, when
from tests.stack import wait_for

pytestmark = pytest.mark.cluster

TLS = REPO / "tests/unit/tls"
SIDECAR = "injected-proxy"


def injection(deployment_doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON patch an injector sends: nothing when the sidecar is already there."""
    pod = deployment_doc["spec"]["template"]["spec"]
    if any(c.get("name") == SIDECAR for c in pod.get("containers", [])):
        return []
    base = "/spec/template/spec"
    ops: list[dict[str, Any]] = [
        {"op": "add", "path": f"{base}/containers/-", "value": {"name": SIDECAR, "image": "p:1"}}
    ]
    env = {"name": "PROXY", "value": "1"}
    if pod["containers"][0].get("env"):
        ops.append({"op": "add", "path": f"{base}/containers/0/env/-", "value": env})
    else:
        ops.append({"op": "add", "path": f"{base}/containers/0/env", "value": [env]})
    volume = {"name": "proxy-certs", "emptyDir": {}}
    if pod.get("volumes"):
        ops.append({"op": "add", "path": f"{base}/volumes/-", "value": volume})
    else:
        ops.append({"op": "add", "path": f"{base}/volumes", "value": [volume]})
    return ops


class _Injector(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = review["request"]
        response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
        patch = injection(request["object"])
        if patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        body = json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def injector(cluster: Cluster, namespace: str) -> Iterator[None]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Injector)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(TLS / "localhost.pem"), str(TLS / "localhost-key.pem"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    name = f"lambdasink-test-injector-{namespace}"
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "injector.lambdasink.dev",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{server.server_address[1]}/mutate",
                    "caBundle": base64.b64encode((TLS / "localhost.pem").read_bytes()).decode(),
                },
                "rules": [
                    {
                        "operations": ["CREATE", "UPDATE"],
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "resources": ["deployments"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }
        ],
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(config))
    probe = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": "probe"}},
            "template": {
                "metadata": {"labels": {"app": "probe"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    try:
        wait_for(
            "the API server calling the injector",
            lambda: (
                SIDECAR
                in cluster.kubectl(
                    "apply", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(probe)
                ).stdout
            ),
        )
        yield
    finally:
        cluster.kubectl("delete", "mutatingwebhookconfiguration", name, check=False)
        server.shutdown()
        server.server_close()


def handled(operator: Operator, handler: str) -> int:
    return operator.log().count(f"Handler '{handler}' succeeded")


def applies(operator: Operator) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in operator.metrics().splitlines()
        if line.startswith("lambdasink_operator_deployment_applies_total")
    )


def test_an_injected_sidecar_is_not_reapplied_forever(
    cluster: Cluster, namespace: str, injector: None, operator: Operator
) -> None:
    create_sample(cluster, namespace)
    dep = wait_for(
        "the Deployment with the injected sidecar",
        when(
            lambda: deployment(cluster, namespace),
            lambda d: d is not None and len(d["spec"]["template"]["spec"]["containers"]) == 2,
        ),
    )
    # the counter moves once the pass ends, a moment after the Deployment is visible
    wait_for("the apply counted", lambda: applies(operator) >= 1)
    assert applies(operator) == 1
    # More passes, each waited for: a sink annotation (kopf's update handler) and a pod label
    # (the pod event handler).
    pod = wait_for("a worker pod", lambda: next(iter(pods_in(cluster, namespace)), None))
    for i in range(3):
        for kind, name, handler in (
            ("lambdasink", "orders-to-lambda", "sink_changed"),
            ("pod", pod["metadata"]["name"], "child_changed"),
        ):
            done = handled(operator, handler)
            cluster.kubectl("annotate", kind, name, "-n", namespace, f"poke={i}", "--overwrite")

            def poked(h: str = handler, d: float = done) -> bool:
                return handled(operator, h) > d

            wait_for(f"{handler} after poke {i}", poked)
    after = deployment(cluster, namespace)
    assert after is not None
    assert after["metadata"]["generation"] == dep["metadata"]["generation"]
    assert applies(operator) == 1
    events = json.loads(
        cluster.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            "reason=DeploymentApplied",
            "-o",
            "json",
        ).stdout
    )["items"]
    assert sum(int(e.get("count") or 1) for e in events) == 1
