"""Smoke test of the admin-stall harness: every operation ran in both modes, the one-call scripts
in one call each, the chunked build in more, every call timed by SLOWLOG, holds measured."""

from pathlib import Path

from bench.admin_stall_bench import admin_stall
from tests.bench.test_harnesses import measure, number, tables, written


def test_admin_stall_harness_measures_both_modes(results_dir: Path) -> None:
    report = admin_stall([300], [25], rate=200, rounds=1, quiet_s=0.3)
    text = written(report, results_dir)
    [phases] = [table for table in tables(text) if "operation" in table[0]]
    rows = {(row["operation"], row["scripts"]): row for row in phases}
    calls = {key: number(row["script calls"]) for key, row in rows.items()}
    # 300 seats in rows of 25: open, one chunk of seats, one of rows, commit; 50 bookings of 2
    # seats: one restore chunk.
    assert calls == {
        ("create", "one call"): 1,
        ("create", "chunked"): 4,
        ("rebuild", "one call"): 2,
        ("rebuild", "chunked"): 5,
    }
    for row in rows.values():
        assert number(row["longest call ms, max"]) > 0
        assert number(row["Redis ms in all"]) >= number(row["longest call ms, max"])
        assert number(row["call p99 ms"]) <= number(row["longest call ms, max"])
        assert number(row["hold p99 quiet ms"]) > 0
    assert measure(text, "chunked: longest call ms") > 0
