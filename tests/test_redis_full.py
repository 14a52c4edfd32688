"""Redis over its maxmemory with the noeviction policy: a call that adds data (a hold, a new
event, a join) is refused before it runs, as RESOURCE_EXHAUSTED with the reason
REDIS_OUT_OF_MEMORY; releases, confirms, reads and the sweep still run (their functions are
flagged allow-oom, inventory/scripts.py), and the sweep's purge frees memory until holds are
taken again. A key's rate, whose count Redis refuses to write then, is counted by each service
process alone meanwhile."""

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from clients import InventoryClient, RateLimited, RedisOutOfMemory
from inventory import keys
from inventory.auth import KeyRing
from inventory.engine import Inventory
from inventory.local_servers import RedisServer, free_port
from inventory.quotas import KEY_PREFIX, Quotas
from inventory.server import create_server
from tests.api_keys import write_keys
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


# 6 calls a minute; leases of one call (5 % of 6, at least 1): Redis is asked at every call.
RATE = {"ops_per_s": 0.1, "burst": 6}


@pytest.fixture
async def rated_client(
    inventory: Inventory, private_server: RedisServer, tmp_path: Path
) -> AsyncIterator[InventoryClient]:
    """The SDK with a key of RATE, against a service that counts rates in the full Redis."""
    made = write_keys(
        tmp_path / "keys.json", {"seller": {"scopes": ["sell", "read"], "rate": RATE}}
    )
    target = f"127.0.0.1:{free_port()}"
    quotas = Quotas(private_server.url, lease_share=0.05)
    server, _health = create_server(
        inventory, target, keys=KeyRing(tmp_path / "keys.json"), quotas=quotas
    )
    await server.start()
    async with InventoryClient(target, api_key=made["seller"]) as sdk:
        yield sdk
    await server.stop(None)
    await quotas.close()


async def _counted(redis: Redis) -> int:
    """Calls counted in Redis, over every key and window."""
    return sum([int(await redis.get(k) or 0) async for k in redis.scan_iter(f"{KEY_PREFIX}*")])


async def test_over_maxmemory_a_rated_key_releases_and_confirms_within_its_rate(
    rated_client: InventoryClient,
    inventory: Inventory,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await inventory.create_event(pb.CreateEventRequest(event_id="rated", seats=SEATS[:10]))
    holds = [
        (
            await inventory.hold(
                pb.HoldRequest(event_id="rated", holder_id=f"h{i}", seat_ids=[f"s{i}"])
            )
        ).hold
        for i in range(3)
    ]
    await rated_client.availability("rated")  # counted in Redis
    assert await _counted(redis) == 1

    await fill(redis)
    # Redis refuses to count: the calls are counted in the process, within the key's rate.
    assert await rated_client.release("rated", holds[0].hold_id, holds[0].holder_id) == ["s0"]
    booking = await rated_client.confirm("rated", holds[1].hold_id, holds[1].holder_id)
    assert list(booking.seat_ids) == ["s1"]
    await _refused(rated_client.hold("rated", "late", ["s5"]))  # the engine's refusal
    for _ in range(3):
        await rated_client.availability("rated")
    # 6 calls: the key's rate holds all the same, refused as ever.
    with pytest.raises(RateLimited) as limited:
        await rated_client.release("rated", holds[2].hold_id, holds[2].holder_id)
    assert limited.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert limited.value.reason == "RATE_LIMITED"
    assert limited.value.retry_after and limited.value.retry_after > 0
    assert await _counted(redis) == 1
    said = [r.getMessage() for r in caplog.records if "counted by this process" in r.getMessage()]
    assert len(said) == 1, said  # once, not per call

    await redis.config_set("maxmemory", 0)
    await asyncio.sleep(0.1)  # past the local memory of the refusal
    # Counted in Redis again, where the minute has one call (the local count is not carried).
    assert await rated_client.release("rated", holds[2].hold_id, holds[2].holder_id) == ["s2"]
    assert await _counted(redis) == 2
