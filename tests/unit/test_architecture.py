"""Import invariants from ARCHITECTURE.md, checked on the source (AST), not by importing.

The pure modules (serializer, batcher, record, config) must import neither Pulsar nor AWS
libraries, directly or through another module of the runtime package.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "runtime" / "lambdasink_runtime"
PURE = ("serializer", "batcher", "record", "config")
FORBIDDEN = ("pulsar", "_pulsar", "boto3", "botocore")


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(top-level external packages, sibling runtime modules) that `module` imports."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    external: set[str] = set()
    siblings: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top == "lambdasink_runtime":
                    siblings.add(alias.name.split(".")[1] if "." in alias.name else "__init__")
                else:
                    external.add(top)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from .x import y
                if node.module:
                    siblings.add(node.module.split(".")[0])
                else:
                    siblings.update(alias.name for alias in node.names)
            elif node.module:
                top = node.module.split(".")[0]
                if top == "lambdasink_runtime":
                    rest = node.module.split(".")[1:]
                    if rest:
                        siblings.add(rest[0])
                    else:
                        siblings.update(alias.name for alias in node.names)
                else:
                    external.add(top)
    return external, siblings


def closure(module: str) -> dict[str, set[str]]:
    """Every runtime module reachable from `module`, with its external imports."""
    seen: dict[str, set[str]] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or not (PACKAGE / f"{name}.py").is_file():
            continue
        external, siblings = imports_of(name)
        seen[name] = external
        todo.extend(siblings)
    return seen


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_neither_pulsar_nor_aws(module: str) -> None:
    assert (PACKAGE / f"{module}.py").is_file(), f"{module}.py is missing"
    reached = closure(module)
    offenders = {
        name: sorted(ext & set(FORBIDDEN)) for name, ext in reached.items() if ext & set(FORBIDDEN)
    }
    assert offenders == {}, f"{module} reaches Pulsar/AWS imports via {offenders}"


def test_the_checker_sees_forbidden_imports() -> None:
    """The AST walk finds what it must find (guards against a checker that sees nothing)."""
    external, _ = imports_of("consumer")
    assert "pulsar" in external
    _, siblings = imports_of("serializer")
    assert {"config", "record", "value_codecs", "item_v2", "payload_v1"} <= siblings
    external, _ = imports_of("value_codecs")
    assert "fastavro" in external
    reached = closure("serializer")
    assert {"config", "record", "errors", "timefmt", "json_text", "avro_values"} <= set(reached)
    assert "fastavro" in set().union(*reached.values())


def test_serializer_uses_only_stdlib_and_fastavro() -> None:
    allowed_third_party = {"fastavro", "yaml"}  # yaml reached through config
    for name, external in closure("serializer").items():
        third_party = {e for e in external if e not in sys.stdlib_module_names}
        assert third_party <= allowed_third_party, (name, third_party)
