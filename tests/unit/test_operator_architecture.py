"""The operator's layering: one API module, pure builders, thin handlers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "lambdasink_operator"
API_CLIENTS = {"kubernetes", "urllib3", "kopf", "aiohttp"}


def imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_only_kube_imports_the_kubernetes_client() -> None:
    modules = sorted(p.stem for p in PACKAGE.glob("*.py"))
    users = [m for m in modules if "kubernetes" in imports(m)]
    assert users == ["kube"]


def test_builders_and_conditions_are_pure() -> None:
    for module in ("spec", "manifests", "conditions"):
        assert not imports(module) & API_CLIENTS, module


def test_handlers_do_not_build_manifests_inline() -> None:
    source = (PACKAGE / "handlers.py").read_text()
    for literal in ('"apps/v1"', '"Deployment"', '"containers"', '"conditions"'):
        assert literal not in source
