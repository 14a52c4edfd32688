"""Redis over its maxmemory with the noeviction policy: a call that adds data (a hold, a new
event, a join) is refused before it runs, as RESOURCE_EXHAUSTED with the reason
REDIS_OUT_OF_MEMORY; releases, confirms, reads and the sweep still run (their functions are
flagged allow-oom, inventory/scripts.py), and the sweep's purge frees memory until holds are
taken again."""

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime

import grpc
import pytest
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from clients import InventoryClient, RedisOutOfMemory
from inventory import keys
from inventory.engine import Inventory
from inventory.local_servers import free_port
from inventory.server import create_server
from tests.redis_memory import fill, used_memory

SEATS = [
    pb.Seat(seat_id=f"s{i}", section="S", row=str(i // 100), number=str(i)) for i in range(1200)
]
RELEASED = 900  # holds released before Redis fills: tombstones for the sweep to purge


@pytest.fixture
def redis(noeviction_redis: Redis) -> Redis:
    return noeviction_redis


@pytest.fixture
async def inventory(redis: Redis) -> Inventory:
    return Inventory(redis)


@pytest.fixture
async def client(inventory: Inventory) -> AsyncIterator[InventoryClient]:
    target = f"127.0.0.1:{free_port()}"
    server, _health = create_server(inventory, target)
    await server.start()
    async with InventoryClient(target) as sdk:
        yield sdk
    await server.stop(None)


async def _refused(call: Awaitable[object]) -> None:
    with pytest.raises(RedisOutOfMemory) as refused:
        await call
    error = refused.value
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "REDIS_OUT_OF_MEMORY" and "maxmemory" in error.message


async def test_over_maxmemory_holds_are_refused_and_what_frees_memory_still_runs(
    client: InventoryClient, inventory: Inventory, redis: Redis
) -> None:
    await client.create_event("full", SEATS)
    holds = await asyncio.gather(
        *(client.hold("full", f"h{i}", [f"s{i}"], ttl=600) for i in range(RELEASED + 3))
    )
    for start in range(0, RELEASED, 100):
        await asyncio.gather(
            *(client.release("full", h.hold_id, h.holder_id) for h in holds[start : start + 100])
        )
    await client.hold("full", "short", ["s1100"], ttl=0.2)
    to_release, to_confirm, to_extend = holds[RELEASED:]
    opens_at = datetime.now(UTC)

    async def configure_queue(enabled: bool) -> None:
        await client.configure_queue(
            "full",
            opens_at=opens_at,
            admit_per_minute=60,
            max_active=1,
            admission_ttl=60,
            enabled=enabled,
        )

    await configure_queue(enabled=True)

    await fill(redis)
    await _refused(client.hold("full", "late", ["s1000"]))
    await _refused(client.create_event("another", SEATS[:3]))
    await _refused(client.extend("full", to_extend.hold_id, to_extend.holder_id, ttl=900))
    await _refused(client.join_queue("full", "ann"))
    # Releases, confirms (the payment is taken), reads and the operator's pause go on.
    assert await client.release("full", to_release.hold_id, to_release.holder_id) == ["s900"]
    booking = await client.confirm("full", to_confirm.hold_id, to_confirm.holder_id)
    assert list(booking.seat_ids) == ["s901"]
    assert (await client.pause_queue("full")).state == pb.QUEUE_STATE_PAUSED
    seats = {s.seat_id: s.status for s in (await client.availability("full")).seats}
    assert seats["s900"] == pb.SEAT_STATUS_AVAILABLE and seats["s901"] == pb.SEAT_STATUS_BOOKED
    assert seats["s1000"] == pb.SEAT_STATUS_AVAILABLE
    assert not await redis.exists(keys.event_keys("another").meta)
    deadlines = keys.event_keys("full").deadlines
    extended_to = await redis.zscore(deadlines, to_extend.hold_id)
    assert extended_to == to_extend.expires_at.ToMilliseconds()  # the extend did not run

    # The sweep expires the short hold, then purges the released holds' tombstones once their
    # retention (an hour) has passed: memory comes back and holds are taken again.
    await asyncio.sleep(0.3)
    assert await inventory.sweep() == 1
    seats = {s.seat_id: s.status for s in (await client.availability("full")).seats}
    assert seats["s1100"] == pb.SEAT_STATUS_AVAILABLE
    await redis.config_set("maxmemory", 0)  # ZADD adds data: the limit is lifted to age them
    await redis.zadd(deadlines, {h.hold_id: 0 for h in holds[:RELEASED]}, xx=True)
    await redis.config_set("maxmemory", await used_memory(redis) - 1024)
    await _refused(client.hold("full", "late", ["s1000"]))
    before = await used_memory(redis)
    await inventory.sweep()
    after = await used_memory(redis)
    assert await redis.zcard(deadlines) < 10 and before - after > 100 * 1024, (before, after)
    await configure_queue(enabled=False)
    assert list((await client.hold("full", "late", ["s1000"])).seat_ids) == ["s1000"]
