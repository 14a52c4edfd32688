"""The service over a Redis that stops answering: calls fail UNAVAILABLE at the Redis deadline,
health turns NOT_SERVING while Redis is frozen and SERVING once it answers again."""

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc

from inventory.engine import Inventory
from inventory.health_probe import SERVICE_NAME, probe_redis
from inventory.local_servers import RedisServer, free_port
from inventory.redis_client import connect
from inventory.server import create_server


@pytest.fixture
async def target(private_server: RedisServer) -> AsyncIterator[str]:
    redis = connect(private_server.url, timeout=0.5)
    address = f"127.0.0.1:{free_port()}"
    server, health = create_server(Inventory(redis), address)
    await server.start()
    probe = asyncio.create_task(probe_redis(redis, health, 0.05, 0.3))
    yield address
    probe.cancel()
    await asyncio.gather(probe, return_exceptions=True)
    await server.stop(None)
    await redis.aclose()


async def _health(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
    return int(reply.status)


async def _until_health(channel: grpc.aio.Channel, wanted: int) -> None:
    async with asyncio.timeout(20):
        while True:
            if await _health(channel) == wanted:
                return
            await asyncio.sleep(0.05)


async def test_frozen_redis_gives_unavailable_and_not_serving_then_recovers(
    private_server: RedisServer, target: str
) -> None:
    assert private_server.process is not None
    pid = private_server.process.pid
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        seats = [pb.Seat(seat_id=f"s{i}") for i in range(4)]
        await stub.CreateEvent(pb.CreateEventRequest(event_id="ev", seats=seats))
        await _until_health(channel, health_pb2.HealthCheckResponse.SERVING)
        os.kill(pid, signal.SIGSTOP)
        try:
            await _until_health(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
            hold = pb.HoldRequest(event_id="ev", holder_id="h", seat_ids=["s0"], request_id="r")
            # The caller's own deadline (30 s) is far away: the service answers at Redis's.
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await stub.Hold(hold, timeout=30)
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            os.kill(pid, signal.SIGCONT)
        await _until_health(channel, health_pb2.HealthCheckResponse.SERVING)
        # The retry with the same request id gets one hold, whether or not the first one ran.
        held = await stub.Hold(hold, timeout=30)
        again = await stub.Hold(hold, timeout=30)
        assert held.hold.hold_id == again.hold.hold_id
