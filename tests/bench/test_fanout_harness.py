"""Smoke test of the fan-out harness: real service, gateway process and viewers process, both
designs measured in two rounds, every viewer accounted for and the full views checked against
the inventory; the gateway's full collections and the viewers process's own lag recorded for
each; the medians of the rounds."""

from pathlib import Path

from bench.fanout_bench import Setting, fanout
from tests.bench.test_harnesses import column, tables, written


def test_fanout_harness_measures_both_designs(results_dir: Path) -> None:
    report = fanout([6], [20], [Setting("per-viewer", 4, 20)], seats=200, seconds=1.5, rounds=2)
    text = written(report, results_dir)
    medians, rows = [table for table in tables(text) if table and "design" in table[0]]
    assert [row["design"] for row in medians] == ["shared", "per-viewer"]
    assert [row["rounds with nothing lost"] for row in medians] == ["2/2", "2/2"]
    assert [(row["round"], row["design"]) for row in rows] == [
        ("1", "shared"),
        ("1", "per-viewer"),
        ("2", "shared"),
        ("2", "per-viewer"),
    ]
    assert min(column(text, "changes made")) > 0
    assert all(
        p99 >= p50 > 0
        for p50, p99 in zip(column(text, "p50 ms"), column(text, "p99 ms"), strict=True)
    )
    for row in rows:
        viewers = row["viewers"]
        assert row["viewers at final version, no gap"] == f"{viewers}/{viewers}"
        full = row["full views equal to inventory"].split("/")
        assert full[0] == full[1] != "0"
        collections, _, longest = row["gateway full GCs in the load: longest ms"].partition(": ")
        assert int(collections) >= 0 and float(longest.replace(",", "")) >= 0
        p99, _, most = row["viewers process lag p99 / max ms"].partition(" / ")
        assert float(most) >= float(p99) >= 0
