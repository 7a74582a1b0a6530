"""Fixtures for the operator's tests on the local stack's real kube-apiserver + controller-manager.

The stack comes from `dev/stack up` (details in .stack/stack.json). These tests never skip: a
missing stack is a failure that says how to start it. Each test gets its own namespace and its
own operator process (`lambdasink-operator --namespace <ns> --standalone`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cluster_support import CRD, Cluster, Operator


@pytest.fixture(scope="session")
def cluster(stack: dict[str, Any]) -> Cluster:
    """kubectl on the stack's kube-apiserver (the shared `stack` fixture fails when it is down)."""
    kube = stack.get("kubernetes") or {}
    c = Cluster(
        kubeconfig=kube["kubeconfig"],
        kubectl_bin=kube.get("kubectl") or stack["bin"]["kubectl"],
        server=kube["server"],
    )
    probe = c.kubectl("version", "-o", "json", check=False)
    if probe.returncode != 0:
        pytest.fail(
            f"kube-apiserver at {c.server} does not answer ({probe.stderr.strip()}); "
            "run `.venv/bin/python dev/stack up`",
            pytrace=False,
        )
    return c


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> str:
    """The LambdaSink CRD, installed from deploy/crds and Established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/lambdasinks.lambdasink.dev"
    )
    return "lambdasinks.lambdasink.dev"


@pytest.fixture
def namespace(cluster: Cluster, crd: str, request: pytest.FixtureRequest) -> Iterator[str]:
    base = "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())[:40].strip("-")
    name = f"ls-{base}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def start_operator(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., Operator]]:
    started: list[Operator] = []

    def start(kubeconfig: str | None = None, extra_args: Sequence[str] = ()) -> Operator:
        op = Operator(
            kubeconfig or cluster.kubeconfig,
            namespace,
            tmp_path / f"operator-{len(started)}.log",
            extra_args,
        )
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
        # shown by pytest only when the test failed
        print(f"----- {op.log_path} (last 80 lines) -----")
        print("\n".join(op.log().splitlines()[-80:]))


@pytest.fixture
def operator(start_operator: Callable[..., Operator]) -> Operator:
    return start_operator()
