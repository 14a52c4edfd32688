"""Smoke test of the durability harness: both settings confirm real bookings and are compared."""

from pathlib import Path

import pytest

from bench.durability_bench import durability


def test_durability_harness_measures_none_and_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LML_BENCH_RESULTS", str(tmp_path))
    monkeypatch.setattr("bench.durability_bench.ROUND_SEATS", 20_000)
    text = durability(duration=1, concurrency=[4], rounds=1, workers=1).write().read_text()
    rows = {
        cells[2]: cells
        for line in text.splitlines()
        if (cells := [cell.strip() for cell in line.split("|")])[1:2] == ["1"]
    }
    assert set(rows) >= {"none", "replica"}
    for cells in rows.values():
        confirms_per_second, failed = float(cells[4].replace(",", "")), int(cells[7])
        assert confirms_per_second > 0 and failed == 0
    assert "| replica |" in text and "vs none" in text
