"""The operator's layering: one API module, pure builders, thin handlers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "lambdasink_operator"
API_CLIENTS = {"kubernetes", "urllib3", "kopf", "aiohttp"}


def full_imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def imports(module: str) -> set[str]:
    return {name.split(".")[0] for name in full_imports(module)}


def test_only_kube_imports_the_kubernetes_client() -> None:
    """drift may use the library's pure quantity parser; nothing else but kube touches it."""
    modules = sorted(p.stem for p in PACKAGE.glob("*.py"))
    users = {
        m: sorted(n for n in full_imports(m) if n.split(".")[0] == "kubernetes") for m in modules
    }
    assert {m: names for m, names in users.items() if names} == {
        "drift": ["kubernetes.utils"],
        "kube": users["kube"],
    }
    assert users["kube"]


def test_builders_and_conditions_are_pure() -> None:
    for module in ("spec", "manifests", "conditions", "drift"):
        clients = API_CLIENTS - {"kubernetes"} if module == "drift" else API_CLIENTS
        assert not imports(module) & clients, module


def test_handlers_do_not_build_manifests_inline() -> None:
    source = (PACKAGE / "handlers.py").read_text()
    for literal in ('"apps/v1"', '"Deployment"', '"containers"', '"conditions"'):
        assert literal not in source
