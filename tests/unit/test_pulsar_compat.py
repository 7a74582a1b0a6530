"""pulsar_compat's import-time check of pulsar-client's internals, on the installed client.

Receiving through either path against a real broker is in
tests/integration/test_consumer_public_api.py. Here the check itself: it accepts the installed
client, and it notices a changed or missing internal (simulated by patching the real `_pulsar`
classes, as no installable client release has such a change).
"""

from __future__ import annotations

import sys
from typing import Any

import _pulsar
import pytest

from lambdasink_runtime import pulsar_compat


def test_the_installed_client_fits_the_fast_path() -> None:
    assert pulsar_compat.PRIVATE_API_PROBLEM is None
    assert pulsar_compat.private_api_problem() is None


def test_a_changed_signature_is_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    def batch_receive(self: Any, max_messages: int) -> list[Any]:
        """batch_receive(self: _pulsar.Consumer, arg0: int) -> list[_pulsar.Message]"""
        return []

    monkeypatch.setattr(_pulsar.Consumer, "batch_receive", batch_receive)
    problem = pulsar_compat.private_api_problem()
    assert problem == "_pulsar.Consumer.batch_receive has another signature than expected"


def test_a_missing_internal_is_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(_pulsar.Client, "get_schema_info")
    assert pulsar_compat.private_api_problem() == "_pulsar.Client.get_schema_info is missing"


def test_a_missing_module_is_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "_pulsar", None)  # what `import` then refuses
    problem = pulsar_compat.private_api_problem()
    assert problem is not None and problem.startswith("no _pulsar module")


class _Versioned:
    """Stand-in for a received `pulsar.Message`: only `schema_version()` is read, and a real
    message with a chosen version needs a broker (the integration tests have those)."""

    def __init__(self, version: str) -> None:
        self._version = version

    def schema_version(self) -> str:
        return self._version


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", -1), ("\x00" * 8, 0), ("\x00" * 7 + "\x07", 7), ("\x00" * 6 + "\x01\x00", 256)],
)
def test_bytes_version(raw: str, expected: int) -> None:
    assert pulsar_compat.bytes_version(_Versioned(raw)) == expected
