"""Session fixtures of the e2e suite: one node agent and one operator (Helm chart) per session,
one namespace per test.

The helpers are dev/demo.py's, so the suite drives exactly what `make demo` does.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import Product, demo, wait_for

from node_agent_lib import control as node_agent

E2E_LABEL = "lambdasink.dev/e2e"


@pytest.fixture(scope="module")
def product(stack: Any) -> Iterator[Product]:
    """Node agent + chart, shared by the e2e module (starting them costs ~20 s).

    Module scope (the suite is one module) so the agent, which binds every pending pod, stops
    before other suites run pods of their own.
    """
    del stack  # the stack fixture guarantees the local stack is up
    st = demo.Stack.load()
    already = node_agent.running(st.state_dir) is not None
    # only pods of the suite's namespaces: other suites' pods stay Pending, as they expect
    handle = demo.start_node_agent(st, ["--namespace-selector", f"{E2E_LABEL}=true"])
    try:
        demo.ensure_namespace(st, demo.OPERATOR_NS, {E2E_LABEL: "true"})
        demo.install_chart(st)  # watches all namespaces: one namespace per test
        tail = demo.RecordTail(st.record_dir / "recorder.jsonl").start()
        try:
            yield Product(stack=st, agent=handle, tail=tail)
        finally:
            tail.stop()
            # the tests' namespaces finish terminating only while the agent finalizes their pods
            wait_for("the e2e namespaces to be deleted", lambda: not _test_namespaces(st), 180)
    finally:
        if not already:
            node_agent.stop(state_dir=st.state_dir)


def _test_namespaces(st: Any) -> list[str]:
    items = st.kubectl_json("get", "namespaces", "-l", f"{E2E_LABEL}=true")["items"]
    return [n["metadata"]["name"] for n in items if n["metadata"]["name"] != demo.OPERATOR_NS]


@pytest.fixture
def namespace(product: Product, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace with the AWS credentials Secret; deleted afterwards (not waited for)."""
    short = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))[:30]
    name = f"e2e-{short.strip('-')}-{uuid.uuid4().hex[:5]}"
    st = product.stack
    demo.ensure_namespace(st, name, {E2E_LABEL: "true"})
    st.apply(demo.aws_secret(st, name))
    yield name
    st.kubectl("delete", "namespace", name, "--wait=false", check=False)
