"""The benchmark package imports and its serializer benchmark runs (tiny N; no timing asserts)."""

from __future__ import annotations

import json

import pytest
from bench import common, invoke_ab, serializer


def test_serializer_benchmark_produces_rows() -> None:
    rows = serializer.run(n=20, rounds=1)

    assert [r.case for r in rows] == [name for name, _, _ in serializer.cases(1)]
    assert all(r.bench == "serializer V2" and r.value is not None for r in rows)
    table = common.table(rows)
    assert table.count("\n") == len(rows) + 1
    json.dumps([r.as_dict() for r in rows])  # the results file can hold them


def test_invoke_ab_runs_both_paths(capsys: pytest.CaptureFixture[str]) -> None:
    """Both invoke paths reach the A/B's endpoint and a table comes out (figures not judged)."""
    sys_argv = ["invoke_ab", "--calls", "5", "--rounds", "1", "--items", "2"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", sys_argv)
        assert invoke_ab.main() == 0
    out = capsys.readouterr().out
    assert "| lean |" in out and "| boto3 |" in out and "boto3 / lean = " in out
