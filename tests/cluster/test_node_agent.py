"""The local node agent (dev/node_agent.py) against the stack's real kube-apiserver.

The agent stands in for a kubelet: these tests check that what the controllers and `kubectl` see
(pod phase, conditions, readyReplicas, restart counts, termination messages) matches what really
happens to the local processes. The agent under test runs on its own Node and takes only pods
of its own namespace that select that Node, so it never competes with the e2e suite's agent.
"""

from __future__ import annotations

import functools
import json
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.stack import wait_for

from node_agent_lib import control
from node_agent_lib.kube import Kube, KubeError

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.cluster

T = TypeVar("T")
JSON = dict[str, Any]
NODE_LABEL = "lambdasink.dev/node-agent-test"


def pid_of(container_status: JSON) -> int:
    cid = container_status.get("containerID", "")
    assert cid.startswith("nodeagent://"), container_status
    return int(cid.removeprefix("nodeagent://"))


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def dead(pid: int) -> bool:
    return not alive(pid)


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.fixture(scope="module")
def agent_env(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JSON]:
    """A namespace, a Node agent that serves only it, and a Kube client."""
    kubeconfig = Path(stack.kubeconfig)
    kube = Kube(str(kubeconfig))
    suffix = uuid.uuid4().hex[:6]
    ns = f"node-agent-{suffix}"
    node = f"test-node-{suffix}"
    state_dir = tmp_path_factory.mktemp("node-agent")
    kube.post(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
    )
    handle = control.start(
        kubeconfig,
        node=node,
        state_dir=state_dir,
        extra_args=[
            "--namespace",
            ns,
            "--node-label",
            f"{NODE_LABEL}={suffix}",
            "--backoff-base",
            "1",
            "--backoff-max",
            "8",
            "--delete-node-on-exit",
        ],
    )
    # the controller-manager creates each namespace's default ServiceAccount
    wait_for(
        "default ServiceAccount",
        lambda: kube.get_or_none(f"/api/v1/namespaces/{ns}/serviceaccounts/default"),
    )
    try:
        yield {
            "kube": kube,
            "ns": ns,
            "node": node,
            "suffix": suffix,
            "handle": handle,
            "state_dir": state_dir,
        }
    finally:
        try:
            kube.delete(f"/api/v1/namespaces/{ns}")
            wait_for(
                "namespace deletion",
                lambda: kube.get_or_none(f"/api/v1/namespaces/{ns}") is None,
                timeout=90,
            )
        finally:
            control.stop(node=node, state_dir=state_dir)


def pod_template(env: JSON, name: str, container: JSON, **spec: Any) -> JSON:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {
            "nodeSelector": {NODE_LABEL: env["suffix"]},
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": "local/test", **container}],
            **spec,
        },
    }


def http_server_container() -> JSON:
    return {
        "command": ["python", "-m", "http.server", "$(LAMBDASINK_HTTP_PORT)"],
        "args": ["--bind", "127.0.0.1"],
        "ports": [{"name": "http", "containerPort": 8000}],
        "readinessProbe": {
            "httpGet": {"path": "/", "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 2,
        },
        "env": [
            {"name": "PLAIN", "value": "plain-value"},
            {"name": "EXPANDED", "value": "$(PLAIN)-expanded"},
            {
                "name": "FROM_SECRET",
                "valueFrom": {"secretKeyRef": {"name": "web-secret", "key": "token"}},
            },
            {
                "name": "FROM_CM",
                "valueFrom": {"configMapKeyRef": {"name": "web-config", "key": "greeting"}},
            },
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {
                "name": "APP_LABEL",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}},
            },
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        "envFrom": [{"configMapRef": {"name": "web-config"}, "prefix": "CM_"}],
    }


def pods(env: JSON, app: str) -> list[JSON]:
    items: list[JSON] = env["kube"].get(
        f"/api/v1/namespaces/{env['ns']}/pods", labelSelector=f"app={app}"
    )["items"]
    return items


def _has_get(log: Path) -> str | None:
    text = log.read_text()
    return text if "GET / " in text else None


def ready(pod: JSON) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def test_node_registers_ready_with_lease(agent_env: JSON) -> None:
    kube: Kube = agent_env["kube"]
    node = kube.get(f"/api/v1/nodes/{agent_env['node']}")
    conditions = {c["type"]: c for c in node["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert node["metadata"]["labels"][NODE_LABEL] == agent_env["suffix"]
    assert int(node["status"]["capacity"]["pods"]) > 0
    lease = kube.get(
        f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{agent_env['node']}"
    )
    first = lease["spec"]["renewTime"]
    assert lease["spec"]["holderIdentity"] == agent_env["node"]
    # the heartbeat keeps the node lifecycle controller from marking the node NotReady
    wait_for(
        "a lease renewal",
        lambda: (
            kube.get(
                f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{agent_env['node']}"
            )["spec"]["renewTime"]
            != first
        ),
        timeout=30,
    )


def test_deployment_runs_ready_scales_and_stops(agent_env: JSON) -> None:
    kube: Kube = agent_env["kube"]
    ns = agent_env["ns"]
    kube.post(
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "web-secret"},
            "stringData": {"token": "s3cret"},
        },
    )
    kube.post(
        f"/api/v1/namespaces/{ns}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web-config"},
            "data": {"greeting": "hello"},
        },
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": pod_template(agent_env, "web", http_server_container()),
        },
    }
    kube.post(f"/apis/apps/v1/namespaces/{ns}/deployments", deployment)
    dep_path = f"/apis/apps/v1/namespaces/{ns}/deployments/web"
    wait_for(
        "3 ready replicas",
        lambda: kube.get(dep_path).get("status", {}).get("readyReplicas") == 3,
        timeout=90,
    )
    running = pods(agent_env, "web")
    assert len(running) == 3
    pids = {}
    for pod in running:
        status = pod["status"]
        assert status["phase"] == "Running"
        assert status["podIP"] == "127.0.0.1"
        assert pod["spec"]["nodeName"] == agent_env["node"]
        types = {c["type"]: c["status"] for c in status["conditions"]}
        assert types == {
            "PodReadyToStartContainers": "True",
            "Initialized": "True",
            "Ready": "True",
            "ContainersReady": "True",
            "PodScheduled": "True",
        }
        (cs,) = status["containerStatuses"]
        assert cs["ready"] and cs["started"] and "running" in cs["state"]
        pid = pid_of(cs)
        assert alive(pid)
        pids[pod["metadata"]["name"]] = pid
        proc_env = environ(pid)
        assert proc_env["PLAIN"] == "plain-value"
        assert proc_env["EXPANDED"] == "plain-value-expanded"
        assert proc_env["FROM_SECRET"] == "s3cret"
        assert proc_env["FROM_CM"] == "hello"
        assert proc_env["CM_greeting"] == "hello"
        assert proc_env["POD_NAME"] == pod["metadata"]["name"]
        assert proc_env["POD_NS"] == ns
        assert proc_env["APP_LABEL"] == "web"
        assert proc_env["POD_IP"] == "127.0.0.1"
        assert proc_env["PATH"].split(":")[0] == str(REPO / ".venv" / "bin")
        # the process really serves on the private port the agent gave it
        port = int(proc_env["LAMBDASINK_HTTP_PORT"])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert resp.status == 200
        log = agent_env["handle"].state_dir / "pods" / f"{ns}_{pod['metadata']['name']}.log"
        text = wait_for(f"{log} to show the probe's GET", functools.partial(_has_get, log))
        assert "GET / " in text
    ports = {environ(p)["LAMBDASINK_HTTP_PORT"] for p in pids.values()}
    assert len(ports) == 3, "each pod needs its own port on the shared host"

    # scale down: the removed pods' processes stop and the pods go away
    kube.merge_patch(dep_path, {"spec": {"replicas": 1}})
    wait_for(
        "1 pod left",
        lambda: (
            len(pods(agent_env, "web")) == 1
            and kube.get(dep_path)["status"].get("readyReplicas") == 1
        ),
        timeout=60,
    )
    (survivor,) = pods(agent_env, "web")
    for name, pid in pids.items():
        if name == survivor["metadata"]["name"]:
            assert alive(pid)
        else:
            wait_for(f"process {pid} of {name} to exit", functools.partial(dead, pid), 15)

    # deleting the Deployment stops the last process
    kube.delete(dep_path, {"propagationPolicy": "Foreground"})
    wait_for("all pods gone", lambda: not pods(agent_env, "web"), timeout=60)
    last = pids[survivor["metadata"]["name"]]
    wait_for(f"process {last} to exit", lambda: not alive(last), 15)


def test_crashing_container_backs_off_with_termination_message(agent_env: JSON) -> None:
    kube: Kube = agent_env["kube"]
    ns = agent_env["ns"]
    script = (
        "import os, sys; "
        "open(os.environ['LAMBDASINK_TERMINATION_LOG'], 'w').write('bad config: field x'); "
        "print('crashing now', flush=True); sys.exit(3)"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "crasher", "labels": {"app": "crasher"}},
        **{
            "spec": pod_template(agent_env, "crasher", {"command": ["python", "-c", script]})[
                "spec"
            ]
        },
    }
    kube.post(f"/api/v1/namespaces/{ns}/pods", pod)
    path = f"/api/v1/namespaces/{ns}/pods/crasher"

    def backing_off() -> JSON | None:
        cs = (kube.get(path).get("status", {}).get("containerStatuses") or [{}])[0]
        waiting = cs.get("state", {}).get("waiting", {})
        if cs.get("restartCount", 0) >= 2 and waiting.get("reason") == "CrashLoopBackOff":
            return dict(cs)
        return None

    cs = wait_for("CrashLoopBackOff after 2 restarts", backing_off, timeout=60)
    terminated = cs["lastState"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    assert terminated["message"] == "bad config: field x"
    assert cs["ready"] is False
    status = kube.get(path)["status"]
    assert status["phase"] == "Running"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "False"
    log = agent_env["handle"].state_dir / "pods" / f"{ns}_crasher.log"
    assert log.read_text().count("crashing now") >= 3
    kube.delete(path)
    wait_for("crasher gone", lambda: kube.get_or_none(path) is None, timeout=30)


def test_pod_without_restart_reports_failed(agent_env: JSON) -> None:
    kube: Kube = agent_env["kube"]
    ns = agent_env["ns"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "once", "labels": {"app": "once"}},
        "spec": pod_template(
            agent_env,
            "once",
            {"command": ["python", "-c", "import sys; sys.exit(7)"]},
            restartPolicy="Never",
        )["spec"],
    }
    kube.post(f"/api/v1/namespaces/{ns}/pods", pod)
    path = f"/api/v1/namespaces/{ns}/pods/once"
    status = wait_for(
        "phase Failed",
        lambda: (s := kube.get(path).get("status", {})).get("phase") == "Failed" and s,
        timeout=30,
    )
    (cs,) = status["containerStatuses"]
    assert cs["state"]["terminated"]["exitCode"] == 7
    assert cs["restartCount"] == 0


def test_missing_secret_is_a_config_error_until_created(agent_env: JSON) -> None:
    kube: Kube = agent_env["kube"]
    ns = agent_env["ns"]
    container = {
        "command": ["python", "-c", "import time; time.sleep(600)"],
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}],
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "needs-secret", "labels": {"app": "needs-secret"}},
        "spec": pod_template(agent_env, "needs-secret", container)["spec"],
    }
    kube.post(f"/api/v1/namespaces/{ns}/pods", pod)
    path = f"/api/v1/namespaces/{ns}/pods/needs-secret"

    def waiting() -> JSON | None:
        cs = (kube.get(path).get("status", {}).get("containerStatuses") or [{}])[0]
        w: JSON | None = cs.get("state", {}).get("waiting")
        return w if w and w.get("reason") == "CreateContainerConfigError" else None

    w = wait_for("CreateContainerConfigError", waiting, timeout=30)
    assert 'secret "later" not found' in w["message"]
    kube.post(
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "later"},
            "stringData": {"k": "v"},
        },
    )
    wait_for("running once the Secret exists", lambda: ready(kube.get(path)), timeout=30)


def test_sigterm_ignored_is_killed_after_grace_period(agent_env: JSON) -> None:
    kube: Kube = agent_env["kube"]
    ns = agent_env["ns"]
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring SIGTERM', flush=True); time.sleep(600)"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stubborn", "labels": {"app": "stubborn"}},
        "spec": pod_template(
            agent_env,
            "stubborn",
            {"command": ["python", "-c", script]},
            terminationGracePeriodSeconds=2,
        )["spec"],
    }
    kube.post(f"/api/v1/namespaces/{ns}/pods", pod)
    path = f"/api/v1/namespaces/{ns}/pods/stubborn"
    status = wait_for("running", lambda: ready(p := kube.get(path)) and p["status"], timeout=30)
    pid = pid_of(status["containerStatuses"][0])
    t0 = time.monotonic()
    kube.delete(path)
    wait_for("pod finalized", lambda: kube.get_or_none(path) is None, timeout=30)
    elapsed = time.monotonic() - t0
    assert not alive(pid)
    # it outlived SIGTERM, so the agent waited the grace period before SIGKILL
    assert elapsed >= 1.5, elapsed


def test_service_account_token_carries_the_pods_rbac(agent_env: JSON) -> None:
    kube: Kube = agent_env["kube"]
    ns = agent_env["ns"]
    kube.post(
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "pod-reader"}},
    )
    kube.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    kube.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "pod-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "pod-reader", "namespace": ns}],
        },
    )
    # The process uses the kubeconfig the agent hands it (no in-cluster config exists here).
    script = f"""
import json, os
from kubernetes import client, config
config.load_kube_config()
api = client.CoreV1Api()
result = {{"pods": len(api.list_namespaced_pod({ns!r}).items)}}
try:
    api.list_namespaced_secret({ns!r})
    result["secrets"] = "allowed"
except client.ApiException as exc:
    result["secrets"] = exc.status
open(os.environ["LAMBDASINK_TERMINATION_LOG"], "w").write(json.dumps(result))
"""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "rbac-probe", "labels": {"app": "rbac-probe"}},
        "spec": pod_template(
            agent_env,
            "rbac-probe",
            {"command": ["python", "-c", script]},
            restartPolicy="Never",
            serviceAccountName="pod-reader",
        )["spec"],
    }
    kube.post(f"/api/v1/namespaces/{ns}/pods", pod)
    path = f"/api/v1/namespaces/{ns}/pods/rbac-probe"
    status = wait_for(
        "the RBAC probe to finish",
        lambda: (
            (s := kube.get(path).get("status", {})).get("phase") in ("Succeeded", "Failed") and s
        ),
        timeout=60,
    )
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    log = (agent_env["handle"].state_dir / "pods" / f"{ns}_rbac-probe.log").read_text()
    assert status["phase"] == "Succeeded", log
    result = json.loads(terminated["message"])
    assert result["pods"] >= 1
    assert result["secrets"] == 403
    assert "KUBECONFIG" not in os.environ or os.environ["KUBECONFIG"] not in log


def test_agent_stop_stops_processes(agent_env: JSON, stack: Any) -> None:
    """Stopping the agent (make demo-down) leaves no pod process behind."""
    kube: Kube = agent_env["kube"]
    ns = agent_env["ns"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sleeper", "labels": {"app": "sleeper"}},
        "spec": pod_template(
            agent_env, "sleeper", {"command": ["python", "-c", "import time; time.sleep(600)"]}
        )["spec"],
    }
    kube.post(f"/api/v1/namespaces/{ns}/pods", pod)
    path = f"/api/v1/namespaces/{ns}/pods/sleeper"
    status = wait_for("running", lambda: ready(p := kube.get(path)) and p["status"], timeout=30)
    pid = pid_of(status["containerStatuses"][0])
    assert control.stop(node=agent_env["node"], state_dir=agent_env["state_dir"])
    assert not alive(pid)
    # start it again for the remaining tests and the fixture's cleanup
    handle = control.start(
        Path(stack.kubeconfig),
        node=agent_env["node"],
        state_dir=agent_env["state_dir"],
        extra_args=[
            "--namespace",
            ns,
            "--node-label",
            f"{NODE_LABEL}={agent_env['suffix']}",
            "--delete-node-on-exit",
        ],
    )
    agent_env["handle"] = handle
    # the re-started agent adopts the pod bound to its node and runs it again
    wait_for(
        "the pod to run again",
        lambda: ready(p := kube.get(path)) and pid_of(p["status"]["containerStatuses"][0]) != pid,
        timeout=30,
    )
    try:
        kube.delete(path)
    except KubeError as exc:
        assert exc.status == 404


def test_failing_liveness_probe_restarts_the_container(agent_env: JSON) -> None:
    kube: Kube = agent_env["kube"]
    ns = agent_env["ns"]
    # nothing listens on the declared port, so the liveness probe fails
    container = {
        "command": ["python", "-c", "import time; time.sleep(600)"],
        "ports": [{"name": "health", "containerPort": 9999}],
        "livenessProbe": {
            "tcpSocket": {"port": "health"},
            "periodSeconds": 1,
            "failureThreshold": 2,
        },
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "unhealthy", "labels": {"app": "unhealthy"}},
        "spec": pod_template(agent_env, "unhealthy", container, terminationGracePeriodSeconds=1)[
            "spec"
        ],
    }
    kube.post(f"/api/v1/namespaces/{ns}/pods", pod)
    path = f"/api/v1/namespaces/{ns}/pods/unhealthy"

    def restarted() -> JSON | None:
        cs = (kube.get(path).get("status", {}).get("containerStatuses") or [{}])[0]
        return dict(cs) if cs.get("restartCount", 0) >= 1 and cs.get("lastState") else None

    cs = wait_for("a liveness restart", restarted, timeout=60)
    terminated = cs["lastState"]["terminated"]
    assert terminated["exitCode"] == 143  # SIGTERM from the agent
    log = (agent_env["handle"].state_dir / "node-agent" / f"{agent_env['node']}.log").read_text()
    assert "Liveness probe failed" in log
    kube.delete(path)


def test_secret_volume_files_are_reachable_at_rewritten_paths(agent_env: JSON) -> None:
    """A Secret volume is written under the pod's directory and paths naming its mountPath
    (alone or inside a JSON document, as the worker's config does) point there."""
    kube: Kube = agent_env["kube"]
    ns = agent_env["ns"]
    kube.post(
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "tls-files"},
            "stringData": {"tls.crt": "CERT-DATA", "ignored": "x"},
        },
    )
    script = (
        "import json, os; cfg = json.loads(os.environ['APP_CONFIG']); "
        "data = open(cfg['certFile']).read(); "
        "open(os.environ['LAMBDASINK_TERMINATION_LOG'], 'w').write(data + '|' + cfg['certFile'])"
    )
    container = {
        "command": ["python", "-c", script],
        "env": [{"name": "APP_CONFIG", "value": '{"certFile": "/etc/app/tls/tls.crt"}'}],
        "volumeMounts": [{"name": "tls", "mountPath": "/etc/app/tls", "readOnly": True}],
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "volumes", "labels": {"app": "volumes"}},
        "spec": pod_template(
            agent_env,
            "volumes",
            container,
            restartPolicy="Never",
            volumes=[
                {
                    "name": "tls",
                    "secret": {
                        "secretName": "tls-files",
                        "items": [{"key": "tls.crt", "path": "tls.crt"}],
                    },
                }
            ],
        )["spec"],
    }
    kube.post(f"/api/v1/namespaces/{ns}/pods", pod)
    path = f"/api/v1/namespaces/{ns}/pods/volumes"
    status = wait_for(
        "the volume reader to finish",
        lambda: (
            (s := kube.get(path).get("status", {})).get("phase") in ("Succeeded", "Failed") and s
        ),
        timeout=30,
    )
    message = status["containerStatuses"][0]["state"]["terminated"].get("message", "")
    assert status["phase"] == "Succeeded", message
    content, used_path = message.split("|")
    assert content == "CERT-DATA"
    host_dir = agent_env["handle"].state_dir / "pods" / f"{ns}_volumes" / "volumes" / "tls"
    assert used_path == str(host_dir / "tls.crt")
    assert not (host_dir / "ignored").exists()  # only the listed items
