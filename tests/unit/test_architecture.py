"""What the import-linter contracts (pyproject.toml, run by `make lint`) cannot say: the
serializer's whole dependency closure is the standard library plus fastavro and yaml.

The graph is grimp's (import-linter's own), built from the source without importing it.
"""

from __future__ import annotations

import sys
from functools import cache

import grimp

ALLOWED_THIRD_PARTY = {"fastavro", "yaml"}  # yaml reached through config


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("lambdasink_runtime", include_external_packages=True)


def reached_packages(module: str) -> set[str]:
    """Top-level packages outside the runtime that `module` imports, directly or not."""
    upstream = graph().find_upstream_modules(f"lambdasink_runtime.{module}")
    return {m.split(".")[0] for m in upstream if not m.startswith("lambdasink_runtime")}


def test_serializer_uses_only_stdlib_fastavro_and_yaml() -> None:
    third_party = reached_packages("serializer") - set(sys.stdlib_module_names)
    assert third_party <= ALLOWED_THIRD_PARTY


def test_the_graph_sees_external_imports() -> None:
    """The closure finds what it must find (a graph that saw nothing would pass the test above)."""
    assert "fastavro" in reached_packages("serializer")
    assert "pulsar" in reached_packages("consumer")
    assert "fastavro" in reached_packages("value_codecs")
