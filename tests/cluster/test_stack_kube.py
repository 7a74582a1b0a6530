"""The local stack's Kubernetes API (dev/stack): kube-apiserver with RBAC and the controllers
that the operator's tests rely on."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from tests.stack import Stack, kubectl, sa_kubeconfig

pytestmark = pytest.mark.cluster


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_kube_api_answers_with_the_admin_kubeconfig_and_controllers_run(stack: Stack) -> None:
    version = json.loads(kubectl(stack, "version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == stack["kubernetes"]["version"]
    ns = unique("stack-kube")
    kubectl(stack, "create", "namespace", ns)
    try:
        kubectl(
            stack,
            "create",
            "deployment",
            "web",
            "--image=example.invalid/web:1",
            "--replicas=2",
            "-n",
            ns,
        )
        # kube-controller-manager: Deployment -> ReplicaSet -> Pods (they never start: no registry
        # is reachable, so the node cannot pull example.invalid).
        kubectl(
            stack,
            "wait",
            "--for=jsonpath={.status.replicas}=2",
            "deployment/web",
            "-n",
            ns,
            "--timeout=60s",
        )
        pods = json.loads(kubectl(stack, "get", "pods", "-n", ns, "-o", "json").stdout)["items"]
        assert len(pods) == 2
        assert all(p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet" for p in pods)
    finally:
        kubectl(stack, "delete", "namespace", ns, "--wait=false")


def test_service_account_kubeconfig_is_limited_by_rbac(stack: Stack, tmp_path: Path) -> None:
    ns = unique("stack-rbac")
    kubectl(stack, "create", "namespace", ns)
    try:
        kubectl(stack, "create", "serviceaccount", "limited", "-n", ns)
        kubectl(
            stack,
            "create",
            "role",
            "read-configmaps",
            "--verb=get,list",
            "--resource=configmaps",
            "-n",
            ns,
        )
        kubectl(
            stack,
            "create",
            "rolebinding",
            "limited-read",
            "--role=read-configmaps",
            f"--serviceaccount={ns}:limited",
            "-n",
            ns,
        )
        kubectl(stack, "create", "configmap", "visible", "--from-literal=a=b", "-n", ns)
        cfg = sa_kubeconfig(ns, "limited", tmp_path / "limited.kubeconfig")

        who = kubectl(stack, "auth", "whoami", "-o", "json", kubeconfig=cfg)
        assert json.loads(who.stdout)["status"]["userInfo"]["username"] == (
            f"system:serviceaccount:{ns}:limited"
        )
        allowed = kubectl(
            stack, "get", "configmap", "visible", "-n", ns, "-o", "name", kubeconfig=cfg
        )
        assert allowed.stdout.strip() == "configmap/visible"
        for args in (
            ["get", "secrets", "-n", ns],
            ["get", "configmaps", "-n", "default"],
            ["create", "configmap", "nope", "-n", ns],
            ["get", "namespaces"],
        ):
            denied = kubectl(stack, *args, kubeconfig=cfg, check=False)
            assert denied.returncode != 0, args
            assert "forbidden" in denied.stderr.lower(), denied.stderr
    finally:
        kubectl(stack, "delete", "namespace", ns, "--wait=false")
