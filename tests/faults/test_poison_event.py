"""A poison event (limits beyond Postgres `integer`, a NUL in a label) among healthy ones: the
worker logs and counts it, retries it with backoff, and keeps syncing everything else."""

import asyncio

import asyncpg
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import Redis

from inventory.local_servers import RedisServer, free_port
from tests.booking.helpers import WorkerProcess, wait_for
from tests.faults import invariants
from tests.faults.helpers import create_events, metric
from tests.faults.load import SELL, Outcomes, assert_answers, run_load
from tests.faults.poison import create_unchecked


def _poison(event_id: str, holder_limit: int, section: str) -> pb.CreateEventRequest:
    request = pb.CreateEventRequest(
        event_id=event_id, limits=pb.EventLimits(max_seats_per_holder=holder_limit)
    )
    for i in range(100):
        request.seats.add(seat_id=f"s{i:05d}", section=section, row=str(i // 50), number=str(i))
    return request


async def test_poison_events_among_healthy_ones_stop_nothing(
    redis: Redis,
    redis_server: RedisServer,
    grpc_target: str,
    stub: "pb_grpc.InventoryServiceAsyncStub",
    pg: asyncpg.Connection,
    pg_url: str,
) -> None:
    events: dict[str, list[str]] = await create_events(stub, ["show-1", "show-2"], 600)
    port = free_port()
    worker = WorkerProcess(redis_server.url, pg_url, "--metrics-port", str(port))
    worker.start()
    try:
        told = Outcomes()
        load = asyncio.create_task(
            run_load(grpc_target, told, events, 8, buyers=4, mix=SELL, pause=0.02, seed=13)
        )
        await asyncio.sleep(1)
        poison = {
            "poison-limit": _poison("poison-limit", 2_147_483_648, "stalls"),
            "poison-nul": _poison("poison-nul", 20, "stalls\x00"),
        }
        for request in poison.values():
            await create_unchecked(redis, request)
            events[request.event_id] = [seat.seat_id for seat in request.seats]
        # Bookings of the poison events too, through the service: they must sync as well.
        poison_told = Outcomes()
        poisoned = {e: events[e] for e in poison}
        await run_load(
            grpc_target, poison_told, poisoned, 2, buyers=2, mix=SELL, pause=0.02, seed=7
        )
        await load
        assert_answers(told, abandoned=False)
        assert_answers(poison_told, ok_over=0, abandoned=False)
        told.bookings.update(poison_told.bookings)
        assert len(told.bookings) > 50 and len(poison_told.bookings) > 5

        async def counted() -> bool:
            return await metric(port, "lml_event_failures_total") >= len(poison)

        await wait_for(counted, within=30)
        await wait_for(lambda: invariants.drained(redis, events), within=60)
        assert worker.alive(), "the worker died"
        # Retried with backoff: a few attempts, not one per discovery round (every 0.1 s).
        assert await metric(port, "lml_event_failures_total") < 20 * len(poison)
    finally:
        assert worker.stop() == 0
    await invariants.check_redis(redis, told, events)
    await invariants.check_postgres(redis, pg, events)
    saved = await pg.fetch("SELECT event_id FROM events ORDER BY 1")
    assert [r["event_id"] for r in saved] == ["show-1", "show-2"]
    assert await pg.fetchval("SELECT count(*) FROM dead_letters") == 0
