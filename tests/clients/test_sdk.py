"""InventoryClient against a real server: typed errors per reason, retries that do not
double-apply (a failure injected after the server applied the call), Execute multiplexing."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from clients import (
    EventExists,
    EventNotFound,
    HoldConfirmed,
    HoldExpired,
    HoldNotFound,
    InvalidArgument,
    InventoryClient,
    LimitExceeded,
    NotHolder,
    SeatsUnavailable,
    ServiceUnavailable,
)
from inventory import keys
from tests.clients.conftest import SEATS, Service, seats


@pytest.fixture(params=[False, True], ids=["unary", "multiplexed"])
async def sdk(service: Service, request: pytest.FixtureRequest) -> AsyncIterator[InventoryClient]:
    async with InventoryClient(service.target, multiplex=request.param) as client:
        yield client


async def test_errors_carry_their_reason(sdk: InventoryClient) -> None:
    await sdk.create_event("show", seats(), pb.EventLimits(max_seats_per_hold=3))
    hold = await sdk.hold("show", "alice", ["A1", "A2"])

    with pytest.raises(SeatsUnavailable) as taken:
        await sdk.hold("show", "bob", ["A3", "A2", "A1"])
    assert sorted(taken.value.seat_ids) == ["A1", "A2"]
    assert taken.value.reason == "SEATS_UNAVAILABLE"
    with pytest.raises(LimitExceeded) as limit:
        await sdk.hold("show", "bob", ["A5", "A6", "A7", "A8"])
    assert limit.value.limit == "max_seats_per_hold"
    with pytest.raises(NotHolder):
        await sdk.extend("show", hold.hold_id, "bob")
    with pytest.raises(HoldNotFound):
        await sdk.release("show", "no-such-hold", "alice")
    with pytest.raises(EventNotFound):
        await sdk.hold("nope", "alice", ["A1"])
    with pytest.raises(InvalidArgument):
        await sdk.hold("show", "alice", [])
    with pytest.raises(EventExists):
        await sdk.create_event("show", seats("A1"))

    await sdk.confirm("show", hold.hold_id, "alice", payment_ref="pay-1")
    with pytest.raises(HoldConfirmed):
        await sdk.release("show", hold.hold_id, "alice")
    short = await sdk.hold("show", "carol", ["A9"], ttl=0.05)
    await asyncio.sleep(0.2)
    with pytest.raises(HoldExpired):
        await sdk.extend("show", short.hold_id, "carol")


async def test_calls_succeed_end_to_end(sdk: InventoryClient) -> None:
    created = await sdk.create_event("show", seats())
    assert created.created and created.event.seat_count == len(SEATS)
    assert len((await sdk.get_event("show", include_seats=True)).seats) == len(SEATS)
    hold = await sdk.hold("show", "alice", ["A1"], ttl=60)
    extended = await sdk.extend("show", hold.hold_id, "alice", ttl=120)
    assert extended.expires_at.ToMilliseconds() > hold.expires_at.ToMilliseconds()
    booking = await sdk.confirm("show", hold.hold_id, "alice", payment_ref="pay-1")
    assert list(booking.seat_ids) == ["A1"] and booking.payment_ref == "pay-1"
    other = await sdk.hold("show", "bob", ["A2"])
    assert await sdk.release("show", other.hold_id, "bob") == ["A2"]
    assert await sdk.ready()


@pytest.mark.parametrize("method", ["Hold", "Extend", "Release", "Confirm"])
async def test_retry_after_an_applied_call_does_not_apply_it_twice(
    client: InventoryClient, service: Service, redis: Redis, method: str
) -> None:
    await client.create_event("show", seats())
    hold = await client.hold("show", "alice", ["A1", "A2"], ttl=60)
    service.faults.armed[method] = 1
    service.faults.applied.clear()
    if method == "Hold":
        retried = await client.hold("show", "alice", ["A3"])
        assert list(retried.seat_ids) == ["A3"]
        holds = await redis.hgetall(keys.event_keys("show").holds)
        assert len(holds) == 2  # the first attempt's hold, returned again: not a second one
        assert retried.hold_id in holds
    elif method == "Extend":
        await client.extend("show", hold.hold_id, "alice", ttl=90)
    elif method == "Release":
        assert await client.release("show", hold.hold_id, "alice") == ["A1", "A2"]
    else:
        booking = await client.confirm("show", hold.hold_id, "alice", payment_ref="pay")
        outbox: Any = await redis.xrange(keys.event_keys("show").outbox)
        assert [entry["booking_id"] for _, entry in outbox] == [booking.booking_id]
    assert service.faults.applied[method] == 2  # applied, failed, retried
    assert service.faults.armed[method] == 0
    changes = await redis.xlen(keys.event_keys("show").changes)
    # The first hold and this call; a repeated Extend only moves the expiry again (and says so).
    assert changes == (3 if method == "Extend" else 2)


async def test_multiplexed_retry_after_an_applied_batch_does_not_apply_it_twice(
    service: Service, redis: Redis
) -> None:
    async with InventoryClient(service.target, multiplex=True) as client:
        await client.create_event("show", seats())
        service.faults.armed["Execute"] = 1
        holds = await asyncio.gather(*(client.hold("show", f"u{n}", [SEATS[n]]) for n in range(8)))
    assert service.faults.applied["Execute"] >= 2
    stored = await redis.hgetall(keys.event_keys("show").holds)
    assert sorted(stored) == sorted(hold.hold_id for hold in holds)
    assert await redis.xlen(keys.event_keys("show").changes) == 8


async def test_retries_give_up_after_their_attempts(service: Service, redis: Redis) -> None:
    async with InventoryClient(service.target, attempts=3) as client:
        await client.create_event("show", seats())
        service.faults.armed["Hold"] = 5
        with pytest.raises(ServiceUnavailable):
            await client.hold("show", "alice", ["A1"])
    assert service.faults.applied["Hold"] == 3
    assert len(await redis.hgetall(keys.event_keys("show").holds)) == 1


async def test_multiplexing_batches_concurrent_calls(service: Service) -> None:
    async with InventoryClient(service.target, multiplex=True, batch_window=0.01) as client:
        await client.create_event("show", seats())
        holds = await asyncio.gather(
            *(client.hold("show", f"u{n}", [s]) for n, s in enumerate(SEATS))
        )
        releases = await asyncio.gather(
            *(client.release("show", hold.hold_id, hold.holder_id) for hold in holds)
        )
        assert client.multiplexer is not None
        assert client.multiplexer.batches_sent < len(SEATS)  # 80 calls, few batches
    assert sorted(seat for released in releases for seat in released) == sorted(SEATS)


async def test_ttl_travels_as_a_duration(client: InventoryClient) -> None:
    await client.create_event(
        "show",
        seats(),
        pb.EventLimits(default_ttl=Duration(seconds=30), max_ttl=Duration(seconds=60)),
    )
    with pytest.raises(InvalidArgument):
        await client.hold("show", "alice", ["A1"], ttl=61)
