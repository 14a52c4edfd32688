"""Booking-worker sync benchmark: throughput draining a backlog, and lag under steady load.

    python bench/sync_bench.py [--backlog-bookings 25000] [--rate 1000] [--seconds 20]

Runs a private redis-server and a fresh Postgres database (the local server on 127.0.0.1:5432
when reachable, else a private cluster), and `lml-worker run` as its own process, as deployed.
1. Throughput: bookings of 4 seats are confirmed while no worker runs; then the worker starts and
   the time from its first commit to the last booked seat in Postgres is measured.
2. Lag: with the worker caught up, holds and confirms (2 seats each) run at a steady rate; the
   lag of each booking is synced_at (clock_timestamp() at its insert, in the commit's
   transaction) minus confirmed_at (Redis's clock), both on this machine.
Targets: >= 5,000 booked seats/s, lag p99 < 250 ms at 1,000 confirms/s.
"""

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from booking import migrations
from inventory import keys
from inventory.engine import Inventory
from inventory.local_servers import RedisServer, postgres_admin

BATCH = 500


async def create_event(inventory: Inventory, event_id: str, seats: int) -> list[str]:
    request = pb.CreateEventRequest(
        event_id=event_id, limits=pb.EventLimits(max_seats_per_hold=10, max_seats_per_holder=10)
    )
    ids = [f"{event_id}-s{i}" for i in range(seats)]
    for i, seat_id in enumerate(ids):
        request.seats.add(seat_id=seat_id, section="s", row=str(i // 100), number=str(i % 100))
    await inventory.create_event(request)
    return ids


async def hold_and_confirm(inventory: Inventory, event_id: str, groups: list[list[str]]) -> None:
    holders = [uuid.uuid4().hex for _ in groups]
    held = await inventory.execute(
        [
            pb.Operation(hold=pb.HoldRequest(event_id=event_id, holder_id=h, seat_ids=g))
            for h, g in zip(holders, groups, strict=True)
        ]
    )
    confirmed = await inventory.execute(
        [
            pb.Operation(
                confirm=pb.ConfirmRequest(
                    event_id=event_id, hold_id=r.hold.hold.hold_id, holder_id=h
                )
            )
            for h, r in zip(holders, held, strict=True)
        ]
    )
    failed = [r for r in confirmed if r.WhichOneof("result") != "confirm"]
    if failed:
        raise RuntimeError(f"{len(failed)} confirms failed: {failed[0]}")


def start_worker(redis_url: str, pg_url: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", "from booking.cli import main; main()", "run"]
    return subprocess.Popen(
        [
            *command,
            "--redis-url",
            redis_url,
            "--postgres-url",
            pg_url,
            "--discovery-interval",
            "0.1",
        ],
        stderr=subprocess.DEVNULL,
    )


async def wait_seats(pg: asyncpg.Connection, event_id: str, expected: int) -> tuple[float, float]:
    """Polls until `expected` seats of the event are in Postgres: (first seen, done) times."""
    first = 0.0
    while True:
        n = await pg.fetchval("SELECT count(*) FROM booked_seats WHERE event_id = $1", event_id)
        now = time.perf_counter()
        if n and not first:
            first = now
        if n >= expected:
            return first, now
        await asyncio.sleep(0.01)


async def throughput(
    inventory: Inventory, pg: asyncpg.Connection, redis_url: str, pg_url: str, bookings: int
) -> subprocess.Popen[bytes]:
    seats = await create_event(inventory, "backlog", bookings * 4)
    groups = [seats[i : i + 4] for i in range(0, len(seats), 4)]
    for start in range(0, len(groups), BATCH):
        await hold_and_confirm(inventory, "backlog", groups[start : start + BATCH])
    worker = start_worker(redis_url, pg_url)
    first, done = await wait_seats(pg, "backlog", len(seats))
    # The first poll that saw rows came after the first commit: add the first batch back.
    first_batch = await pg.fetchval(
        "SELECT count(*) FROM booked_seats s JOIN bookings b USING (booking_id) "
        "WHERE b.event_id = 'backlog' AND b.synced_at = (SELECT min(synced_at) FROM bookings "
        "WHERE event_id = 'backlog')"
    )
    span = await pg.fetchval(
        "SELECT extract(epoch FROM max(synced_at) - min(synced_at)) FROM bookings "
        "WHERE event_id = 'backlog'"
    )
    print(f"backlog: {bookings} bookings, {len(seats)} seats")
    print(
        f"  wall (first seen -> all seen): {done - first:.2f} s -> "
        f"{(len(seats) - first_batch) / (done - first):,.0f} seats/s"
    )
    print(
        f"  in Postgres (first insert -> last insert): {float(span):.2f} s -> "
        f"{(len(seats) - first_batch) / float(span):,.0f} seats/s"
    )
    return worker


async def caught_up(redis: Redis, event_id: str) -> None:
    """Waits until the worker has applied every outbox and change-log entry of the event."""
    streams = (keys.event_keys(event_id).outbox, keys.event_keys(event_id).changes)
    while True:
        groups = [g for s in streams for g in await redis.xinfo_groups(s)]
        if len(groups) == 2 and all(g["lag"] == 0 and g["pending"] == 0 for g in groups):
            return
        await asyncio.sleep(0.1)


async def lag(inventory: Inventory, pg: asyncpg.Connection, rate: int, seconds: int) -> None:
    """Confirms at a steady rate with the worker caught up; prints the lag percentiles."""
    await caught_up(inventory.redis, "backlog")  # the audit trail of the backlog included
    seats = await create_event(inventory, "steady", rate * seconds * 2)
    # Events go on sale long after they are created: let the worker save this one first.
    while True:
        if await pg.fetchval("SELECT 1 FROM events WHERE event_id = 'steady'"):
            break
        await asyncio.sleep(0.05)
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    groups = [seats[i : i + 2] for i in range(0, len(seats), 2)]
    start = time.perf_counter()
    sent = 0
    while sent < len(groups):
        due = start + (sent // per_tick) * tick
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await hold_and_confirm(inventory, "steady", groups[sent : sent + per_tick])
        sent += per_tick
    elapsed = time.perf_counter() - start
    await wait_seats(pg, "steady", len(groups) * 2)
    row = await pg.fetchrow(
        """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
                  max(ms) AS max
           FROM (SELECT extract(epoch FROM synced_at - confirmed_at) * 1000 AS ms
                 FROM bookings WHERE event_id = 'steady') x"""
    )
    assert row is not None
    print(
        f"steady: {len(groups)} confirms in {elapsed:.1f} s = {len(groups) / elapsed:,.0f}/s "
        f"(target {rate}/s), 2 seats each"
    )
    print(f"  lag p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms, max {row['max']:.1f} ms")


async def main(args: argparse.Namespace) -> None:
    with postgres_admin() as admin_url:
        await run(args, admin_url)


async def run(args: argparse.Namespace, admin_url: str) -> None:
    database = f"lml_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f"CREATE DATABASE {database}")
    pg_url = admin_url.rsplit("/", 1)[0] + "/" + database
    await migrations.apply(pg_url)
    redis_server = RedisServer(Path(tempfile.mkdtemp(prefix="lml-bench-redis-")))
    redis_server.start()
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    pg = await asyncpg.connect(pg_url)
    worker = None
    try:
        inventory = Inventory(redis)
        worker = await throughput(inventory, pg, redis_server.url, pg_url, args.backlog_bookings)
        await lag(inventory, pg, args.rate, args.seconds)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(20)
        await pg.close()
        await redis.aclose()
        redis_server.stop()
        await admin.execute(f"DROP DATABASE {database} WITH (FORCE)")
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog-bookings", type=int, default=25_000)
    parser.add_argument("--rate", type=int, default=1000, help="confirms per second")
    parser.add_argument("--seconds", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
