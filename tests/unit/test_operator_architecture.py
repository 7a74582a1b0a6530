"""The operator's thin handlers. Its import layering (one API module, pure builders) is checked
by the import-linter contracts in pyproject.toml (`make lint`)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "lambdasink_operator"


def test_handlers_do_not_build_manifests_inline() -> None:
    source = (PACKAGE / "handlers.py").read_text()
    for literal in ('"apps/v1"', '"Deployment"', '"containers"', '"conditions"'):
        assert literal not in source
