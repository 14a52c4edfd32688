"""Smoke test of the instruction-count harness on tiny events: redis-server ran under callgrind,
every operation of every row length was counted, and the counts are what a reader can check."""

from pathlib import Path

from bench.instructions_bench import instructions
from tests.bench.test_harnesses import column, number, tables, written


def test_instructions_harness_counts_every_operation(results_dir: Path) -> None:
    lengths = [25, 100]
    text = written(instructions(1_000, lengths, holds=20), results_dir)
    assert column(text, "seats per row") == lengths
    cycles, references = column(text, "cycle"), column(text, "reference cycle")
    # The project's cycle keeps a change log, a holder's holds and an exact best-available index
    # that the reference does not: it always runs more instructions.
    assert all(cycle > reference > 0 for cycle, reference in zip(cycles, references, strict=True))
    # The floor replays the project's own commands without the Lua that decides them.
    floors = column(text, "floor cycle")
    assert all(0 < floor < cycle for floor, cycle in zip(floors, cycles, strict=True))
    (per_call,) = [table for table in tables(text) if table and "operation" in table[0]]
    assert len(per_call) == 8
    for row in per_call:
        for length in lengths:
            assert number(row[f"rows of {length}"]) > 0, (row["operation"], length)
            share = number(row[f"in commands, rows of {length}"].rstrip("%"))
            assert 0 < share < 100, (row["operation"], length)
