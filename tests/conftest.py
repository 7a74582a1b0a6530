"""Shared fixtures: the local real stack (`dev/stack up`) as read from .stack/stack.json.

Tests that need the stack FAIL when it is not up, with a message saying how to start it (never
skip): cluster and e2e tests always, integration tests through the stack fixtures they use (some
integration tests only run processes or build tools). Unit tests use none of this.

A test's folder is its layer: tests/<layer>/ carries exactly the marker <layer> (unit: none), so
`pytest tests/unit` and `-m integration` select the same tests; collection fails otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.stack import (
    LambdaFaults,
    LambdaFunctions,
    Recorder,
    Stack,
    StackNotUp,
    lambda_client,
    load_stack,
)

pytest_plugins = ("pytester",)  # tests/unit/test_layers.py runs this file's hook on a scratch tree

LAYER_MARKERS = ("integration", "cluster", "e2e")
STACK_ALWAYS = ("cluster", "e2e")
TESTS = Path(__file__).resolve().parent


def layer_mismatches(items: list[pytest.Item]) -> list[str]:
    """Tests whose layer markers are not exactly their folder's (tests/unit: none)."""
    wrong = []
    for item in items:
        try:
            folder = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:
            continue  # not under tests/
        expected = {folder} if folder in LAYER_MARKERS else set()
        marked = {m for m in LAYER_MARKERS if item.get_closest_marker(m)}
        if marked != expected:
            wrong.append(
                f"{item.nodeid}: marked {sorted(marked)}, its folder wants {sorted(expected)}"
            )
    return wrong


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = layer_mismatches(items)
    if wrong:
        raise pytest.UsageError(
            "a test's folder and its marker disagree (move it or mark it):\n  " + "\n  ".join(wrong)
        )


@pytest.fixture(autouse=True)
def _stack_required(request: pytest.FixtureRequest) -> None:
    """Fail (not skip) a cluster or e2e test early when the stack is not up."""
    if any(request.node.get_closest_marker(m) for m in STACK_ALWAYS):
        request.getfixturevalue("stack")


@pytest.fixture(scope="session")
def stack() -> Stack:
    """Parsed .stack/stack.json (a dict with attribute shortcuts such as `.kubeconfig`);
    fails the test if the stack is not up."""
    try:
        return load_stack()
    except StackNotUp as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def pulsar_service_url(stack: dict[str, Any]) -> str:
    return str(stack["pulsar"]["serviceUrl"])


@pytest.fixture(scope="session")
def pulsar_admin_url(stack: dict[str, Any]) -> str:
    return str(stack["pulsar"]["adminUrl"])


@pytest.fixture(scope="session")
def admin_kubeconfig(stack: dict[str, Any]) -> Path:
    return Path(stack["kubernetes"]["kubeconfig"])


@pytest.fixture(scope="session")
def kubectl_path(stack: dict[str, Any]) -> str:
    return str(stack["bin"]["kubectl"])


@pytest.fixture(scope="session")
def helm_path(stack: dict[str, Any]) -> str:
    return str(stack["bin"]["helm"])


@pytest.fixture(scope="session")
def lambda_endpoint_url(stack: dict[str, Any]) -> str:
    return str(stack["lambda"]["endpointUrl"])


@pytest.fixture
def lambda_client_factory(stack: dict[str, Any]) -> Iterator[Any]:
    """lambda_client_factory(**botocore_config) -> boto3 Lambda client on the stack (botocore
    retries off unless `retries` is given); clients are closed after the test."""
    clients: list[Any] = []

    def make(**config: Any) -> Any:
        client = lambda_client(stack, **config)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def lambda_functions(stack: Stack) -> Iterator[LambdaFunctions]:
    """Create Lambda functions for this test only: `lambda_functions.create("echo.handler")`
    returns a unique name; they are removed (with their records) after the test."""
    fns = LambdaFunctions(stack.lambda_control_url, stack.record_dir)
    yield fns
    fns.cleanup()


@pytest.fixture
def recorder(lambda_functions: LambdaFunctions) -> Recorder:
    """A recording function of this test's own: invoke `recorder.function`, read
    `recorder.entries()` / `wait_for(n)`. (The shared `recorder` function stays untouched.)"""
    return lambda_functions.recorder()


@pytest.fixture
def lambda_faults(stack: Stack) -> Iterator[LambdaFaults]:
    """Fault injection / added latency on the Lambda gateway; what the test injected is
    removed afterwards. Inject only on functions the test created (`lambda_functions`)."""
    faults = LambdaFaults(stack.lambda_control_url)
    yield faults
    faults.cleanup()
