"""tests/conftest.py's collection rule: a test's folder and its layer marker agree.

Run on a scratch tree with pytester (an in-process pytest with the real conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
INI = """
[pytest]
markers =
    integration: x
    cluster: x
    e2e: x
"""
AGREE = {"unit": [], "integration": ["integration"], "cluster": ["cluster"], "e2e": ["e2e"]}
DISAGREE = {"unit": ["integration"], "integration": [], "cluster": ["integration"]}


def collect(pytester: pytest.Pytester, layout: dict[str, list[str]]) -> pytest.RunResult:
    """One test per folder with these markers; `pytest --collect-only` on the tree."""
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST.read_text())
    for folder, marks in layout.items():
        decorators = "".join(f"@pytest.mark.{m}\n" for m in marks)
        (pytester.path / folder).mkdir()
        (pytester.path / folder / f"test_{folder}_layer.py").write_text(
            f"import pytest\n\n{decorators}def test_one() -> None:\n    assert True\n"
        )
    return pytester.runpytest_inprocess("--collect-only", "-q")


def test_tests_in_their_layer_are_collected(pytester: pytest.Pytester) -> None:
    result = collect(pytester, AGREE)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines_random([f"{f}/test_{f}_layer.py::test_one" for f in AGREE])


def test_a_test_outside_its_layer_fails_collection(pytester: pytest.Pytester) -> None:
    result = collect(pytester, {**DISAGREE, "e2e": ["cluster", "e2e"]})
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines_random(
        ["*a test's folder and its marker disagree*"]
        + [f"*{f}/test_{f}_layer.py::test_one*" for f in [*DISAGREE, "e2e"]]
    )


def test_test_modules_have_unique_basenames() -> None:
    """The test folders are not packages, so pytest imports each file by its basename: two
    files with one name stop the whole run's collection (it happened once, after a merge)."""
    tests = Path(__file__).resolve().parents[1]
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
