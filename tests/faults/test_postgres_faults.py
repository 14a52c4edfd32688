"""Postgres stopped for 30 s, then Postgres answering 53300 (too many connections), under a load
of buyers through the service: the worker waits, dead-letters nothing, and syncs every booking
once Postgres is back."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import Redis

from booking import migrations
from inventory.local_servers import PostgresServer, RedisServer
from tests.booking.helpers import WorkerProcess, count, wait_for
from tests.faults import invariants
from tests.faults.helpers import create_events
from tests.faults.load import SELL, Outcomes, assert_answers, run_load

pytestmark = pytest.mark.slow
ROLE = "lml_worker"  # not a superuser: its CONNECTION LIMIT applies


@pytest.fixture
async def worker_database(private_postgres: PostgresServer) -> AsyncIterator[str]:
    """A database owned (and migrated) by a plain role of the private cluster; its URL."""
    admin = await asyncpg.connect(private_postgres.url())
    await admin.execute(f"CREATE ROLE {ROLE} LOGIN")
    await admin.execute(f"CREATE DATABASE lml OWNER {ROLE}")
    await admin.close()
    url = private_postgres.url("lml").replace("postgres@", f"{ROLE}@")
    await migrations.apply(url)
    yield url


async def test_postgres_stopped_for_30_s_under_load_loses_nothing(
    redis: Redis,
    redis_server: RedisServer,
    grpc_target: str,
    stub: "pb_grpc.InventoryServiceAsyncStub",
    private_postgres: PostgresServer,
    worker_database: str,
) -> None:
    events = await create_events(stub, ["show-1", "show-2"], 1000)
    worker = WorkerProcess(redis_server.url, worker_database)
    worker.start()
    try:
        told = Outcomes()
        load = asyncio.create_task(
            run_load(grpc_target, told, events, 36, buyers=4, mix=SELL, pause=0.05, seed=13)
        )
        await asyncio.sleep(3)
        await asyncio.to_thread(private_postgres.stop)
        await asyncio.sleep(30)
        assert worker.alive()
        await asyncio.to_thread(private_postgres.start)
        await load
        assert_answers(told, abandoned=False)
        assert len(told.bookings) > 100
        await wait_for(lambda: invariants.drained(redis, events), within=120)
        assert worker.alive()
    finally:
        assert worker.stop() == 0
    pg = await asyncpg.connect(worker_database)
    try:
        await invariants.check_redis(redis, told, events)
        await invariants.check_postgres(redis, pg, events)
        assert await count(pg, "SELECT count(*) FROM dead_letters") == 0
    finally:
        await pg.close()


async def test_postgres_answering_too_many_connections_dead_letters_nothing(
    redis: Redis,
    redis_server: RedisServer,
    grpc_target: str,
    stub: "pb_grpc.InventoryServiceAsyncStub",
    private_postgres: PostgresServer,
    worker_database: str,
) -> None:
    events = await create_events(stub, ["show-1", "show-2"], 1000)
    admin = await asyncpg.connect(private_postgres.url("lml"))
    worker = WorkerProcess(
        redis_server.url, worker_database, "--max-deliveries", "1", "--claim-idle-ms", "200"
    )
    worker.start()
    idle: list[asyncpg.Connection] = []
    try:
        told = Outcomes()
        await run_load(grpc_target, told, events, 2, buyers=4, mix=SELL, pause=0.02, seed=13)
        assert_answers(told, ok_over=0, abandoned=False)
        await wait_for(lambda: invariants.drained(redis, events), within=60)
        # The role's every slot taken by idle sessions, the worker's own sessions ended: each
        # connection the worker opens now is refused with SQLSTATE 53300.
        idle = [await asyncpg.connect(worker_database) for _ in range(2)]
        await admin.execute(f"ALTER ROLE {ROLE} CONNECTION LIMIT 2")
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE usename = $1 AND NOT pid = ANY($2::int[])",
            ROLE,
            [conn.get_server_pid() for conn in idle],
        )
        with pytest.raises(asyncpg.TooManyConnectionsError):
            await asyncpg.connect(worker_database)
        synced = await count(admin, "SELECT count(*) FROM bookings")
        during = Outcomes()
        await run_load(
            grpc_target, during, dict(events), 8, buyers=4, mix=SELL, pause=0.02, seed=14
        )
        assert_answers(during, ok_over=0, abandoned=False)
        assert len(during.bookings) > 20
        assert await count(admin, "SELECT count(*) FROM bookings") == synced
        assert await count(admin, "SELECT count(*) FROM dead_letters") == 0
        assert worker.alive()
        for conn in idle:
            await conn.close()
        await admin.execute(f"ALTER ROLE {ROLE} CONNECTION LIMIT -1")
        await wait_for(lambda: invariants.drained(redis, events), within=60)
        assert worker.alive()
    finally:
        for conn in idle:
            await conn.close()
        assert worker.stop() == 0
    told.bookings.update(during.bookings)
    try:
        await invariants.check_redis(redis, told, events)
        await invariants.check_postgres(redis, admin, events)
        assert await count(admin, "SELECT count(*) FROM dead_letters") == 0
    finally:
        await admin.close()
