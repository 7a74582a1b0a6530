"""Fixtures of the runtime-process integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runtime_support import Runtimes, pulsar_client
from tests.stack import LambdaFunctions, Stack


@pytest.fixture
def runtimes(stack: Stack, tmp_path: Path, lambda_functions: LambdaFunctions) -> Iterator[Runtimes]:
    """Runtime processes of the test; stopped before the test's Lambda functions are removed."""
    rt = Runtimes(stack, tmp_path)
    yield rt
    rt.cleanup()


@pytest.fixture
def client(stack: Stack) -> Iterator[Any]:
    c = pulsar_client(stack)
    yield c
    c.close()
