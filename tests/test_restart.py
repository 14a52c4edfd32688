"""Restart safety: Redis forgetting the library (FUNCTION FLUSH, a restart) or going away and coming
back with its data (append-only file) never breaks an operation; the engine reloads and goes on."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from inventory import keys
from inventory.engine import Inventory
from inventory.local_servers import RedisServer
from inventory.redis_client import connect

EVENT = "restart-ev"
SEATS = [f"r{i}" for i in range(10)]


def _create_request(event_id: str = EVENT) -> pb.CreateEventRequest:
    request = pb.CreateEventRequest(event_id=event_id)
    for number, seat_id in enumerate(SEATS):
        request.seats.add(seat_id=seat_id, section="S", row="1", number=str(number))
    return request


async def _hold(inventory: Inventory, holder: str, seats: list[str]) -> pb.Hold:
    request = pb.HoldRequest(event_id=EVENT, holder_id=holder, seat_ids=seats)
    return (await inventory.hold(request)).hold


def _statuses(response: pb.GetAvailabilityResponse) -> dict[str, str]:
    return {
        seat.seat_id: pb.SeatStatus.Name(seat.status).removeprefix("SEAT_STATUS_")
        for seat in response.seats
    }


async def test_every_operation_reloads_the_library_after_function_flush(
    inventory: Inventory, redis: Redis
) -> None:
    await redis.function_flush()
    assert (await inventory.create_event(_create_request())).created
    await redis.function_flush()
    first = await _hold(inventory, "ann", ["r0", "r1"])
    await redis.function_flush()
    extended = await inventory.extend(
        pb.ExtendRequest(
            event_id=EVENT, hold_id=first.hold_id, holder_id="ann", ttl=Duration(seconds=1000)
        )
    )
    assert extended.hold.expires_at.ToMilliseconds() > first.expires_at.ToMilliseconds()
    await redis.function_flush()
    booking = await inventory.confirm(
        pb.ConfirmRequest(event_id=EVENT, hold_id=first.hold_id, holder_id="ann", payment_ref="p")
    )
    assert list(booking.booking.seat_ids) == ["r0", "r1"]
    second = await _hold(inventory, "bob", ["r2"])
    await redis.function_flush()
    released = await inventory.release(
        pb.ReleaseRequest(event_id=EVENT, hold_id=second.hold_id, holder_id="bob")
    )
    assert list(released.seat_ids) == ["r2"]
    await redis.function_flush()
    assert await inventory.sweep() == 0
    await redis.function_flush()
    snapshot = await inventory.availability(pb.GetAvailabilityRequest(event_id=EVENT))
    assert _statuses(snapshot) == {"r0": "BOOKED", "r1": "BOOKED"} | {
        seat: "AVAILABLE" for seat in SEATS[2:]
    }
    await redis.function_flush()
    assert not (await inventory.create_event(_create_request())).created


async def test_a_batch_reloads_the_missing_library_and_runs_every_operation(
    inventory: Inventory, redis: Redis
) -> None:
    await inventory.create_event(_create_request())
    to_extend = await _hold(inventory, "ann", ["r0"])
    to_release = await _hold(inventory, "bob", ["r1"])
    to_confirm = await _hold(inventory, "cy", ["r2"])
    await redis.function_flush()
    operations = [
        pb.Operation(
            id="hold", hold=pb.HoldRequest(event_id=EVENT, holder_id="dee", seat_ids=["r3", "r4"])
        ),
        pb.Operation(
            id="extend",
            extend=pb.ExtendRequest(event_id=EVENT, hold_id=to_extend.hold_id, holder_id="ann"),
        ),
        pb.Operation(
            id="release",
            release=pb.ReleaseRequest(event_id=EVENT, hold_id=to_release.hold_id, holder_id="bob"),
        ),
        pb.Operation(
            id="confirm",
            confirm=pb.ConfirmRequest(event_id=EVENT, hold_id=to_confirm.hold_id, holder_id="cy"),
        ),
    ]
    results = {result.id: result for result in await inventory.execute(operations)}
    assert {name: result.WhichOneof("result") for name, result in results.items()} == {
        "hold": "hold",
        "extend": "extend",
        "release": "release",
        "confirm": "confirm",
    }
    assert list(results["hold"].hold.hold.seat_ids) == ["r3", "r4"]
    assert list(results["release"].release.seat_ids) == ["r1"]
    assert list(results["confirm"].confirm.booking.seat_ids) == ["r2"]
    # Each operation ran once: one change per operation after the three holds.
    assert await redis.xlen(keys.event_keys(EVENT).changes) == 3 + 4


@pytest.fixture
async def persistent(tmp_path: Path) -> AsyncIterator[tuple[RedisServer, Redis]]:
    server = RedisServer(tmp_path / "redis", persist=True)
    server.start()
    client = connect(server.url)  # the service's own client: it must survive the restart
    try:
        yield server, client
    finally:
        await client.aclose()
        server.stop()


async def test_a_restart_keeps_the_inventory_and_the_engine_reconnects(
    persistent: tuple[RedisServer, Redis],
) -> None:
    server, client = persistent
    inventory = Inventory(client)
    await inventory.create_event(_create_request())
    live = await _hold(inventory, "ann", ["r0", "r1"])
    booked = await _hold(inventory, "bob", ["r2"])
    confirm = pb.ConfirmRequest(event_id=EVENT, hold_id=booked.hold_id, holder_id="bob")
    booking = (await inventory.confirm(confirm)).booking
    before = await inventory.availability(pb.GetAvailabilityRequest(event_id=EVENT))

    # A new process: the scripts are gone, the data comes back from the append-only file. The
    # loop runs meanwhile, as a service's does, so the pool sees its connections close.
    await asyncio.to_thread(server.restart)

    after = await inventory.availability(pb.GetAvailabilityRequest(event_id=EVENT))
    assert after == before
    assert (await inventory.confirm(confirm)).booking == booking  # the retry: same booking
    extend = pb.ExtendRequest(event_id=EVENT, hold_id=live.hold_id, holder_id="ann")
    assert (await inventory.extend(extend)).hold.seat_ids == ["r0", "r1"]
    assert await client.xlen(keys.event_keys(EVENT).outbox) == 1

    await asyncio.to_thread(server.restart)
    operations = [
        pb.Operation(
            id="release",
            release=pb.ReleaseRequest(event_id=EVENT, hold_id=live.hold_id, holder_id="ann"),
        ),
        pb.Operation(
            id="hold", hold=pb.HoldRequest(event_id=EVENT, holder_id="cy", seat_ids=["r5"])
        ),
    ]
    results = {result.id: result for result in await inventory.execute(operations)}
    assert list(results["release"].release.seat_ids) == ["r0", "r1"]
    assert list(results["hold"].hold.hold.seat_ids) == ["r5"]
    final = _statuses(await inventory.availability(pb.GetAvailabilityRequest(event_id=EVENT)))
    assert final == {seat: "AVAILABLE" for seat in SEATS} | {"r2": "BOOKED", "r5": "HELD"}
