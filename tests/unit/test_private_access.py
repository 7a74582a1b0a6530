"""Only `pulsar_compat` reaches into pulsar-client's internals, and nothing into boto3's.

Checked on the source (AST) of every runtime module: an `import _pulsar`, or a private attribute
of the client libraries' objects (`x._consumer`, `x._client`, `x._message`, `x._session` on
anything but `self`), outside pulsar_compat.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "runtime" / "lambdasink_runtime"
ALLOWED = "pulsar_compat.py"
PRIVATE_ATTRIBUTES = {"_consumer", "_client", "_message", "_session"}


def private_uses(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] == "_pulsar"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "_pulsar":
            found.append(f"from {node.module} import")
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id == "self"):
                found.append(f"line {node.lineno}: .{node.attr}")
    return found


def test_private_internals_only_in_pulsar_compat() -> None:
    offenders = {
        path.name: uses
        for path in sorted(PACKAGE.glob("*.py"))
        if path.name != ALLOWED and (uses := private_uses(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_checker_sees_private_uses() -> None:
    """Guards against a checker that sees nothing: pulsar_compat itself has such uses."""
    assert private_uses((PACKAGE / ALLOWED).read_text(encoding="utf-8"))
    assert private_uses("core = session._session\nraw = c._consumer\nself._client = 1\n") == [
        "line 1: ._session",
        "line 2: ._consumer",
    ]
