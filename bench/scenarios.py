"""End-to-end scenarios through the gRPC service: steady mixed load, flash sale, rate sweep."""

import asyncio
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from redis.asyncio import Redis

from bench.driver import HOLD, DriverConfig, run_driver
from bench.report import (
    LATENCY_HEADERS,
    Report,
    latency_figure,
    latency_rows,
    sweep_figure,
    throughput_figure,
)
from bench.samples import FAILED, OK, UNAVAILABLE, Samples
from bench.stack import (
    POSTGRES_DSN,
    ServerProcess,
    booking_worker,
    inventory_command,
    local_target,
    postgres_database,
    redis_server,
    reference_command,
    server_process,
)
from bench.workload import create_events
from inventory import keys

EVENT_SEATS = 100_000
SEATS_PER_OP = 1.7  # seats a mixed workload takes per operation, with margin


@dataclass(frozen=True)
class Stack:
    redis_url: str
    target: str
    workdir: Path
    server: ServerProcess


@contextmanager
def inventory_stack(
    workers: int, events: dict[str, int], reference: bool = False
) -> Iterator[Stack]:
    """A private Redis with `events` (id -> seats) created, and the service over it.

    With `reference`, the minimal reference server (bench/reference_server.py, one process)
    stands in for the service: it needs no event created.
    """
    with tempfile.TemporaryDirectory(prefix="lml-bench-") as tmp:
        workdir = Path(tmp)
        with redis_server(workdir / "redis") as redis:
            target = local_target()
            if reference:
                command = reference_command(target, redis.url)
            else:
                asyncio.run(_create(redis.url, events))
                command = inventory_command(target, redis.url, workers)
            with server_process(command, target, workdir / "server.log") as server:
                yield Stack(redis.url, target, workdir, server)


async def _create(redis_url: str, events: dict[str, int]) -> None:
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        for event_id, seats in events.items():
            await create_events(redis, [event_id], seats)
    finally:
        await redis.aclose()


def events_for(prefix: str, rate: float, duration: float) -> list[str]:
    count = max(1, math.ceil(rate * duration * SEATS_PER_OP / EVENT_SEATS))
    return [f"{prefix}-{index}" for index in range(count)]


def steady(config: DriverConfig, workers: int, warmup: float, expected_rate: float) -> Report:
    """Closed-loop mixed load over Execute streams, then the same load on the minimal reference
    (one process) in the same run; reports the part after the warm-up."""
    event_ids = events_for("steady", expected_rate, config.duration)
    with inventory_stack(workers, dict.fromkeys(event_ids, EVENT_SEATS)) as stack:
        samples = run_driver(replace(config, target=stack.target, event_ids=event_ids))
    with inventory_stack(1, {}, reference=True) as stack:
        reference = run_driver(replace(config, target=stack.target, event_ids=event_ids))
    report = Report("steady", "Steady mixed load over Execute streams, with the reference")
    # The last second is left out too: the generator's processes do not all stop at once.
    steady_part = samples.window(warmup, config.duration - 1)
    measured = config.duration - 1 - warmup
    project_rate, project_p99 = _steady_figures(samples, config.duration, warmup)
    reference_rate, reference_p99 = _steady_figures(reference, config.duration, warmup)
    report.text(
        f"{workers} service process(es); load: {config.processes} processes x {config.streams} "
        f"stream(s), batches of {config.batch}, {config.in_flight} in flight per stream "
        f"(closed loop); {config.duration:.0f} s, the first {warmup:.0f} s and the last second "
        "left out. The same load then runs against the minimal reference "
        "(`bench/reference_server.py`, one process, on a fresh Redis).",
        "Mix: holds of 1-6 seats (70% of buyers want the best 10% of seats), 25% extended, "
        "then 60% confirmed, 30% released, 10% abandoned.",
    )
    report.table(
        ["measure", "value", "reference", "project / reference", "target"],
        [
            [
                "ops/s (median of 1 s buckets)",
                project_rate,
                reference_rate,
                _times(project_rate, reference_rate),
                ">= 10,000 (aim 20,000)",
            ],
            ["ops/s (mean)", steady_part.rate(measured), "", "", ""],
            [
                "p99 latency, all operations (ms)",
                project_p99,
                reference_p99,
                _times(project_p99, reference_p99),
                "< 10",
            ],
            ["failed operations", steady_part.outcomes(FAILED), "", "", "0"],
            ["verdict", _verdict(project_rate >= 10_000 and project_p99 < 10), "", "", ""],
        ],
    )
    report.table(LATENCY_HEADERS, latency_rows(steady_part, measured))
    report.chart(
        "throughput", throughput_figure(samples, int(config.duration), "Throughput"), "throughput"
    )
    report.chart("latency", latency_figure(steady_part, "Latency per operation"), "latency")
    return report


def _steady_figures(samples: Samples, duration: float, warmup: float) -> tuple[float, float]:
    """Median ops/s of the 1 s buckets after the warm-up, and p99 (ms) over them."""
    per_second = samples.per_second(int(duration))[int(warmup) : int(duration) - 1]
    p99 = samples.window(warmup, duration - 1).percentile_ms(99)
    return float(np.median(per_second)), p99


def _times(value: float, reference: float) -> str:
    """The ratio, or "-" when either side was not measured (NaN) or the reference is zero."""
    measured = value == value and reference == reference  # NaN is not equal to itself
    return f"x{value / reference:.2f}" if measured and reference else "-"


def _verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def flash_sale(
    config: DriverConfig, workers: int, seats: int, buyers: int, admin_dsn: str = POSTGRES_DSN
) -> Report:
    """`buyers` buyers at once for an event of `seats` seats; checks no seat is sold twice."""
    config = replace(config, buyers=buyers, event_ids=["flash"], seats=seats, hot_share=0.2)
    with (
        postgres_database(f"lml_bench_flash_{os.getpid()}", admin_dsn) as postgres_url,
        inventory_stack(workers, {"flash": seats}) as stack,
    ):
        # The worker trims only what every consumer group has acknowledged: a group of the
        # harness's own, which never acknowledges, keeps the whole outbox for the check below.
        asyncio.run(_keep_outbox(stack.redis_url, "flash"))
        with booking_worker(stack.redis_url, postgres_url, stack.workdir / "worker.log"):
            samples = run_driver(replace(config, target=stack.target))
            state = asyncio.run(_booked_state(stack.redis_url, "flash"))
            synced = asyncio.run(_postgres_seats(postgres_url, "flash", len(state.booked)))
    with inventory_stack(1, {}, reference=True) as stack:
        reference = run_driver(replace(config, target=stack.target))
    check = verify_bookings(samples, state)
    postgres_clean = synced.seats == state.booked and not synced.conflicts
    report = Report("flash-sale", f"Flash sale: {buyers:,} buyers for {seats:,} seats")
    sold_out_at = _sold_out_at(samples, seats)
    holds = samples.of(samples.kind == HOLD)
    report.text(
        f"{workers} service process(es); {config.processes} load processes x {config.streams} "
        f"stream(s), batches of {config.batch}. Every buyer holds 1-6 seats (70% want the best "
        f"20%), retries twice with other seats when they are taken, then confirms (90%) or "
        f"releases (10%). `lml-worker run` syncs the bookings into a throwaway Postgres database; "
        "Redis, the outbox, Postgres and what the buyers were told are compared at the end."
    )
    report.table(
        ["measure", "value"],
        [
            ["time to sell out (s)", "not sold out" if sold_out_at is None else sold_out_at],
            ["every buyer answered after (s)", float(samples.done.max()) if samples.count else 0.0],
            ["seats booked (Redis)", check.booked_in_redis],
            ["bookings confirmed to buyers", len(samples.bookings)],
            ["hold attempts", holds.count],
            ["holds granted", holds.outcomes(OK)],
            ["holds rejected (seats unavailable)", holds.outcomes(UNAVAILABLE)],
            ["failed operations", samples.outcomes(FAILED)],
            ["hold p99 (ms)", holds.percentile_ms(99)],
            ["seats sold twice (buyers' bookings)", check.double_booked],
            ["buyers' bookings Redis disagrees with", check.mismatched],
            ["outbox records", check.outbox_records],
            ["seats in two outbox records", check.outbox_duplicates],
            ["seats booked in Postgres (lml-worker)", len(synced.seats)],
            ["Postgres synced, after the last buyer (s)", synced.after],
            ["seats Postgres and Redis disagree on", _disagreements(synced.seats, state.booked)],
            ["booking conflicts in Postgres", synced.conflicts],
            ["verdict: zero double-booking", _verdict(check.clean and postgres_clean)],
        ],
    )
    report.text(
        "The same buyers then ran against the minimal reference (`bench/reference_server.py`, "
        "one process, no outbox or worker) on a fresh Redis:"
    )
    report.table(
        ["compared with the reference", "project", "reference", "project / reference"],
        _flash_comparison(samples, reference, seats),
    )
    seconds = max(1, math.ceil(float(samples.done.max())) if samples.count else 1)
    report.chart(
        "throughput", throughput_figure(samples, seconds, "Flash sale throughput"), "throughput"
    )
    report.chart("latency", latency_figure(samples, "Latency per operation"), "latency")
    return report


def _flash_comparison(project: Samples, reference: Samples, seats: int) -> list[list[object]]:
    def figures(samples: Samples) -> list[float]:
        sold_out = _sold_out_at(samples, seats)
        holds = samples.of(samples.kind == HOLD)
        return [
            float("nan") if sold_out is None else sold_out,
            float(samples.done.max()) if samples.count else float("nan"),
            holds.percentile_ms(99),
        ]

    names = ["time to sell out (s)", "every buyer answered after (s)", "hold p99 (ms)"]
    rows = zip(names, figures(project), figures(reference), strict=True)
    return [[name, mine, theirs, _times(mine, theirs)] for name, mine, theirs in rows]


def _sold_out_at(samples: Samples, seats: int) -> float | None:
    sold = 0
    for done, _event, seat_ids, _booking in sorted(samples.bookings):
        sold += len(seat_ids)
        if sold >= seats:
            return done
    return None


@dataclass(frozen=True)
class BookedState:
    seats: dict[str, str]  # seat id -> state in Redis
    outbox: list[dict[str, str]]

    @property
    def booked(self) -> dict[str, str]:
        """Seat id -> booking id, for booked seats."""
        return {seat: value[2:] for seat, value in self.seats.items() if value.startswith("B:")}


@dataclass(frozen=True)
class SyncedState:
    seats: dict[str, str]  # seat id -> booking id of its active booking in Postgres
    conflicts: int
    after: float  # seconds waited for the worker


async def _postgres_seats(postgres_url: str, event_id: str, expected: int) -> SyncedState:
    """Waits (up to a minute) for the worker to sync `expected` seats; reads what it wrote."""
    connection = await asyncpg.connect(postgres_url)
    started = time.monotonic()
    try:
        while True:
            rows = await connection.fetch(
                "SELECT seat_id, booking_id FROM booked_seats "
                "WHERE event_id = $1 AND state = 'active'",
                event_id,
            )
            if len(rows) >= expected or time.monotonic() - started > 60:
                break
            await asyncio.sleep(0.1)
        conflicts = await connection.fetchval("SELECT count(*) FROM booking_conflicts")
    finally:
        await connection.close()
    seats = {row["seat_id"]: row["booking_id"] for row in rows}
    return SyncedState(seats, int(conflicts), time.monotonic() - started)


def _disagreements(left: dict[str, str], right: dict[str, str]) -> int:
    return sum(left.get(seat) != right.get(seat) for seat in left.keys() | right.keys())


async def _keep_outbox(redis_url: str, event_id: str) -> None:
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        outbox = keys.event_keys(event_id).outbox
        await redis.xgroup_create(outbox, "bench-verify", id="0", mkstream=True)
    finally:
        await redis.aclose()


async def _booked_state(redis_url: str, event_id: str) -> BookedState:
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        event = keys.event_keys(event_id)
        # decode_responses=True: strings, which redis-py's annotations cannot tell.
        seats: Any = await redis.hgetall(event.seats)
        entries: Any = await redis.xrange(event.outbox)
        outbox = [fields for _id, fields in entries]
        return BookedState(seats, outbox)
    finally:
        await redis.aclose()


@dataclass(frozen=True)
class BookingCheck:
    booked_in_redis: int
    double_booked: int
    mismatched: int
    outbox_records: int
    outbox_duplicates: int
    clean: bool


def verify_bookings(samples: Samples, state: BookedState) -> BookingCheck:
    """The buyers' bookings, Redis's seats and the outbox must tell the same story."""
    sold: dict[str, str] = {}
    double = 0
    for _done, _event, seat_ids, booking_id in samples.bookings:
        for seat in seat_ids:
            double += seat in sold
            sold[seat] = booking_id
    booked = state.booked
    mismatched = sum(booked.get(seat) != booking for seat, booking in sold.items())
    mismatched += len(set(booked) - set(sold))
    in_outbox: list[str] = [s for record in state.outbox for s in json.loads(record["seat_ids"])]
    duplicates = len(in_outbox) - len(set(in_outbox))
    clean = not double and not mismatched and not duplicates and set(in_outbox) == set(booked)
    return BookingCheck(len(booked), double, mismatched, len(state.outbox), duplicates, clean)


def rate_sweep(
    config: DriverConfig, workers: int, rates: list[int], warmup: float
) -> tuple[Report, int]:
    """Open-loop steps of rising rate, each run against the project and then the minimal
    reference in the same run; the answer is the highest rate with p99 < 10 ms for each."""
    rows: list[list[object]] = []
    best = {False: 0, True: 0}
    misses = {False: 0, True: 0}
    measured: list[tuple[int, float, float]] = []
    for rate in rates:
        step_p99 = {}
        for reference in (False, True):
            if misses[reference] >= 2:
                continue
            achieved, p99, failed = _sweep_step(config, workers, rate, warmup, reference)
            met = p99 < 10 and achieved >= 0.95 * rate and not failed
            step_p99[reference] = p99
            misses[reference] = 0 if met else misses[reference] + 1
            best[reference] = rate if met else best[reference]
            name = "reference" if reference else "project"
            rows.append([rate, name, achieved, p99, failed, _verdict(met)])
            if not reference:
                measured.append((rate, achieved, p99))
        if False in step_p99 and True in step_p99:
            rows[-2].append(f"x{step_p99[False] / step_p99[True]:.2f}")
        if misses[False] >= 2 and misses[True] >= 2:
            break
    for row in rows:
        row.extend([""] * (7 - len(row)))
    report = Report("sweep", "Open-loop rate sweep over Execute streams, with the reference")
    report.text(
        f"{workers} service process(es); {config.processes} load processes x {config.streams} "
        f"stream(s), a batch per stream every ~5 ms, latency counted from when each batch was "
        f"due (no coordinated omission); {config.duration:.0f} s per step, the first "
        f"{warmup:.0f} s and the last second left out. Same mix as the steady scenario. "
        "Each rate runs against the project, then against the minimal reference "
        "(`bench/reference_server.py`: one small Lua script per operation, one pipeline per "
        "batch, no change log, outbox, limits or index) on a fresh Redis. A step passes with "
        "p99 < 10 ms, no failure and at least 95% of the offered rate; a server stops after "
        "two failing steps in a row.",
        f"**Highest rate meeting p99 < 10 ms: project {best[False]:,} ops/s, reference "
        f"{best[True]:,} ops/s.**",
    )
    report.table(
        [
            "offered ops/s",
            "server",
            "achieved ops/s",
            "p99 ms",
            "failed",
            "p99 < 10 ms",
            "p99 / reference p99",
        ],
        rows,
    )
    report.chart("sweep", sweep_figure(measured), "p99 by offered rate (project)")
    return report, best[False]


def _sweep_step(
    config: DriverConfig, workers: int, rate: int, warmup: float, reference: bool
) -> tuple[float, float, int]:
    """One open-loop step: achieved ops/s, p99 ms and failed operations after the warm-up."""
    event_ids = events_for(f"sweep{rate}", rate, config.duration)
    streams = config.processes * config.streams
    batch = max(1, round(rate * 0.005 / streams))  # a batch per stream every ~5 ms
    step = replace(config, rate=float(rate), batch=batch, event_ids=event_ids)
    events = dict.fromkeys(event_ids, EVENT_SEATS)
    with inventory_stack(workers, events, reference) as stack:
        samples = run_driver(replace(step, target=stack.target))
    part = samples.window(warmup, config.duration - 1)
    return part.rate(config.duration - 1 - warmup), part.percentile_ms(99), part.outcomes(FAILED)
