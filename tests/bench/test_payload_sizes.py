"""The payload-sizes report: every answer measured at every share of seats taken, and the
compact availability at least SMALLER_BY times smaller than the full one, raw and gzipped
(sizes are deterministic for a commit: no timing involved)."""

from pathlib import Path

from bench.payload_bench import TAKEN_SHARES, payload_sizes
from tests.bench.test_harnesses import number, tables, written

SMALLER_BY = 50


def test_compact_availability_is_many_times_smaller(results_dir: Path) -> None:
    rows = tables(written(payload_sizes(), results_dir))[-1]
    answers = [row["answer"] for row in rows]
    assert answers[0].startswith("/seatmap/layout") and len(rows) == 1 + 4 * len(TAKEN_SHARES)
    availability = [row for row in rows if row["answer"] == "/availability"]
    assert [row["taken"] for row in availability] == [f"{s:.0%}" for s in TAKEN_SHARES]
    for row in availability:
        assert number(row["compact B"]) * SMALLER_BY < number(row["full B"]), row
        assert number(row["compact gzip B"]) * SMALLER_BY < number(row["full gzip B"]), row
        assert number(row["compact B"]) < 2078 + 200  # one letter a seat, and a few fields
    seat_map = [row for row in rows if row["answer"] == "/seatmap"]
    # The taken seats by id outgrow one letter a seat from 10% taken on.
    assert all(number(r["compact B"]) < number(r["full B"]) for r in seat_map[1:])
