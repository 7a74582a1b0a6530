"""Session fixtures of the e2e suite: one operator pod (Helm chart, on the stack's real kubelet
node) per module, one namespace per test.

The helpers are dev/demo.py's, so the suite drives exactly what `make demo` does.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import Product, demo, wait_for

E2E_LABEL = "lambdasink.dev/e2e"


@pytest.fixture(scope="module")
def product(stack: Any) -> Iterator[Product]:
    """The chart's operator pod (from the operator image) on the stack's node, shared by the
    module (starting it costs a few seconds)."""
    del stack  # the stack fixture guarantees the local stack (and its node) is up
    st = demo.Stack.load()
    demo.build_images()  # a no-op when the sources did not change since the last build
    demo.import_images()
    demo.ensure_namespace(st, demo.OPERATOR_NS, {E2E_LABEL: "true"})
    demo.install_chart(st)  # watches all namespaces: one namespace per test
    tail = demo.RecordTail(st.record_dir / "recorder.jsonl").start()
    try:
        yield Product(stack=st, tail=tail)
    finally:
        tail.stop()
        wait_for("the e2e namespaces to be deleted", lambda: not _test_namespaces(st), 180)


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
