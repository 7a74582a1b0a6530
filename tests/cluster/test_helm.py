"""The Helm chart against the local stack's real kube-apiserver + kube-controller-manager.

- every ci/*-values.yaml rendered and validated by a server-side dry run;
- `helm install`, then the operator run as a subprocess with a kubeconfig for the chart's
  ServiceAccount (not admin), with the args and env of the chart's Deployment: it reconciles a
  LambdaSink end to end, so the chart's RBAC is sufficient; `kubectl auth can-i` shows what that
  identity may not do;
- `helm upgrade` (log level, watched namespaces) and `helm uninstall` (objects gone, CRD kept).

The chart's operator pod is pinned to a node that does not exist (so the stack's node does not run
a second operator next to ours) and stays Pending, like the worker pods.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_support import EXAMPLES, Cluster, Operator, denied_lines, free_port
from tests.helm_support import (
    CHART,
    CI_VALUES,
    REPO,
    helm,
    helm_binary,
    kube_version,
    pinned,
    template_text,
)
from tests.stack import sa_kubeconfig, wait_for

pytestmark = pytest.mark.cluster

TOKEN = secrets.token_hex(3)
RELEASE = f"lsh{TOKEN}"
REL_NS = f"lshelm-sys-{TOKEN}"  # where the operator, its ServiceAccount and release live
WATCHED = f"lshelm-a-{TOKEN}"  # watched from the install on
OTHER = f"lshelm-b-{TOKEN}"  # watched only between the two upgrades
CI_NAMESPACES = ("lambdasink-ci-a", "lambdasink-ci-b")  # named by ci/*-values.yaml
SA = f"{RELEASE}-lambda-sink"
RUNTIME_IMAGE = f"lambda-sink/runtime:helm-{TOKEN}"
# Every install/upgrade: keep the chart's own operator pod unscheduled (see the module
# docstring); a runtime image only this release's operator uses, so a worker Deployment carrying
# it was written by our operator and not by another one sharing the apiserver (e.g. a cluster-wide
# operator of a concurrent e2e run); the operator's metrics, to read its reconcile counters.
BASE = [
    "--set", "nodeSelector.lambdasink\\.dev/helm-test=no-such-node",
    "--set", f"runtimeImage.tag=helm-{TOKEN}",
    "--set", "metrics.enabled=true",
]  # fmt: skip


def kubectl_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(cluster.kubectl(*args, "-o", "json").stdout)
    return doc


def exists(cluster: Cluster, *args: str) -> bool:
    out = cluster.kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
    assert out.returncode == 0, out.stderr
    return bool(out.stdout.strip())


def ensure_namespace(cluster: Cluster, name: str) -> None:
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))


@pytest.fixture(scope="module")
def helm_env(cluster: Cluster) -> dict[str, str]:
    """helm talks to the stack as admin (the operator never does)."""
    return {**os.environ, "KUBECONFIG": cluster.kubeconfig}


@pytest.fixture(scope="module")
def namespaces(cluster: Cluster, crd: str) -> Iterator[None]:
    for ns in (REL_NS, WATCHED, OTHER, *CI_NAMESPACES):
        ensure_namespace(cluster, ns)
    yield
    for ns in (REL_NS, WATCHED, OTHER, *CI_NAMESPACES):
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def service_monitor_crd(cluster: Cluster) -> Iterator[None]:
    """A minimal monitoring.coreos.com ServiceMonitor CRD (schema: preserve unknown fields), so
    the dry run sends the chart's ServiceMonitors through the real API path instead of skipping
    them. Removed afterwards only if this test created it."""
    name = "servicemonitors.monitoring.coreos.com"
    created = not exists(cluster, "crd", name)
    if created:
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": "monitoring.coreos.com",
                "scope": "Namespaced",
                "names": {
                    "kind": "ServiceMonitor",
                    "listKind": "ServiceMonitorList",
                    "plural": "servicemonitors",
                    "singular": "servicemonitor",
                },
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(crd))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
    yield
    if created:
        cluster.kubectl("delete", "crd", name, "--wait=false", check=False)


def test_helm_lint() -> None:
    for values in [None, *CI_VALUES]:
        args = ["-f", str(values)] if values else []
        out = helm("lint", "--strict", str(CHART), "--kube-version", kube_version(), *args)
        assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_server_side_dry_run(
    cluster: Cluster, namespaces: None, service_monitor_crd: None, values: Path
) -> None:
    """Every object of every ci/ combination, CRD included, accepted by the real apiserver."""
    rendered = template_text([values], release=RELEASE, namespace=REL_NS).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert docs
    out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered)
    applied = [line for line in out.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(docs), out.stdout


def test_gitops_render_step_with_helm_defaults(cluster: Cluster, namespaces: None) -> None:
    """`helm template <chart> | kubectl apply --dry-run=server -f -`, exactly as a GitOps
    pipeline renders: no --kube-version, so helm's built-in capabilities must satisfy the
    chart's kubeVersion (a helm built without upstream's ldflags claims v1.20 and fails)."""
    pipeline = (
        f"{shlex.quote(helm_binary())} template {RELEASE} deploy/helm/lambda-sink"
        f" --namespace {REL_NS}"
        f" | {shlex.quote(cluster.kubectl_bin)} apply --dry-run=server -f -"
    )
    out = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipeline],
        cwd=REPO,
        env={**os.environ, "KUBECONFIG": cluster.kubeconfig},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    applied = [line for line in out.stdout.splitlines() if line.endswith("(server dry run)")]
    assert f"deployment.apps/{SA} created (server dry run)" in applied, out.stdout
    rendered = helm("template", RELEASE, str(CHART), "--namespace", REL_NS).stdout
    assert len(applied) == len([d for d in yaml.safe_load_all(rendered) if d]), out.stdout


def test_helm_and_kubectl_report_the_pinned_versions(cluster: Cluster) -> None:
    """Both built with the upstream version ldflags: they say what release they are."""
    info = helm("version", "--template", "{{.Version}} {{.GitCommit}} {{.GitTreeState}}")
    assert info.stdout.split() == [pinned("HELM_VERSION"), pinned("HELM_GIT_COMMIT"), "clean"]
    client = json.loads(cluster.kubectl("version", "--client", "-o", "json").stdout)
    version = client["clientVersion"]
    assert version["gitVersion"] == pinned("KUBERNETES_VERSION")
    assert version["gitCommit"] == pinned("KUBERNETES_GIT_COMMIT")
    assert version["gitTreeState"] == "clean"
    server = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert (server["gitVersion"], server["gitCommit"]) == (
        pinned("KUBERNETES_VERSION"),
        pinned("KUBERNETES_GIT_COMMIT"),
    )


def can_i(cluster: Cluster, kubeconfig: Path, *args: str) -> bool:
    out = cluster.kubectl("auth", "can-i", *args, kubeconfig=str(kubeconfig), check=False)
    assert out.stdout.strip() in ("yes", "no"), (args, out.stdout, out.stderr)
    return out.stdout.strip() == "yes"


class ChartOperator(Operator):
    """`lambdasink-operator` with the args and env of the chart's Deployment, as the SA."""

    def __init__(self, cluster: Cluster, kubeconfig: Path, log_path: Path) -> None:
        deployment = kubectl_json(cluster, "get", "deployment", SA, "-n", REL_NS)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        self.args: list[str] = list(container["args"])
        self.health_port = free_port()
        self.metrics_port = free_port()
        # In the pod the endpoints listen on 0.0.0.0:8080 and :9090; here, free loopback ports.
        local = {
            "--liveness=": f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
            "--metrics-port=": f"--metrics-port={self.metrics_port}",
        }
        args = [next((v for k, v in local.items() if a.startswith(k)), a) for a in self.args]
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        for var in container["env"]:
            if "value" in var:
                env[var["name"]] = var["value"]
            elif var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace":
                env[var["name"]] = REL_NS
            else:
                env[var["name"]] = "lambda-sink-operator-test"
        self._start(args, env, log_path)

    def counter(self, name: str) -> float:
        """Sum of a counter on the operator's /metrics (0 when absent)."""
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in self.metrics().splitlines()
            if line.startswith(name) and not line.startswith("#")
        )


def local_sink(stack: dict[str, Any]) -> list[dict[str, Any]]:
    """examples/aws-credentials-secret.yaml + examples/lambdasink-local.yaml, pointed at the
    stack's actual Pulsar and Lambda endpoints."""
    secret = yaml.safe_load((EXAMPLES / "aws-credentials-secret.yaml").read_text())
    sink = yaml.safe_load((EXAMPLES / "lambdasink-local.yaml").read_text())
    sink["spec"]["pulsar"]["serviceUrl"] = stack["pulsar"]["serviceUrl"]
    sink["spec"]["pulsar"]["adminUrl"] = stack["pulsar"]["adminUrl"]
    sink["spec"]["sinkConfig"]["awsEndpoint"] = stack["lambda"]["endpointUrl"]
    return [secret, sink]


def worker_image(cluster: Cluster, namespace: str, name: str) -> str | None:
    out = cluster.kubectl(
        "get", "deployment", f"lambdasink-{name}", "-n", namespace, "--ignore-not-found",
        "-o", "jsonpath={.spec.template.spec.containers[0].image}",
    )  # fmt: skip
    return out.stdout.strip() or None


def reconciled(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    """The LambdaSink once the operator wrote conditions for its current generation."""
    sink = kubectl_json(cluster, "get", "lambdasinks.lambdasink.dev", name, "-n", namespace)
    status = sink.get("status") or {}
    if status.get("observedGeneration") != sink["metadata"]["generation"]:
        return None
    return sink if status.get("conditions") else None


def test_release_lifecycle(
    cluster: Cluster,
    namespaces: None,
    helm_env: dict[str, str],
    stack: dict[str, Any],
    tmp_path: Path,
) -> None:
    chart = str(CHART)
    install = helm(
        "install", RELEASE, chart, "-n", REL_NS, "--set", f"watchNamespaces={{{WATCHED}}}",
        *BASE, env=helm_env,
    )  # fmt: skip
    operator: ChartOperator | None = None
    try:
        # NOTES tell the user what to do next, in the watched namespace.
        assert f"kubectl -n {WATCHED} apply -f examples/" in install.stdout
        assert "STATUS: deployed" in install.stdout

        # --- what the install created --------------------------------------------------------
        assert exists(cluster, "serviceaccount", SA, "-n", REL_NS)
        assert exists(cluster, "deployment", SA, "-n", REL_NS)
        assert exists(cluster, "role", f"{SA}-operator", "-n", WATCHED)
        assert exists(cluster, "rolebinding", f"{SA}-operator", "-n", WATCHED)
        assert not exists(cluster, "role", f"{SA}-operator", "-n", OTHER)
        assert not exists(cluster, "role", f"{SA}-operator", "-n", REL_NS)
        assert not exists(cluster, "clusterrole", f"{SA}-operator")
        assert exists(cluster, "crd", "lambdasinks.lambdasink.dev")

        # --- the chart's identity: enough, and no more --------------------------------------
        kubeconfig = sa_kubeconfig(REL_NS, SA, tmp_path / "sa.kubeconfig")
        whoami = cluster.kubectl("auth", "whoami", "-o", "json", kubeconfig=str(kubeconfig))
        assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == (
            f"system:serviceaccount:{REL_NS}:{SA}"
        )
        may = [
            ("get", "secrets", "-n", WATCHED),
            ("watch", "lambdasinks.lambdasink.dev", "-n", WATCHED),
            ("patch", "lambdasinks.lambdasink.dev", "--subresource=status", "-n", WATCHED),
            ("create", "deployments.apps", "-n", WATCHED),
            ("list", "pods", "-n", WATCHED),
            ("create", "events", "-n", WATCHED),
        ]
        for args in may:
            assert can_i(cluster, kubeconfig, *args), args
        may_not = [
            ("get", "secrets", "-n", OTHER),  # a namespace it does not watch
            ("get", "secrets", "-n", REL_NS),  # its own namespace is not watched either
            ("list", "secrets", "--all-namespaces"),
            ("delete", "namespaces"),
            ("create", "clusterroles.rbac.authorization.k8s.io"),
            ("create", "rolebindings.rbac.authorization.k8s.io", "-n", WATCHED),
            ("delete", "deployments.apps", "-n", WATCHED),
            ("update", "secrets", "-n", WATCHED),
            ("create", "pods", "-n", WATCHED),
            ("list", "customresourcedefinitions.apiextensions.k8s.io"),
            ("impersonate", "serviceaccounts", "-n", WATCHED),
        ]
        for args in may_not:
            assert not can_i(cluster, kubeconfig, *args), args

        # --- the operator, as the chart runs it, reconciles a LambdaSink ------------------------
        operator = first = ChartOperator(cluster, kubeconfig, tmp_path / "operator-1.log")
        assert f"--namespace={WATCHED}" in operator.args
        assert "--standalone" in operator.args
        docs = local_sink(stack)
        name = docs[1]["metadata"]["name"]
        for ns in (WATCHED, OTHER):
            for doc in docs:
                cluster.apply(doc, ns)
        sink = wait_for(
            "the LambdaSink's status", lambda: reconciled(cluster, WATCHED, name), timeout=90
        )
        for cond in sink["status"]["conditions"]:
            assert {"type", "status", "reason", "message", "observedGeneration"} <= set(cond)
        # Our operator (the only one with RUNTIME_IMAGE) wrote the worker Deployment ...
        wait_for(
            "the worker Deployment written by the chart's operator",
            lambda: worker_image(cluster, WATCHED, name) == RUNTIME_IMAGE,
            timeout=90,
        )
        # ... and its passes succeeded, status patch included (a 403 would count as an error).
        wait_for(
            "a successful reconcile",
            lambda: first.counter('lambdasink_operator_reconciles_total{result="ok"}') >= 1,
        )
        assert operator.counter('lambdasink_operator_reconciles_total{result="error"}') == 0
        # The unwatched namespace: our operator wrote nothing there.
        assert worker_image(cluster, OTHER, name) != RUNTIME_IMAGE
        log = operator.log()
        assert not denied_lines(log), log[-3000:]
        operator.stop()

        # --- helm upgrade: log level and a second watched namespace ---------------------------
        upgrade = helm(
            "upgrade", RELEASE, chart, "-n", REL_NS,
            "--set", f"watchNamespaces={{{WATCHED},{OTHER}}}", "--set", "logLevel=DEBUG",
            *BASE, env=helm_env,
        )  # fmt: skip
        assert "REVISION: 2" in upgrade.stdout
        assert exists(cluster, "role", f"{SA}-operator", "-n", OTHER)
        assert can_i(cluster, kubeconfig, "get", "secrets", "-n", OTHER)
        operator = ChartOperator(cluster, kubeconfig, tmp_path / "operator-2.log")
        assert "--log-level=DEBUG" in operator.args
        assert f"--namespace={OTHER}" in operator.args
        wait_for(
            "the LambdaSink in the newly watched namespace",
            lambda: reconciled(cluster, OTHER, name),
            timeout=90,
        )
        wait_for(
            "the worker Deployment in the newly watched namespace",
            lambda: worker_image(cluster, OTHER, name) == RUNTIME_IMAGE,
            timeout=90,
        )
        assert operator.counter('lambdasink_operator_reconciles_total{result="error"}') == 0
        assert "DEBUG" in operator.log()
        log = operator.log()
        assert not denied_lines(log), log[-3000:]
        operator.stop()

        # ... and back: the Role in OTHER goes, and with it the access.
        helm(
            "upgrade", RELEASE, chart, "-n", REL_NS, "--set", f"watchNamespaces={{{WATCHED}}}",
            *BASE, env=helm_env,
        )  # fmt: skip
        assert not exists(cluster, "role", f"{SA}-operator", "-n", OTHER)
        assert not can_i(cluster, kubeconfig, "get", "secrets", "-n", OTHER)

        # --- helm uninstall: the release's objects go, the CRD and the LambdaSinks stay -------
        helm("uninstall", RELEASE, "-n", REL_NS, "--wait", env=helm_env)
        for args in (
            ("deployment", SA, "-n", REL_NS),
            ("serviceaccount", SA, "-n", REL_NS),
            ("role", f"{SA}-operator", "-n", WATCHED),
            ("rolebinding", f"{SA}-operator", "-n", WATCHED),
        ):
            assert not exists(cluster, *args), args
        assert exists(cluster, "crd", "lambdasinks.lambdasink.dev")
        assert exists(cluster, "lambdasinks.lambdasink.dev", name, "-n", WATCHED)
        # The uninstalled identity has no token any more: the ServiceAccount is gone.
        denied = cluster.kubectl("get", "secrets", "-n", WATCHED, kubeconfig=str(kubeconfig),
                                 check=False)  # fmt: skip
        assert denied.returncode != 0
    finally:
        if operator is not None:
            operator.stop()
            print(f"----- {operator.log_path} (last 60 lines) -----")
            print("\n".join(operator.log().splitlines()[-60:]))
        helm("uninstall", RELEASE, "-n", REL_NS, check=False, env=helm_env)


def test_cluster_wide_install_grants_cluster_role_only_for_the_operator_rules(
    cluster: Cluster, namespaces: None, helm_env: dict[str, str], tmp_path: Path
) -> None:
    """watchAllNamespaces: a ClusterRole, still without RBAC, delete or CRD rights. (No operator
    is started here: cluster-wide it would also serve other suites' LambdaSinks on this
    shared apiserver.)"""
    release = f"{RELEASE}cw"
    sa = f"{release}-lambda-sink"
    helm(
        "install", release, str(CHART), "-n", REL_NS, "--set", "watchAllNamespaces=true",
        *BASE, env=helm_env,
    )  # fmt: skip
    try:
        assert exists(cluster, "clusterrole", f"{sa}-operator")
        assert exists(cluster, "clusterrolebinding", f"{sa}-operator")
        assert not exists(cluster, "role", f"{sa}-operator", "-n", REL_NS)
        deployment = kubectl_json(cluster, "get", "deployment", sa, "-n", REL_NS)
        assert "--all-namespaces" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        kubeconfig = sa_kubeconfig(REL_NS, sa, tmp_path / "sa-cw.kubeconfig")
        assert can_i(cluster, kubeconfig, "list", "secrets", "--all-namespaces")
        assert can_i(cluster, kubeconfig, "watch", "lambdasinks.lambdasink.dev", "--all-namespaces")
        assert can_i(cluster, kubeconfig, "create", "deployments.apps", "-n", OTHER)
        for args in (
            ("delete", "namespaces"),
            ("create", "clusterroles.rbac.authorization.k8s.io"),
            ("delete", "deployments.apps", "-n", OTHER),
            ("list", "customresourcedefinitions.apiextensions.k8s.io"),
            ("update", "secrets", "-n", OTHER),
        ):
            assert not can_i(cluster, kubeconfig, *args), args
    finally:
        helm("uninstall", release, "-n", REL_NS, "--wait", check=False, env=helm_env)
    assert not exists(cluster, "clusterrole", f"{sa}-operator")
    assert not exists(cluster, "clusterrolebinding", f"{sa}-operator")


def test_wrong_value_fails_the_install_before_anything_is_applied(
    cluster: Cluster, namespaces: None, helm_env: dict[str, str]
) -> None:
    release = f"{RELEASE}bad"
    out = helm(
        "install", release, str(CHART), "-n", REL_NS, "--set", "logLevel=LOUD",
        *BASE, check=False, env=helm_env,
    )  # fmt: skip
    assert out.returncode != 0
    assert "logLevel" in out.stderr and "schema" in out.stderr.lower()
    assert helm("status", release, "-n", REL_NS, check=False, env=helm_env).returncode != 0
    assert not exists(cluster, "serviceaccount", f"{release}-lambda-sink", "-n", REL_NS)
