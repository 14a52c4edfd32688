"""Peers side by side: the engine, per-seat SET NX EX, and Postgres SELECT ... FOR UPDATE.

One asyncio load generator drives all three with the same buyers: `concurrency` workers, each
holding 1-6 seats of a small contended event (70% of picks among its best 10% of seats) and
releasing them at once when granted. A hold is one call to the library each approach uses;
rounds alternate between approaches so noise falls on all alike.
"""

import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import numpy as np
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from bench.report import Report
from bench.stack import POSTGRES_DSN, postgres_database, redis_server
from bench.workload import HOT_PICK, HOT_SHARE, SEATS_PER_HOLD, create_events, seat_id
from inventory.engine import Inventory
from inventory.errors import InventoryError

EVENT = "peers"
HOLD_SECONDS = 900

# Holds seats for a holder: True when all were held, False when some were taken.
HoldFn = Callable[[str, list[str]], Awaitable[bool]]
ReleaseFn = Callable[[str, list[str]], Awaitable[None]]


@dataclass
class _Tally:
    latency: list[float] = field(default_factory=list)
    granted: int = 0
    refused: int = 0
    partial: int = 0  # SET NX only: holds that got some seats before finding one taken
    retried: int = 0  # Postgres only: transactions retried after a deadlock

    def p99_ms(self) -> float:
        return float(np.percentile(self.latency, 99) * 1000) if self.latency else float("nan")


def _pick(rng: random.Random, seats: int) -> list[str]:
    hot = int(seats * HOT_SHARE)
    count = rng.randint(*SEATS_PER_HOLD)
    chosen: set[int] = set()
    while len(chosen) < count:
        chosen.add(rng.randrange(hot) if rng.random() < HOT_PICK else rng.randrange(seats))
    return [seat_id(index) for index in sorted(chosen)]


async def _drive(
    hold: HoldFn, release: ReleaseFn, seats: int, concurrency: int, duration: float, tally: _Tally
) -> None:
    end = time.monotonic() + duration

    async def buyer(number: int) -> None:
        rng = random.Random(number)
        serial = 0
        while time.monotonic() < end:
            serial += 1
            holder, wanted = f"w{number}-{serial}", _pick(rng, seats)
            started = time.monotonic()
            granted = await hold(holder, wanted)
            tally.latency.append(time.monotonic() - started)
            if granted:
                tally.granted += 1
                await release(holder, wanted)
            else:
                tally.refused += 1

    await asyncio.gather(*(buyer(number) for number in range(concurrency)))


class _Engine:
    def __init__(self, redis: Redis) -> None:
        self.inventory = Inventory(redis)
        self.holds: dict[str, str] = {}

    async def hold(self, holder: str, wanted: list[str]) -> bool:
        request = pb.HoldRequest(event_id=EVENT, holder_id=holder, seat_ids=wanted)
        try:
            self.holds[holder] = (await self.inventory.hold(request)).hold.hold_id
            return True
        except InventoryError as error:
            if error.reason != "SEATS_UNAVAILABLE":
                raise
            return False

    async def release(self, holder: str, _wanted: list[str]) -> None:
        hold_id = self.holds.pop(holder)
        await self.inventory.release(
            pb.ReleaseRequest(event_id=EVENT, hold_id=hold_id, holder_id=holder)
        )


class _SetNx:
    """The hand-rolled way: one SET NX EX per seat, undone with DEL when a seat is taken."""

    def __init__(self, redis: Redis, tally: _Tally) -> None:
        self.redis, self.tally = redis, tally

    async def hold(self, holder: str, wanted: list[str]) -> bool:
        taken: list[str] = []
        for seat in wanted:
            if not await self.redis.set(f"seat:{EVENT}:{seat}", holder, nx=True, ex=HOLD_SECONDS):
                if taken:
                    self.tally.partial += 1
                    await self.redis.delete(*taken)
                return False
            taken.append(f"seat:{EVENT}:{seat}")
        return True

    async def release(self, _holder: str, wanted: list[str]) -> None:
        await self.redis.delete(*(f"seat:{EVENT}:{seat}" for seat in wanted))


class _Postgres:
    """Row locks: one transaction per hold, every wanted seat locked in seat order.

    Seats are always locked in the same order, so holds cannot deadlock one another; a
    deadlock Postgres still reports is retried, as such systems do, and counted.
    """

    LOCK = (
        "SELECT holder IS NULL OR expires_at < now() AS free FROM seats "
        "WHERE event_id = $1 AND seat_id = ANY($2::text[]) ORDER BY seat_id FOR UPDATE"
    )

    def __init__(self, pool: asyncpg.Pool, tally: _Tally) -> None:
        self.pool, self.tally = pool, tally

    async def hold(self, holder: str, wanted: list[str]) -> bool:
        while True:
            try:
                return await self._hold(holder, wanted)
            except asyncpg.DeadlockDetectedError:
                self.tally.retried += 1

    async def _hold(self, holder: str, wanted: list[str]) -> bool:
        async with self.pool.acquire() as connection, connection.transaction():
            seats = await connection.fetch(self.LOCK, EVENT, wanted)
            if len(seats) < len(wanted) or not all(seat["free"] for seat in seats):
                return False
            await connection.execute(
                "UPDATE seats SET holder = $3, expires_at = now() + make_interval(secs => $4) "
                "WHERE event_id = $1 AND seat_id = ANY($2::text[])",
                EVENT,
                wanted,
                holder,
                HOLD_SECONDS,
            )
            return True

    async def release(self, holder: str, wanted: list[str]) -> None:
        while True:
            try:
                async with self.pool.acquire() as connection, connection.transaction():
                    await connection.fetch(self.LOCK, EVENT, wanted)
                    await connection.execute(
                        "UPDATE seats SET holder = NULL, expires_at = NULL "
                        "WHERE event_id = $1 AND seat_id = ANY($2::text[]) AND holder = $3",
                        EVENT,
                        wanted,
                        holder,
                    )
                return
            except asyncpg.DeadlockDetectedError:
                self.tally.retried += 1


async def _postgres_pool(dsn: str, seats: int, size: int) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=size, max_size=size)
    async with pool.acquire() as connection:
        await connection.execute(
            "CREATE TABLE seats (event_id text, seat_id text, holder text, expires_at timestamptz,"
            " PRIMARY KEY (event_id, seat_id))"
        )
        await connection.copy_records_to_table(
            "seats",
            records=[(EVENT, seat_id(i), None, None) for i in range(seats)],
            columns=["event_id", "seat_id", "holder", "expires_at"],
        )
    return pool


async def _run(
    redis_url: str, dsn: str, seats: int, concurrency: int, duration: float, rounds: int
) -> dict[str, list[_Tally]]:
    redis = Redis.from_url(redis_url, decode_responses=True, max_connections=concurrency)
    pool = await _postgres_pool(dsn, seats, concurrency)
    await create_events(redis, [EVENT], seats)
    tallies: dict[str, list[_Tally]] = {
        "engine (Lua hold)": [],
        "SET NX EX per seat": [],
        "Postgres FOR UPDATE": [],
    }
    try:
        for _ in range(rounds):
            for name, tallies_of in tallies.items():
                tally = _Tally()
                peer: _Engine | _SetNx | _Postgres
                if name.startswith("engine"):
                    peer = _Engine(redis)
                elif name.startswith("SET"):
                    peer = _SetNx(redis, tally)
                else:
                    peer = _Postgres(pool, tally)
                await _drive(peer.hold, peer.release, seats, concurrency, duration, tally)
                tallies_of.append(tally)
    finally:
        await pool.close()
        await redis.aclose()
    return tallies


def peers(
    duration: float, concurrency: int, seats: int, rounds: int = 3, admin_dsn: str = POSTGRES_DSN
) -> Report:
    with (
        tempfile.TemporaryDirectory(prefix="lml-bench-") as tmp,
        redis_server(Path(tmp)) as server,
        postgres_database(f"lml_bench_peers_{os.getpid()}", admin_dsn) as dsn,
    ):
        tallies = asyncio.run(_run(server.url, dsn, seats, concurrency, duration, rounds))
    engine_rate = statistics.median(len(t.latency) / duration for t in tallies["engine (Lua hold)"])
    engine_p99 = statistics.median(t.p99_ms() for t in tallies["engine (Lua hold)"])
    rows: list[list[object]] = []
    for name, runs in tallies.items():
        rate = statistics.median(len(t.latency) / duration for t in runs)
        p99 = statistics.median(t.p99_ms() for t in runs)
        rows.append(
            [
                name,
                rate,
                p99,
                sum(t.granted for t in runs),
                sum(t.refused for t in runs),
                sum(t.partial for t in runs),
                sum(t.retried for t in runs),
                rate / engine_rate,
                p99 / engine_p99,
            ]
        )
    report = Report("peers", "Peers: the engine, per-seat SET NX EX, Postgres FOR UPDATE")
    report.text(
        f"Same machine, same run: {concurrency} asyncio workers in one Python process, each "
        f"holding 1-6 seats of a {seats:,}-seat event (70% of picks among the best 10%) and "
        f"releasing them at once when granted. {rounds} rounds of {duration:.0f} s per approach, "
        "alternating; medians shown, counts summed. Engine: `Inventory.hold` (one FCALL). "
        "SET NX EX: one `SET seat NX EX 900` per seat, undone with DEL when a seat is taken "
        "('partial' counts holds that had grabbed some seats first). Postgres 15: one "
        "transaction per hold, `SELECT ... ORDER BY seat_id FOR UPDATE` then UPDATE.",
    )
    report.table(
        [
            "approach",
            "holds/s (median)",
            "hold p99 ms",
            "granted",
            "refused",
            "partial holds",
            "deadlocks retried",
            "throughput vs engine",
            "p99 vs engine",
        ],
        rows,
    )
    return report
