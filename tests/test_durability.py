"""--confirm-durability: replica waits for a replica's acknowledgement (WAIT) on a connection of
its own, fails UNAVAILABLE when none comes, and the retry returns the same booking; aof is
refused with a clear message by a Redis without WAITAOF (Debian's 7.0)."""

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import redis as sync_redis
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc

from inventory import keys
from inventory.durability import ConfirmWaiter, Durability
from inventory.engine import Inventory
from inventory.local_servers import RedisServer, free_port
from inventory.redis_client import connect
from inventory.server import create_server
from tests.redis_replica import frozen, replica_of

SEATS = [pb.Seat(seat_id=f"s{i}") for i in range(100)]


@pytest.fixture
def replica(private_server: RedisServer, tmp_path: Path) -> Iterator[RedisServer]:
    with replica_of(private_server, tmp_path / "replica") as server:
        yield server


@pytest.fixture
async def stub(
    private_server: RedisServer, replica: RedisServer
) -> AsyncIterator["pb_grpc.InventoryServiceAsyncStub"]:
    redis = connect(private_server.url, timeout=5)
    waiter = ConfirmWaiter(private_server.url, Durability.REPLICA, timeout=2)
    address = f"127.0.0.1:{free_port()}"
    server, _health = create_server(Inventory(redis), address, confirm_waiter=waiter)
    await server.start()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        await stub.CreateEvent(pb.CreateEventRequest(event_id="ev", seats=SEATS))
        yield stub
    await server.stop(None)
    await waiter.close()
    await redis.aclose()


async def _hold(stub: "pb_grpc.InventoryServiceAsyncStub", seat: str) -> pb.Hold:
    request = pb.HoldRequest(event_id="ev", holder_id=seat, seat_ids=[seat])
    return (await stub.Hold(request, timeout=10)).hold


def _confirm(hold: pb.Hold) -> pb.ConfirmRequest:
    return pb.ConfirmRequest(
        event_id="ev",
        hold_id=hold.hold_id,
        holder_id=hold.holder_id,
        request_id="c-" + hold.hold_id,
    )


async def test_a_confirm_answers_once_the_replica_has_the_booking(
    stub: "pb_grpc.InventoryServiceAsyncStub", private_server: RedisServer, replica: RedisServer
) -> None:
    holds = [await _hold(stub, seat.seat_id) for seat in SEATS[:40]]
    primary = sync_redis.Redis(port=private_server.port, decode_responses=True)
    primary.config_resetstat()
    bookings = await asyncio.gather(*(stub.Confirm(_confirm(h), timeout=10) for h in holds))
    # Read at once: every booking acknowledged is on the replica already.
    on_replica = sync_redis.Redis(port=replica.port, decode_responses=True)
    seats = on_replica.hgetall(keys.event_keys("ev").seats)
    for booking in bookings:
        for seat in booking.booking.seat_ids:
            assert seats[seat] == f"B:{booking.booking.booking_id}"
    # Confirms that finish while a WAIT runs share the next one.
    waits = int(primary.info("commandstats")["cmdstat_wait"]["calls"])
    assert 1 <= waits < len(holds)
    on_replica.close()
    primary.close()


async def test_no_replica_acknowledgement_fails_unavailable_and_the_retry_gets_the_booking(
    stub: "pb_grpc.InventoryServiceAsyncStub", replica: RedisServer
) -> None:
    hold = await _hold(stub, "s0")
    batch_hold = await _hold(stub, "s1")
    with frozen(replica):
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.Confirm(_confirm(hold), timeout=10)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "replica" in (failure.value.details() or "")
        batch = pb.ExecuteRequest(operations=[pb.Operation(id="c", confirm=_confirm(batch_hold))])
        responses = [r async for r in stub.Execute(iter([batch]), timeout=10)]
        assert responses[0].results[0].error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    first = await _retried_confirm(stub, _confirm(hold))
    again = await _retried_confirm(stub, _confirm(hold))
    assert first.booking_id == again.booking_id and list(first.seat_ids) == ["s0"]
    responses = [r async for r in stub.Execute(iter([batch]), timeout=10)]
    assert responses[0].results[0].confirm.booking.seat_ids == ["s1"]


async def _retried_confirm(
    stub: "pb_grpc.InventoryServiceAsyncStub", request: pb.ConfirmRequest
) -> pb.Booking:
    """Retries UNAVAILABLE as the SDK does: the replica may take a moment to catch up."""
    for _ in range(50):
        try:
            return (await stub.Confirm(request, timeout=10)).booking
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("the confirm never became durable")


def test_aof_durability_is_refused_by_a_redis_without_waitaof(
    private_server: RedisServer,
) -> None:
    version = sync_redis.Redis(port=private_server.port).info("server")["redis_version"]
    if tuple(int(part) for part in version.split(".")[:2]) >= (7, 2):
        pytest.skip(f"Redis {version} has WAITAOF")
    serve = [sys.executable, "-m", "inventory.cli", "serve", "--redis-url", private_server.url]
    serve += ["--listen", f"127.0.0.1:{free_port()}", "--confirm-durability", "aof"]
    done = subprocess.run(serve, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "WAITAOF" in done.stderr and "7.2" in done.stderr and version in done.stderr
