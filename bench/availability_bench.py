"""Availability harness: GetAvailability as the service serves it (inventory/snapshots.py: chunked
reads, a per-event cache) against the whole-event read in one script it replaced
(bench/availability_whole.lua), in the same run on the same Redis.

Per event size: snapshots per second of one process (engine calls with the response serialized,
as gRPC would, by `readers` concurrent callers), Redis µs per snapshot (INFO commandstats) and
the longest single Redis call (SLOWLOG), for cached reads and for reads that start from nothing.
Then the latency of holds (each released after) on a 20,000-seat event while 100 callers in
another process read its availability in a loop, with no readers as the reference.
"""

import asyncio
import contextlib
import math
import multiprocessing
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from statistics import median, quantiles

from google.protobuf.duration_pb2 import Duration
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench.report import Report
from bench.stack import redis_server
from bench.workload import create_events
from inventory import event_shape, keys
from inventory.engine import Inventory
from inventory.script_calls import ok
from inventory.scripts import LUA_DIR, Call, Script, load_library
from inventory.snapshots import SnapshotCache

_STATUS = {"A": pb.SEAT_STATUS_AVAILABLE, "H": pb.SEAT_STATUS_HELD, "B": pb.SEAT_STATUS_BOOKED}
HOLD_EVENT_SEATS = 20_000
HELD_SHARE = 100  # one seat in this many is held in the events read
HOLD_SIZE = 10  # seats per hold (the benchmark events' limit)
SLOWLOG_LENGTH = 200_000  # every call of a measure, timed by Redis (slowlog-log-slower-than 0)


def _whole_script() -> Script:
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "includes").symlink_to(Path(str(LUA_DIR / "includes")))
        source = (Path(__file__).parent / "availability_whole.lua").read_text()
        (Path(directory) / "availability_whole.lua").write_text(source)
        return load_library(["availability_whole"], Path(directory), prefix="bench")[
            "availability_whole"
        ]


WHOLE = _whole_script()


async def whole_read(inventory: Inventory, event_id: str) -> pb.GetAvailabilityResponse:
    """The replaced read: one script call, parsed as the service parsed it."""
    reply = ok(await inventory.runner.run(Call(WHOLE, keys.event_keys(event_id), ())))
    response = pb.GetAvailabilityResponse(version=int(reply[1]))
    for area_id, capacity, _category, available in event_shape.stored_areas(reply[2]):
        response.areas.add(area_id=area_id, capacity=capacity, available=available)
    add = response.seats.add
    for i in range(3, len(reply), 2):
        add(seat_id=reply[i], status=_STATUS[reply[i + 1][0]])
    return response


Reader = Callable[[str], Awaitable[pb.GetAvailabilityResponse]]


def _readers(inventory: Inventory, mode: str) -> Reader:
    if mode == "whole":
        return lambda event_id: whole_read(inventory, event_id)
    if mode == "cached":
        return inventory.snapshots.availability
    if mode == "compact":
        return lambda event_id: inventory.snapshots.availability(event_id, unavailable_only=True)
    # "fresh": every call starts from nothing, a full chunked read
    return lambda event_id: SnapshotCache(inventory.redis, inventory.runner).availability(event_id)


async def _redis_us(redis: Redis) -> float:
    stats = await redis.info("commandstats")
    return sum(
        float(stats.get(f"cmdstat_{name}", {}).get("usec", 0)) for name in ("fcall", "xrange")
    )


async def _throughput(
    inventory: Inventory, mode: str, event_id: str, readers: int, duration: float
) -> tuple[float, float, float, float, float, int]:
    """(snapshots/s, Redis µs per snapshot, script calls per snapshot, median and p99 µs of one
    script call as SLOWLOG timed it, bytes of a response)."""
    redis, read = inventory.redis, _readers(inventory, mode)
    await read(event_id)  # the cache warm, the scripts loaded
    await redis.config_resetstat()
    await redis.slowlog_reset()
    calls = 0
    deadline = time.perf_counter() + duration

    size = 0

    async def loop() -> None:
        nonlocal calls, size
        while time.perf_counter() < deadline:
            size = len((await read(event_id)).SerializeToString())
            calls += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(readers)))
    elapsed = time.perf_counter() - started
    logged = await redis.slowlog_get(SLOWLOG_LENGTH)
    scripts = [
        float(entry["duration"]) for entry in logged if entry["command"].startswith(b"FCALL")
    ]
    return (
        calls / elapsed,
        await _redis_us(redis) / calls,
        len(scripts) / calls,
        median(scripts) if scripts else math.nan,
        _percentile(scripts, 99),
        size,
    )


def _reader_process(url: str, mode: str, event_id: str, readers: int, duration: float) -> None:
    async def run() -> None:
        redis = Redis.from_url(url, decode_responses=True)
        inventory = Inventory(redis)
        read = _readers(inventory, mode)
        deadline = time.perf_counter() + duration

        async def loop() -> None:
            while time.perf_counter() < deadline:
                # The one-script read times out under 100 readers: keep reading.
                with contextlib.suppress(RedisError):
                    (await read(event_id)).SerializeToString()

        await asyncio.gather(*(loop() for _ in range(readers)))
        await redis.aclose()

    asyncio.run(run())


async def _hold_latencies(inventory: Inventory, event_id: str, duration: float) -> list[float]:
    """Hold + release of one seat at a time for `duration` seconds: each hold's latency (ms)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + duration
    number = 0
    while time.perf_counter() < deadline:
        seat = f"s{number % HOLD_EVENT_SEATS}"
        number += 1
        started = time.perf_counter()
        held = await inventory.hold(
            pb.HoldRequest(event_id=event_id, holder_id="h", seat_ids=[seat])
        )
        latencies.append((time.perf_counter() - started) * 1000)
        await inventory.release(
            pb.ReleaseRequest(event_id=event_id, hold_id=held.hold.hold_id, holder_id="h")
        )
        await asyncio.sleep(0.002)
    return latencies


async def _holds_beside_readers(
    inventory: Inventory, url: str, mode: str | None, readers: int, duration: float
) -> list[float]:
    event_id = f"holds{HOLD_EVENT_SEATS}"
    if mode is None:
        return await _hold_latencies(inventory, event_id, duration)
    spawn = multiprocessing.get_context("spawn")
    process = spawn.Process(
        target=_reader_process, args=(url, mode, event_id, readers, duration + 3)
    )
    process.start()
    try:
        await asyncio.sleep(3)  # the readers' process imported and reading
        return await _hold_latencies(inventory, event_id, duration)
    finally:
        process.join(timeout=60)
        if process.is_alive():
            process.kill()


async def _hold_some(inventory: Inventory, event_id: str, seats: int) -> None:
    """Holds `seats` seats, spread over the event, for the whole run."""
    ttl = Duration(seconds=30 * 60)  # the events' longest
    for first in range(0, seats, HOLD_SIZE):
        seat_ids = [f"s{n * HELD_SHARE}" for n in range(first, min(first + HOLD_SIZE, seats))]
        holder = f"reader-bench-{first}"
        await inventory.hold(
            pb.HoldRequest(event_id=event_id, holder_id=holder, seat_ids=seat_ids, ttl=ttl)
        )


def _percentile(values: list[float], share: int) -> float:
    """NaN (shown as "-") for fewer than two values."""
    return quantiles(values, n=100)[share - 1] if len(values) > 1 else math.nan


async def _run(
    url: str, sizes: list[int], readers: int, duration: float, rounds: int, report: Report
) -> None:
    redis = Redis.from_url(url, decode_responses=True)
    inventory = Inventory(redis)
    await redis.config_set("slowlog-log-slower-than", 0)
    await redis.config_set("slowlog-max-len", SLOWLOG_LENGTH)
    try:
        for seats in sizes:
            await create_events(redis, [f"read{seats}"], seats)
            await _hold_some(inventory, f"read{seats}", seats // HELD_SHARE)
        await create_events(redis, [f"holds{HOLD_EVENT_SEATS}"], HOLD_EVENT_SEATS)
        rows: list[list[object]] = []
        for seats in sizes:
            measured: dict[str, list[tuple[float, float, float, float, float, int]]] = {}
            for _round in range(rounds):  # modes alternate: the machine's noise falls on all
                for mode in ("whole", "fresh", "cached", "compact"):
                    result = await _throughput(inventory, mode, f"read{seats}", readers, duration)
                    measured.setdefault(mode, []).append(result)
            base = median(r[0] for r in measured["whole"])
            for mode, results in measured.items():
                rate = median(r[0] for r in results)
                rows.append(
                    [
                        seats,
                        mode,
                        rate,
                        f"{rate / base:.2f}",
                        median(r[1] for r in results),
                        median(r[2] for r in results),
                        median(r[3] for r in results),
                        median(r[4] for r in results),
                        results[-1][5],
                    ]
                )
        report.text(
            f"## Snapshots per second of one process ({readers} concurrent callers, each "
            f"response serialized), {rounds} alternating rounds of {duration:g} s; medians",
            "`whole`: the replaced one-script read; `fresh`: a chunked read from nothing on "
            "every call (a cache miss); `cached`: the service's path (no writes meanwhile, so "
            "each refresh is one availability_version call); `compact`: the same with "
            f"unavailable_only (1 seat in {HELD_SHARE} is held). Redis µs: INFO commandstats "
            "(FCALL and XRANGE); one script call: every FCALL as SLOWLOG timed it (on a "
            "shared machine its p99 includes Redis being descheduled).",
        )
        report.table(
            [
                "seats",
                "read",
                "snapshots/s",
                "x whole",
                "Redis µs/snapshot",
                "script calls/snapshot",
                "one call µs, median",
                "one call µs, p99",
                "response bytes",
            ],
            rows,
        )
        hold_rows: list[list[object]] = []
        latencies: dict[str, list[float]] = {"none": [], "whole": [], "cached": []}
        for _round in range(rounds):
            for mode in ("none", "whole", "cached"):
                latencies[mode] += await _holds_beside_readers(
                    inventory, url, None if mode == "none" else mode, 100, duration
                )
        reference = _percentile(latencies["none"], 99)
        for mode, values in latencies.items():
            p99 = _percentile(values, 99)
            hold_rows.append([mode, len(values), median(values), p99, f"{p99 / reference:.2f}"])
        report.text(
            f"## Holds on a {HOLD_EVENT_SEATS:,}-seat event while 100 callers in another process "
            f"read its availability in a loop ({rounds} rounds of {duration:g} s per mode)",
            "Each hold released after; `none`: no readers (the reference).",
        )
        report.table(["readers", "holds", "p50 ms", "p99 ms", "p99 x none"], hold_rows)
    finally:
        await redis.aclose()


def availability(sizes: list[int], readers: int, duration: float, rounds: int) -> Report:
    report = Report("availability", "Availability snapshots: chunked and cached vs one script")
    with tempfile.TemporaryDirectory() as directory, redis_server(Path(directory)) as server:
        asyncio.run(_run(server.url, sizes, readers, duration, rounds, report))
    return report
