"""The benchmark package imports and its serializer benchmark runs (tiny N; no timing asserts)."""

from __future__ import annotations

import json

import pytest
from bench import common, inflight, invoke_ab, serializer


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


def test_inflight_rows_compare_adaptive_with_fixed() -> None:
    """The in-flight A/B's rows from made-up case results (the cases need the stack)."""

    def case(function: str, adaptive: bool, rate: float, per1000: float) -> dict[str, object]:
        return {
            "function": function,
            "adaptive": adaptive,
            "rate": rate,
            "throttlesPer1000": per1000,
            "limitMedian": 2.0,
        }

    rows = inflight._rows(
        [
            case(inflight.CAPPED, False, 800, 7.0),
            case(inflight.CAPPED, True, 790, 1.4),
            case(inflight.OPEN, False, 1500, 0.0),
            case(inflight.OPEN, True, 1550, 0.0),
        ]
    )
    assert [(r.unit, r.value, r.baseline, r.ok) for r in rows] == [
        ("msg/s", 790, 800, True),
        ("429s/1000 msgs", 1.4, 7.0, True),
        ("msg/s", 1550, 1500, True),
    ]
