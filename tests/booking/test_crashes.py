"""`lml-worker run` processes killed, starved of Postgres, or racing each other: every confirmed
booking ends up in Postgres exactly once."""

import asyncio
import urllib.request

import asyncpg
from redis.asyncio import Redis

from booking import migrations
from booking.worker import AUDIT_GROUP, OUTBOX_GROUP
from inventory import keys
from inventory.engine import Inventory
from inventory.local_servers import PostgresServer, RedisServer, free_port
from tests.booking.helpers import (
    WorkerProcess,
    book,
    booked_in_redis,
    count,
    make_event,
    pairs,
    wait_for,
)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


async def _drained(redis: Redis, event_id: str) -> bool:
    """Both groups have read everything and have nothing pending."""
    event_keys = keys.event_keys(event_id)
    for stream, group in ((event_keys.outbox, OUTBOX_GROUP), (event_keys.changes, AUDIT_GROUP)):
        info = {g["name"]: g for g in await redis.xinfo_groups(stream)}
        if group not in info or info[group]["lag"] != 0 or info[group]["pending"] != 0:
            return False
    return True


async def _assert_exactly_once(redis: Redis, pg: asyncpg.Connection, event_id: str) -> None:
    booked = await booked_in_redis(redis, event_id)
    rows = await pg.fetch("SELECT seat_id, booking_id FROM booked_seats WHERE state = 'active'")
    assert {r["seat_id"]: r["booking_id"] for r in rows} == booked
    assert await count(pg, "SELECT count(*) FROM booked_seats") == len(booked)
    assert await count(pg, "SELECT count(*) FROM bookings") == len(set(booked.values()))
    assert await count(pg, "SELECT count(*) FROM booking_conflicts") == 0
    assert await count(pg, "SELECT count(*) FROM dead_letters") == 0
    # Each seat was held once and confirmed once: two audit rows, never more.
    assert await count(pg, "SELECT count(*) FROM seat_audit") == 2 * len(booked)


async def test_sigkill_mid_batch_then_restart_syncs_every_booking_once(
    redis: Redis,
    redis_server: RedisServer,
    inventory: Inventory,
    pg: asyncpg.Connection,
    pg_url: str,
) -> None:
    seats = await make_event(inventory, "show-1", 10_000)
    await book(inventory, "show-1", pairs(seats))
    outbox = keys.event_keys("show-1").outbox
    pending = 0
    for _ in range(5):  # until a kill lands while a batch is read and not yet acknowledged
        synced = await count(pg, "SELECT count(*) FROM bookings")
        first = WorkerProcess(redis_server.url, pg_url, "--batch-size", "200")
        first.start()

        async def progressed(before: int = synced) -> bool:
            return await count(pg, "SELECT count(*) FROM bookings") > before

        await wait_for(progressed, within=30)
        first.kill()
        pending = (await redis.xpending(outbox, OUTBOX_GROUP))["pending"]
        if pending:
            break
    assert pending > 0, "no kill landed in the middle of a batch"
    assert await count(pg, "SELECT count(*) FROM bookings") < 5000

    second = WorkerProcess(redis_server.url, pg_url, "--batch-size", "200")
    second.start()
    try:
        await wait_for(lambda: _drained(redis, "show-1"), within=60)
    finally:
        assert second.stop() == 0
    await _assert_exactly_once(redis, pg, "show-1")


async def test_postgres_outage_then_back_loses_nothing(
    redis: Redis,
    redis_server: RedisServer,
    inventory: Inventory,
    private_postgres: PostgresServer,
) -> None:
    admin = await asyncpg.connect(private_postgres.url())
    await admin.execute("CREATE DATABASE lml")
    await admin.close()
    pg_url = private_postgres.url("lml")
    await migrations.apply(pg_url)
    seats = await make_event(inventory, "show-1", 1000)
    worker = WorkerProcess(redis_server.url, pg_url)
    worker.start()
    try:
        await book(inventory, "show-1", pairs(seats[:200]))
        await wait_for(lambda: _drained(redis, "show-1"))

        private_postgres.stop()
        await book(inventory, "show-1", pairs(seats[200:]))
        # A worker started during the outage waits for Postgres, and stops cleanly when told.
        metrics_port = free_port()
        late = WorkerProcess(redis_server.url, pg_url, "--metrics-port", str(metrics_port))
        late.start()

        async def late_up() -> bool:
            try:
                return bool(await asyncio.to_thread(_scrape, metrics_port))
            except OSError:
                return False

        await wait_for(late_up)  # its metrics answer just before it takes signals
        await asyncio.sleep(2)  # both keep failing to write meanwhile
        assert worker.alive()
        assert late.stop() == 0
        private_postgres.start()

        await wait_for(lambda: _drained(redis, "show-1"), within=60)
    finally:
        assert worker.stop() == 0
    pg = await asyncpg.connect(pg_url)
    try:
        await _assert_exactly_once(redis, pg, "show-1")
        assert await count(pg, "SELECT count(*) FROM bookings") == 500
    finally:
        await pg.close()


async def test_workers_racing_on_the_same_streams_write_no_duplicates(
    redis: Redis,
    redis_server: RedisServer,
    inventory: Inventory,
    pg: asyncpg.Connection,
    pg_url: str,
) -> None:
    seats = await make_event(inventory, "show-1", 6000)
    await make_event(inventory, "show-2", 2000)
    metrics_port = free_port()
    workers = [
        WorkerProcess(redis_server.url, pg_url, "--batch-size", "50", *options)
        for options in (
            ("--metrics-port", str(metrics_port)),
            ("--group", OUTBOX_GROUP),
            ("--group", AUDIT_GROUP),
        )
    ]
    for worker in workers:
        worker.start()
    try:
        for start in range(0, 6000, 1000):
            await book(inventory, "show-1", pairs(seats[start : start + 1000]))
            await book(inventory, "show-2", pairs(seats[start // 3 : (start + 1000) // 3]))
            await asyncio.sleep(0.05)
        await wait_for(lambda: _drained(redis, "show-1"), within=60)
        await wait_for(lambda: _drained(redis, "show-2"), within=60)
        metrics = await asyncio.to_thread(_scrape, metrics_port)
        assert "lml_booking_sync_lag_seconds_bucket" in metrics
        assert "lml_booked_seats_synced_total" in metrics
    finally:
        assert [worker.stop() for worker in workers] == [0, 0, 0]
    event_keys = keys.event_keys("show-1")
    assert len(await redis.xinfo_consumers(event_keys.outbox, OUTBOX_GROUP)) == 2
    assert len(await redis.xinfo_consumers(event_keys.changes, AUDIT_GROUP)) == 2
    for event_id in ("show-1", "show-2"):
        booked = await booked_in_redis(redis, event_id)
        rows = await pg.fetch(
            "SELECT seat_id, booking_id FROM booked_seats WHERE event_id = $1", event_id
        )
        assert {r["seat_id"]: r["booking_id"] for r in rows} == booked
        assert len(rows) == len(booked)
    assert await count(pg, "SELECT count(*) FROM booking_conflicts") == 0
    total = await count(pg, "SELECT count(*) FROM booked_seats")
    assert await count(pg, "SELECT count(*) FROM seat_audit") == 2 * total
