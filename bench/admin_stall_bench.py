"""Admin-stall harness: how long creating or rebuilding an event holds Redis, and what the holds
of a sale on another event of the same Redis feel meanwhile.

Per event size and row length, the event is created, then rebuilt from Postgres-like bookings
(a third of its seats, two per booking), by the chunked scripts the engine runs
(inventory/event_build.py), and by the one-call scripts they replaced (bench/create_whole.lua,
bench/restore_whole.lua), in the same run on the same Redis. Meanwhile another process holds
and releases seats of another event at a fixed rate (open loop: a stall delays every hold due
in it). Reported: the longest single script call of the operation and the Redis time of all its
calls (SLOWLOG), and the p99 of the holds started during it against the holds
started in the quiet second before it.
"""

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.synchronize import Event as StopEvent
from pathlib import Path
from statistics import median, quantiles
from typing import Any

from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench.report import Report
from bench.stack import redis_server
from bench.workload import LIMITS, create_events
from inventory import build_calls, event_build, keys
from inventory.build_calls import Build
from inventory.engine import Inventory
from inventory.errors import InventoryError
from inventory.redis_client import connect
from inventory.script_calls import LIBRARY, SCRIPTS, ok
from inventory.scripts import LUA_DIR, Call, Script, ScriptRunner, load_library

SALE_EVENT = "sale"
SALE_SEATS = 10_000
SLOWLOG_LENGTH = 100_000
# Redis 7 logs the commands a script runs too: a threshold keeps the log to the calls that
# matter (every chunk takes longer; the few calls shorter are not in "Redis ms in all").
SLOWLOG_THRESHOLD_US = 100
STALL_MS = 50  # the longest an administrative call should hold Redis
MODES = ("one call", "chunked")
OPERATIONS = ("create", "rebuild")


def _bench_scripts(*names: str) -> dict[str, Script]:
    """Replaced commands kept in bench/, with their includes from lua/includes: a library of
    their own."""
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "includes").symlink_to(Path(str(LUA_DIR / "includes")))
        for name in names:
            source = (Path(__file__).parent / f"{name}.lua").read_text()
            (Path(directory) / f"{name}.lua").write_text(source)
        return load_library(names, Path(directory), prefix="bench")


REPLACED = _bench_scripts("create_whole", "restore_whole")
CREATE_WHOLE, RESTORE_WHOLE = REPLACED["create_whole"], REPLACED["restore_whole"]
ADMIN_FUNCTIONS = {
    script.function
    for script in (
        CREATE_WHOLE,
        RESTORE_WHOLE,
        *(SCRIPTS[name] for name in ("create_event", "build_seats", "build_rows")),
        *(SCRIPTS[name] for name in ("build_commit", "restore_event")),
    )
}


def event_request(event_id: str, seats: int, row_length: int) -> pb.CreateEventRequest:
    request = pb.CreateEventRequest(event_id=event_id, limits=LIMITS)
    add = request.seats.add
    for index in range(seats):
        row = index // row_length
        add(seat_id=f"s{index}", section=f"sec{row // 20}", row=str(row), number=str(index))
    return request


def bookings_of(seats: int) -> dict[str, list[str]]:
    """A third of the seats booked, two per booking."""
    return {f"b{i}": [f"s{i}", f"s{i + 1}"] for i in range(0, seats - 1, 6)}


# -- the holds: another process, open loop ---------------------------------------------------------


# A hold's start (monotonic clock), latency (ms), and "" when it succeeded, else why it failed.
Sample = tuple[float, float, str]


def _holder_process(
    url: str,
    rate: float,
    ready: StopEvent,
    stop: StopEvent,
    out: "multiprocessing.Queue[list[Sample]]",
) -> None:
    """Holds and releases one seat of the sale event every 1/rate s until `stop` (`ready` once
    the first hold came back); sends back every hold's sample. A hold refused by Redis (BUSY
    while a script runs past Redis's busy threshold) counts as failed."""

    async def run() -> list[Sample]:
        redis = connect(url)  # as the service connects: one pipe, no pool to run out of
        inventory = Inventory(redis)
        samples: list[Sample] = []
        tasks: set[asyncio.Task[None]] = set()

        async def hold_release(number: int) -> None:
            started = time.monotonic()
            request = pb.HoldRequest(
                event_id=SALE_EVENT, holder_id=f"h{number}", seat_ids=[f"s{number % SALE_SEATS}"]
            )
            try:
                held = (await inventory.hold(request)).hold
            except InventoryError as error:
                samples.append((started, (time.monotonic() - started) * 1000, error.reason))
                return
            except RedisError as error:
                why = str(error).split(" ", 1)[0] or type(error).__name__
                samples.append((started, (time.monotonic() - started) * 1000, why))
                return
            samples.append((started, (time.monotonic() - started) * 1000, ""))
            ready.set()
            release = pb.ReleaseRequest(
                event_id=SALE_EVENT, hold_id=held.hold_id, holder_id=held.holder_id
            )
            with contextlib.suppress(RedisError, InventoryError):
                await inventory.release(release)

        number, next_at = 0, time.monotonic()
        while not stop.is_set():
            task = asyncio.create_task(hold_release(number))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            number += 1
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*tasks)
        await redis.aclose()
        return samples

    out.put(asyncio.run(run()))


# -- one administrative operation ------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    seats: int
    row_length: int
    operation: str
    mode: str
    quiet: tuple[float, float]  # the window before it: holds alone
    busy: tuple[float, float]  # the operation's window
    calls: int  # its script calls
    longest_ms: float  # its longest script call, as SLOWLOG timed it
    over_ms: int  # its calls of STALL_MS or longer
    durations: list[float]  # every script call of it, ms (those SLOWLOG kept)
    redis_ms: float  # all its script calls


def _whole_create(build: Build) -> Call:
    """create_event.lua as it was: ARGV as bench/create_whole.lua documents it."""
    pairs = [part for seat_id, info, _area in build.shape.entries for part in (seat_id, info)]
    args: tuple[str | int, ...] = (
        build.fingerprint,
        *build.settings,
        build.shape.summary,
        *pairs,
        *build.shape.rows,
    )
    return Call(CREATE_WHOLE, keys.event_keys(build.event_id), args)


def _whole_restore(event_id: str, bookings: dict[str, list[str]]) -> Call:
    args: list[str | int] = [0]
    for booking_id, seat_ids in bookings.items():
        args += [booking_id, json.dumps(sorted(seat_ids))]
    return Call(RESTORE_WHOLE, (*keys.event_keys(event_id), keys.cancelled_key(event_id)), args)


class CountingRunner(ScriptRunner):
    """The engine's runner, counting the calls it runs."""

    calls = 0

    async def run(self, call: Call) -> Any:
        self.calls += 1
        return await super().run(call)


async def _operate(
    runner: CountingRunner, mode: str, operation: str, build: Build, bookings: dict[str, list[str]]
) -> None:
    restore = event_build.Restore(0, bookings) if operation == "rebuild" else None
    if mode == "chunked":
        assert (await event_build.build_event(runner, build, restore)).created
        return
    ok(await runner.run(_whole_create(build)))
    if restore is not None:
        ok(await runner.run(_whole_restore(build.event_id, bookings)))


async def _forget(redis: Redis, event_id: str) -> None:
    """Every key of the event, unlinked (freed in the background: no stall of its own)."""
    names = [*keys.event_keys(event_id), keys.building_key(event_id), keys.cancelled_key(event_id)]
    await redis.unlink(*names)


async def _phase(
    redis: Redis,
    request: pb.CreateEventRequest,
    row_length: int,
    operation: str,
    mode: str,
    quiet_s: float,
) -> Phase:
    build = build_calls.build_of(request)  # before the window: the Python work is not Redis's
    bookings = bookings_of(len(request.seats))
    await _forget(redis, request.event_id)
    quiet_from = time.monotonic()
    await asyncio.sleep(quiet_s)
    await redis.slowlog_reset()
    runner = CountingRunner(redis)
    started = time.monotonic()
    await _operate(runner, mode, operation, build, bookings)
    ended = time.monotonic()
    logged = await redis.slowlog_get(SLOWLOG_LENGTH)
    durations = [
        float(entry["duration"]) / 1000
        for entry in logged
        if entry["command"].startswith(b"FCALL")
        and entry["command"].split()[1].decode() in ADMIN_FUNCTIONS
    ]
    return Phase(
        len(request.seats),
        row_length,
        operation,
        mode,
        (quiet_from, started),
        (started, ended),
        runner.calls,
        max(durations, default=math.nan),
        sum(1 for duration in durations if duration >= STALL_MS),
        durations,
        sum(durations),
    )


# -- the run ---------------------------------------------------------------------------------------


def _p99(values: list[float]) -> float:
    """NaN (shown as "-") for fewer than two values."""
    return quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else math.nan


def _call_p99(durations: list[float]) -> float:
    """The p99 of script calls: a lone call's own time."""
    return durations[0] if len(durations) == 1 else _p99(durations)


def _within(samples: list[Sample], window: tuple[float, float]) -> list[float]:
    """The latencies of the holds that started in the window and succeeded."""
    return [ms for started, ms, why in samples if not why and window[0] <= started < window[1]]


def _failed(samples: list[Sample], window: tuple[float, float]) -> Counter[str]:
    """Why the holds that started in the window failed, with how many each time."""
    return Counter(why for started, _ms, why in samples if why and window[0] <= started < window[1])


async def _phases(
    url: str, sizes: list[int], row_lengths: list[int], rounds: int, quiet_s: float
) -> list[Phase]:
    # No deadline: a one-call create of a large event runs for seconds.
    redis = Redis.from_url(url, decode_responses=True, socket_timeout=None)
    phases: list[Phase] = []
    try:
        for seats in sizes:
            for row_length in row_lengths:
                request = event_request(f"admin-{seats}-{row_length}", seats, row_length)
                for _round in range(rounds):  # modes alternate: the machine's noise falls on both
                    for operation in OPERATIONS:
                        for mode in MODES:
                            phase = await _phase(
                                redis, request, row_length, operation, mode, quiet_s
                            )
                            phases.append(phase)
                await _forget(redis, request.event_id)
    finally:
        await redis.aclose()
    return phases


async def _prepare(url: str) -> None:
    redis = Redis.from_url(url, decode_responses=True)
    await redis.config_set("slowlog-log-slower-than", SLOWLOG_THRESHOLD_US)
    await redis.config_set("slowlog-max-len", SLOWLOG_LENGTH)
    await create_events(redis, [SALE_EVENT], SALE_SEATS)
    for library in (CREATE_WHOLE.library, LIBRARY):  # no load round in a measure
        await redis.function_load(library.source, replace=True)
    await redis.aclose()


def _rows(phases: list[Phase], samples: list[Sample]) -> list[list[object]]:
    """One row per size, row length, operation and mode, over its rounds."""
    groups: dict[tuple[int, int, str, str], list[Phase]] = {}
    for phase in phases:
        groups.setdefault((phase.seats, phase.row_length, phase.operation, phase.mode), []).append(
            phase
        )
    rows: list[list[object]] = []
    for (seats, row_length, operation, mode), group in groups.items():
        quiet = [ms for phase in group for ms in _within(samples, phase.quiet)]
        busy = [ms for phase in group for ms in _within(samples, phase.busy)]
        reference, during = _p99(quiet), _p99(busy)
        rows.append(
            [
                seats,
                row_length,
                operation,
                mode,
                group[-1].calls,
                _call_p99([ms for phase in group for ms in phase.durations]),
                min(phase.longest_ms for phase in group),
                max(phase.longest_ms for phase in group),
                sum(phase.over_ms for phase in group),
                median(phase.redis_ms for phase in group),
                median(phase.busy[1] - phase.busy[0] for phase in group),
                len(busy),
                _reasons(sum((_failed(samples, phase.busy) for phase in group), Counter())),
                reference,
                during,
                during / reference,
                max(busy, default=math.nan),
            ]
        )
    return rows


def _reasons(failed: Counter[str]) -> str:
    return ", ".join(f"{count} {why}" for why, count in failed.most_common()) or "0"


def _summary(phases: list[Phase]) -> list[list[object]]:
    """The longest call of each mode: of all, and of the best round of the worst operation
    (noise only adds time: the best round is the least disturbed)."""
    best: dict[tuple[int, int, str, str], float] = {}
    for phase in phases:
        key = (phase.seats, phase.row_length, phase.operation, phase.mode)
        best[key] = min(best.get(key, math.inf), phase.longest_ms)
    rows: list[list[object]] = []
    for mode in MODES:
        longest = [phase.longest_ms for phase in phases if phase.mode == mode]
        rows.append([f"{mode}: longest call ms", max(longest)])
        rows.append(
            [
                f"{mode}: longest call ms, best round, worst operation",
                max(value for key, value in best.items() if key[3] == mode),
            ]
        )
        rows.append([f"{mode}: longest call ms, median of operations", median(longest)])
    return rows


def admin_stall(
    sizes: list[int], row_lengths: list[int], rate: float, rounds: int = 2, quiet_s: float = 1.0
) -> Report:
    report = Report("admin-stall", "Creating and rebuilding events during a sale: Redis stalls")
    spawn = multiprocessing.get_context("spawn")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as directory, redis_server(Path(directory)) as server:
        asyncio.run(_prepare(server.url))
        ready, stop = spawn.Event(), spawn.Event()
        out: multiprocessing.Queue[list[Sample]] = spawn.Queue()
        holder = spawn.Process(target=_holder_process, args=(server.url, rate, ready, stop, out))
        holder.start()
        try:
            if not ready.wait(timeout=120):
                raise RuntimeError("the holder process did not start holding")
            time.sleep(1)
            phases = asyncio.run(_phases(server.url, sizes, row_lengths, rounds, quiet_s))
            stop.set()
            samples = out.get(timeout=120)
        finally:
            stop.set()
            holder.join(timeout=60)
            if holder.is_alive():
                holder.kill()
    report.text(
        f"Holds: one seat of a {SALE_SEATS:,}-seat event held then released, {rate:g} holds/s "
        "from another process (open loop), on the same Redis. `one call`: the create_event.lua "
        "and restore_event.lua this replaced (bench/create_whole.lua, bench/restore_whole.lua); "
        "`chunked`: inventory/event_build.py. `rebuild` creates the event and books a third of "
        "its seats again (two per booking). Script times: SLOWLOG (calls of "
        f"{SLOWLOG_THRESHOLD_US} µs and longer), the script's own run, not reading its "
        "arguments; on a shared machine they include Redis being descheduled. Hold p99 "
        "quiet: holds started in the "
        f"{quiet_s:g} s before the operation; during: holds started while it ran.",
    )
    report.table(
        [
            "seats",
            "row length",
            "operation",
            "scripts",
            "script calls",
            "call p99 ms",
            "longest call ms, best round",
            "longest call ms, max",
            f"calls ≥ {STALL_MS} ms",
            "Redis ms in all",
            "wall s",
            "holds during",
            "holds failed during",
            "hold p99 quiet ms",
            "hold p99 during ms",
            "p99 during / quiet",
            "hold max during ms",
        ],
        _rows(phases, samples),
    )
    report.table(["measure", "value"], _summary(phases))
    report.text(
        f"Load average (1, 5, 15 min) at the start: {load_before}, at the end: {os.getloadavg()}"
        " (the machine is shared: other runs compete for its 2 cores)."
    )
    return report
