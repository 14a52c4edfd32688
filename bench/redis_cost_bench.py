"""Redis time per hold + release cycle: the project's scripts beside the minimal reference's
(bench/reference_server.py), in one run against one fresh redis-server.

Per row length, one event of the project and one of the reference, the same random seats held
(1-2 per hold) and released after, in pipelines (bench/redis_cost_phases.py); also the added
cost of a waiting room and of a request id on a hold, best available (quantity 2 and 4), the
sweeper's calls, and the client-side p99 of plain holds while best-available traffic and the
sweeper run (bench/redis_cost_latency.py).
"""

import asyncio
import random
import tempfile
from collections import defaultdict
from pathlib import Path
from statistics import median

from redis.asyncio import Redis

from bench import reference_server
from bench.redis_cost_latency import hold_p99s
from bench.redis_cost_phases import (
    CYCLE_PHASES,
    PHASES,
    SLOW_USEC,
    SLOWLOG_LENGTH,
    Cycles,
    Ledger,
    Meter,
    event_id,
    event_request,
)
from bench.report import Report
from bench.stack import redis_server
from inventory.engine import Inventory
from inventory.script_calls import LIBRARY

Latencies = dict[int, list[tuple[float, float, int]]]


async def _run(
    url: str,
    seats: int,
    row_lengths: list[int],
    holds: int,
    pipeline: int,
    rounds: int,
    latency_seconds: float,
) -> tuple[Ledger, Latencies]:
    # One script creates a whole event (seconds on a loaded machine): no client deadline.
    redis = Redis.from_url(url, decode_responses=True, socket_timeout=None)
    inventory = Inventory(redis)
    ledger = Ledger()
    latencies: Latencies = defaultdict(list)
    try:
        await redis.config_set("slowlog-log-slower-than", SLOW_USEC)
        await redis.config_set("slowlog-max-len", SLOWLOG_LENGTH)
        await redis.function_load(LIBRARY.source, replace=True)
        shas = (
            await redis.script_load(reference_server.HOLD),
            await redis.script_load(reference_server.CHANGE),
        )
        for row_length in row_lengths:
            await inventory.create_event(event_request(row_length, seats))
        meter = Meter(redis, inventory, ledger)
        cycles = {
            row_length: Cycles(meter, row_length, seats, pipeline, random.Random(row_length), shas)
            for row_length in row_lengths
        }
        for round_no in range(-1, rounds):  # round -1 warms up, and is left out
            ledger.counting = round_no >= 0
            for row_length in row_lengths:  # interleaved: the machine's noise falls on all
                for _batch in range(max(1, holds // pipeline) if ledger.counting else 1):
                    for _name, phase in PHASES:
                        await phase(cycles[row_length])
        for _round in range(rounds):
            for row_length in row_lengths:
                latencies[row_length].append(
                    await hold_p99s(redis, url, event_id(row_length), seats, latency_seconds)
                )
    finally:
        await redis.aclose()
    return ledger, latencies


OPERATIONS = [
    ("hold", "hold (1-2 named seats)"),
    ("release after hold", "release"),
    ("reference hold", "reference: hold"),
    ("reference release", "reference: release"),
    ("hold, request id", "hold with a request id"),
    ("release after hold, request id", "its release"),
    ("hold, waiting room", "hold on a queued event, admitted"),
    ("release after hold, waiting room", "its release"),
    ("best available, 2", "best available, 2 seats"),
    ("release after best available, 2", "its release"),
    ("best available, 4", "best available, 4 seats"),
    ("release after best available, 4", "its release"),
    ("sweep after churn", "sweeper call after the holds and releases above"),
    ("sweep of expired holds", "sweeper call ending up to SWEEP_BATCH expired holds"),
]


def _report(
    ledger: Ledger,
    latencies: Latencies,
    seats: int,
    holds: int,
    pipeline: int,
    rounds: int,
    latency_seconds: float,
) -> Report:
    lengths = sorted(latencies) or sorted({key[0] for key in ledger.calls})
    report = Report("redis-cost", "Redis time per hold + release: the project and the reference")
    report.text(
        "Machine: a 2-core shared VM (other engineers' tests run beside it): compare the ratios, "
        "measured in the same run, not the absolute figures.",
        f"One fresh redis-server; per row length one {seats:,}-seat event in rows of that "
        f"length (project) and one of the reference (bench/reference_server.py's HOLD and "
        f"CHANGE scripts). Per round and row length, {holds:,} holds per phase in pipelines of "
        f"{pipeline} (1-2 random seats each, the reference holding the same seats), each "
        f"pipeline of holds followed by one of their releases; {rounds} rounds after a warm-up "
        "round, row lengths interleaved. Redis µs per call: `usec / calls` of `cmdstat_fcall` for "
        "the project (its library's functions) against `cmdstat_evalsha` for the reference (its "
        "scripts), from INFO commandstats, reset before each pipeline; the median over the "
        "pipelines of every round. Defaults: no quotas, no waiting room, no request id, no "
        "durability wait.",
    )
    rows: list[list[object]] = []
    for n in lengths:
        hold, release = ledger.per_call(n, "hold"), ledger.per_call(n, "release after hold")
        ref_hold, ref_release = (
            ledger.per_call(n, "reference hold"),
            ledger.per_call(n, "reference release"),
        )
        ratio = (hold + release) / (ref_hold + ref_release)
        verdict = "**met**" if ratio <= 2 else "not met"
        rows.append(
            [
                n,
                hold,
                release,
                hold + release,
                ref_hold,
                ref_release,
                ref_hold + ref_release,
                f"{ratio:.2f}",
                verdict,
            ]
        )
    report.text("## The goal: Redis µs per hold + release cycle, at most 2x the reference")
    report.table(
        [
            "seats per row",
            "hold µs",
            "release µs",
            "cycle µs",
            "reference hold µs",
            "reference release µs",
            "reference cycle µs",
            "ratio",
            "<= 2x",
        ],
        rows,
    )
    report.text("## Redis µs per call by operation and row length")
    report.table(
        ["operation", *(f"rows of {n}" for n in lengths)],
        [[label, *(ledger.per_call(n, op) for n in lengths)] for op, label in OPERATIONS],
    )
    report.text(
        f"## Calls of {SLOW_USEC} µs and more (SLOWLOG): how many, and the longest",
        "The reference's rows show what the machine alone does (a descheduled Redis stretches "
        "any call): beyond that, a call that often takes this long does too much work at once.",
    )
    slow_rows: list[list[object]] = []
    for operation, label in OPERATIONS:
        cells: list[object] = [label]
        for n in lengths:
            slow, calls = ledger.slow[(n, operation)], ledger.calls[(n, operation)]
            longest = f", longest {max(slow):,.0f}" if slow else ""
            cells.append(f"{len(slow)} of {calls:,}{longest}")
        slow_rows.append(cells)
    report.table(["operation", *(f"rows of {n}" for n in lengths)], slow_rows)
    added: list[list[object]] = []
    for n in lengths:
        plain = ledger.per_call(n, "hold")
        cycles = CYCLE_PHASES * max(1, holds // pipeline) * pipeline * rounds
        added.append(
            [
                n,
                ledger.per_call(n, "hold, waiting room") - plain,
                ledger.per_call(n, "hold, request id") - plain,
                ledger.usec[(n, "sweep after churn")] / cycles,
            ]
        )
    report.text(
        "## Added Redis µs per hold, and the sweeper's share per cycle",
        "Waiting room: the event's queue on, the holder admitted (its admission checked by the "
        "hold). Request id: the hold writes its retry record. Sweeper per cycle: the Redis time "
        "of the sweeper's calls after each batch of phases, divided by the holds and releases "
        f"of the {CYCLE_PHASES} phases before it (index work deferred to the sweeper).",
    )
    report.table(
        ["seats per row", "waiting room µs", "request id µs", "sweeper µs per cycle"], added
    )
    p99_rows = []
    for n in lengths:
        measured = latencies.get(n, [])
        if not measured:
            continue
        alone = median(m[0] for m in measured)
        busy = median(m[1] for m in measured)
        p99_rows.append([n, alone, busy, f"{busy / alone:.2f}", sum(m[2] for m in measured)])
    report.text(
        "## p99 of plain holds, alone and beside best available and the sweeper",
        f"Client side, {latency_seconds:g} s per measure, medians of {rounds} rounds: 4 callers "
        "in this process each holding 1-2 random seats and releasing them; beside them another "
        "process runs 1,000 best-available holds/s (2 and 4 seats, released after), 200 holds/s "
        "left to run out (200 ms TTL), and the sweeper every 0.1 s on the same event.",
    )
    report.table(
        ["seats per row", "p99 ms alone", "p99 ms beside", "ratio", "holds measured"], p99_rows
    )
    return report


def redis_cost(
    seats: int,
    row_lengths: list[int],
    holds: int,
    pipeline: int,
    rounds: int,
    latency_seconds: float,
) -> Report:
    with tempfile.TemporaryDirectory(prefix="lml-bench-") as tmp, redis_server(Path(tmp)) as server:
        ledger, latencies = asyncio.run(
            _run(server.url, seats, row_lengths, holds, pipeline, rounds, latency_seconds)
        )
    return _report(ledger, latencies, seats, holds, pipeline, rounds, latency_seconds)
