"""The change-log reader of a watched event gives its Redis connection back when its last
watcher goes, however it goes (the call cancelled by the client, mid-stream or before)."""

import asyncio

import grpc
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import Redis

from inventory.engine import Inventory
from inventory.local_servers import RedisServer, free_port
from inventory.redis_client import connect
from inventory.server import create_server
from inventory.watch import WatchHub

EVENTS = 10


async def reader_connections(admin: Redis) -> int:
    """Connections open whose last command was an XREAD (blocked in it, or left after it)."""
    return sum(1 for client in await admin.client_list() if client["cmd"] == "xread")


async def test_cancelled_watches_leave_no_reader_behind(private_server: RedisServer) -> None:
    redis = connect(private_server.url)
    admin = Redis(port=private_server.port, decode_responses=True, single_connection_client=True)
    hub = WatchHub(redis)
    target = f"127.0.0.1:{free_port()}"
    server, _health = create_server(Inventory(redis), target, hub)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.InventoryServiceStub(channel)
            for number in range(EVENTS):
                event_id = f"ev{number}"
                seats = [pb.Seat(seat_id=f"s{n}") for n in range(4)]
                await stub.CreateEvent(pb.CreateEventRequest(event_id=event_id, seats=seats))
                call = stub.WatchEvent(pb.WatchEventRequest(event_id=event_id))
                await stub.Hold(pb.HoldRequest(event_id=event_id, holder_id="h", seat_ids=["s0"]))
                first = await call.read()  # the reader is running, the stream open
                assert isinstance(first, pb.WatchEventResponse) and first.changes
                if number % 2:  # mid-stream, with a change sent and not read
                    await stub.Hold(
                        pb.HoldRequest(event_id=event_id, holder_id="i", seat_ids=["s1"])
                    )
                call.cancel()

            async def all_gone() -> bool:
                return hub.counts() == (0, 0) and await reader_connections(admin) == 0

            for _ in range(500):
                if await all_gone():
                    break
                await asyncio.sleep(0.02)
            assert hub.counts() == (0, 0)
            assert await reader_connections(admin) == 0
    finally:
        await server.stop(None)
        await hub.close()
        await redis.aclose()
        await admin.aclose()
