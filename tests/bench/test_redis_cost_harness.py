"""Smoke test of the Redis-cost harness on tiny events: every operation of every row length was
measured by Redis, the reference ran beside the project, and the latency measure took holds."""

import math
from pathlib import Path

from bench.redis_cost_bench import redis_cost
from tests.bench.test_harnesses import column, number, tables, written


def test_redis_cost_harness_measures_every_operation(results_dir: Path) -> None:
    lengths = [25, 100]
    report = redis_cost(400, lengths, holds=10, pipeline=5, rounds=1, latency_seconds=0.3)
    text = written(report, results_dir)
    assert column(text, "seats per row")[: len(lengths)] == lengths
    for header in ("cycle µs", "reference cycle µs", "p99 ms alone", "p99 ms beside"):
        values = column(text, header)
        assert len(values) == len(lengths) and min(values) > 0, header
    for ratio in column(text, "ratio"):
        assert not math.isnan(ratio) and ratio > 0
    per_call, slow = [table for table in tables(text) if table and "operation" in table[0]]
    assert len(per_call) == len(slow) == 14
    for row, slow_row in zip(per_call, slow, strict=True):
        for length in lengths:
            assert number(row[f"rows of {length}"]) > 0, (row["operation"], length)
            # "<slow calls> of <calls>[, longest <µs>]": every operation was called
            assert number(slow_row[f"rows of {length}"].split(" of ")[1].split(",")[0]) > 0
    assert min(column(text, "holds measured")) > 0
