"""The benchmark package imports and its serializer benchmark runs (tiny N; no timing asserts)."""

from __future__ import annotations

import json

from bench import common, serializer


def test_serializer_benchmark_produces_rows() -> None:
    rows = serializer.run(n=20, rounds=1)

    assert [r.case for r in rows] == [name for name, _, _ in serializer.cases(1)]
    assert all(r.bench == "serializer V2" and r.value is not None for r in rows)
    table = common.table(rows)
    assert table.count("\n") == len(rows) + 1
    json.dumps([r.as_dict() for r in rows])  # the results file can hold them
