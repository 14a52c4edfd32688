"""Smoke test of the availability harness: every read and every reader mode measured something,
and the cached read cost Redis fewer script calls per snapshot than the chunked fresh read."""

from pathlib import Path

from bench.availability_bench import availability
from tests.bench.test_harnesses import column, written


def test_availability_harness_measures_every_read(results_dir: Path) -> None:
    text = written(availability([500], readers=2, duration=0.3, rounds=1), results_dir)
    rates = column(text, "snapshots/s")
    calls = column(text, "script calls/snapshot")  # whole, fresh, cached, compact
    assert len(rates) == 4 and min(rates) > 0
    assert calls[0] == 1 and calls[1] >= 3 and calls[2] < 1 and calls[3] < 1
    sizes = column(text, "response bytes")
    # 5 of 500 seats held; the replaced read sets no available_count (3 bytes)
    assert sizes[0] + 3 == sizes[1] == sizes[2] > 10 * sizes[3]
    holds = column(text, "holds")  # none, whole, cached
    assert len(holds) == 3 and min(holds) > 0
