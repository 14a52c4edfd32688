"""Redis faults under a real load through the gRPC service (holds, confirms, releases, holds left
to expire; clients retrying UNAVAILABLE with their request ids), then the invariants on Redis:
no seat booked twice, every acknowledged booking in Redis exactly once, no seat held by a hold
that no longer exists, change-log versions gapless up to the event's version.

Each test is bounded: a load of 10-16 s, retries up to 20 s after it, a fault of a few seconds.
"""

import asyncio
import os
import signal
from pathlib import Path

import asyncpg
import pytest
import redis as sync_redis
from grpc_health.v1 import health_pb2

from inventory.local_servers import RedisServer
from inventory.redis_client import connect
from tests.booking.helpers import WorkerProcess, wait_for
from tests.faults import invariants
from tests.faults.load import Outcomes, assert_answers, run_load
from tests.faults.redis_harness import (
    EVENT,
    SEATS,
    TcpProxy,
    create_event,
    health,
    service,
    until_health,
)
from tests.redis_replica import frozen, replica_of

pytestmark = pytest.mark.slow

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


EVENTS = {EVENT: SEATS}


async def _checked(redis_url: str, outcomes: Outcomes) -> dict[str, int]:
    """The invariants on Redis and on the outbox (no worker consumed it); counts to report."""
    redis = connect(redis_url)
    try:
        counts = await invariants.check_redis(redis, outcomes, [EVENT])
        return counts | {"bookings": await invariants.check_outbox(redis, outcomes, EVENT)}
    finally:
        await redis.aclose()


async def test_frozen_redis_fails_fast_goes_not_serving_and_recovers(
    private_server: RedisServer, tmp_path: Path
) -> None:
    with service(private_server.url, tmp_path / "service.log") as server:
        await until_health(server.target, SERVING)
        await create_event(server.target)
        outcomes = Outcomes()
        load = asyncio.create_task(run_load(server.target, outcomes, EVENTS, seconds=12))
        await asyncio.sleep(2)
        with frozen(private_server):
            frozen_at = outcomes.elapsed()
            await until_health(server.target, NOT_SERVING, seconds=10)
            await asyncio.sleep(5)
            thawed_at = outcomes.elapsed()
        await until_health(server.target, SERVING)
        await load
    assert_answers(outcomes)
    during = outcomes.codes(frozen_at + 1.5, thawed_at)  # after the first deadline passed
    assert during["UNAVAILABLE"] > 0 and during["OK"] == 0, during
    assert outcomes.codes(thawed_at + 2)["OK"] > 0  # recovered
    counts = await _checked(private_server.url, outcomes)
    print(invariants.summary("redis frozen", outcomes, counts))


async def test_redis_killed_and_restarted_with_aof_always_keeps_every_booking(
    tmp_path: Path, pg_url: str
) -> None:
    """The booking worker runs through it too: every booking reaches Postgres exactly once."""
    redis_server = RedisServer(tmp_path / "redis", persist=True)  # appendfsync always
    redis_server.start()
    worker = WorkerProcess(redis_server.url, pg_url)
    worker.start()
    try:
        with service(redis_server.url, tmp_path / "service.log") as server:
            await until_health(server.target, SERVING)
            await create_event(server.target)
            outcomes = Outcomes()
            load = asyncio.create_task(run_load(server.target, outcomes, EVENTS, seconds=10))
            await asyncio.sleep(3)
            assert redis_server.process is not None
            os.kill(redis_server.process.pid, signal.SIGKILL)
            redis_server.process.wait()
            killed_at = outcomes.elapsed()
            await asyncio.sleep(1)
            await asyncio.to_thread(redis_server.start)  # same port and folder: the AOF replays
            await until_health(server.target, SERVING)
            await load
        assert_answers(outcomes)
        assert outcomes.codes(killed_at, killed_at + 1)["UNAVAILABLE"] > 0
        redis = connect(redis_server.url)
        try:
            counts = await invariants.check_redis(redis, outcomes, [EVENT])
            await wait_for(lambda: invariants.drained(redis, [EVENT]), within=120)
            assert worker.alive()
            pg = await asyncpg.connect(pg_url)
            try:
                await invariants.check_postgres(redis, pg, [EVENT])
            finally:
                await pg.close()
        finally:
            await redis.aclose()
        print(invariants.summary("redis killed, AOF always", outcomes, counts))
    finally:
        worker.stop()
        redis_server.stop()


async def test_failover_to_a_replica_loses_no_acknowledged_booking_with_replica_durability(
    private_server: RedisServer, tmp_path: Path
) -> None:
    """A TCP proxy stands for the failover's address switch (what Sentinel or a virtual IP
    does): the primary is killed while its replica lags, the replica is promoted, the proxy
    repointed to it."""
    with replica_of(private_server, tmp_path / "replica") as replica:
        proxy = TcpProxy(private_server.port)
        await proxy.start()
        options = ("--confirm-durability", "replica", "--durability-timeout", "1")
        try:
            with service(proxy.url, tmp_path / "service.log", *options) as server:
                await until_health(server.target, SERVING)
                await create_event(server.target)
                outcomes = Outcomes()
                load = asyncio.create_task(run_load(server.target, outcomes, EVENTS, seconds=10))
                await asyncio.sleep(3)
                # The replica falls behind (frozen), then the primary dies: what the replica has
                # not received is lost. Without --confirm-durability replica, bookings
                # acknowledged meanwhile were lost with it (checked: the invariants fail).
                with frozen(replica):
                    await asyncio.sleep(1.5)
                    assert private_server.process is not None
                    os.kill(private_server.process.pid, signal.SIGKILL)
                    private_server.process.wait()
                    private_server.process = None
                with sync_redis.Redis(port=replica.port) as promoted:
                    promoted.replicaof("NO", "ONE")
                proxy.repoint(replica.port)
                failed_over_at = outcomes.elapsed()
                # Confirms fail UNAVAILABLE until the new primary has a replica of its own.
                with replica_of(replica, tmp_path / "new-replica"):
                    await load
            assert_answers(outcomes)
            counts = await _checked(replica.url, outcomes)
            assert counts["bookings"] >= len(outcomes.bookings) > 0
            assert outcomes.codes(failed_over_at)["OK"] > 0
            print(invariants.summary("replica failover", outcomes, counts))
        finally:
            await proxy.close()


async def test_service_killed_under_load_loses_and_doubles_nothing(
    private_server: RedisServer, tmp_path: Path
) -> None:
    with service(private_server.url, tmp_path / "service.log") as server:
        await until_health(server.target, SERVING)
        await create_event(server.target)
        outcomes = Outcomes()
        load = asyncio.create_task(run_load(server.target, outcomes, EVENTS, seconds=10))
        for _ in range(2):
            await asyncio.sleep(3)
            server.kill()  # SIGKILL: calls in flight are cut, scripts may have run
            await asyncio.sleep(0.5)
            server.start()
        await load
    assert_answers(outcomes)
    counts = await _checked(private_server.url, outcomes)
    print(invariants.summary("service killed twice", outcomes, counts))


async def test_network_stall_and_cut_between_service_and_redis(
    private_server: RedisServer, tmp_path: Path
) -> None:
    proxy = TcpProxy(private_server.port)
    await proxy.start()
    try:
        with service(proxy.url, tmp_path / "service.log") as server:
            await until_health(server.target, SERVING)
            await create_event(server.target)
            outcomes = Outcomes()
            load = asyncio.create_task(run_load(server.target, outcomes, EVENTS, seconds=14))
            await asyncio.sleep(2)
            proxy.stall()  # packets held: nothing closes, nothing answers
            stalled_at = outcomes.elapsed()
            await until_health(server.target, NOT_SERVING, seconds=10)
            await asyncio.sleep(3)
            proxy.resume()
            resumed_at = outcomes.elapsed()
            await until_health(server.target, SERVING)
            await asyncio.sleep(2)
            proxy.cut()  # every connection closed at once
            await until_health(server.target, SERVING)
            await load
            assert await health(server.target) == SERVING
        assert_answers(outcomes)
        stalled = outcomes.codes(stalled_at + 1.5, resumed_at)
        assert stalled["UNAVAILABLE"] > 0 and stalled["OK"] == 0, stalled
        counts = await _checked(private_server.url, outcomes)
        print(invariants.summary("network stall and cut", outcomes, counts))
    finally:
        await proxy.close()
