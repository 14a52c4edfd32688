"""The waiting room across restarts: the service and Redis (append-only file) stop during
admission and come back; places, admissions and the rate's state are where they were."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lml.inventory.v1 import inventory_pb2 as pb

from clients import InventoryClient
from inventory.admission import AdmissionSigner
from inventory.engine import Inventory
from inventory.local_servers import RedisServer, free_port
from inventory.queue import WaitingRoom, admit_forever
from inventory.queue_watch import QueueWatchHub
from inventory.redis_client import connect
from inventory.server import create_server

SECRET = b"shared by every process of the deployment"
TICK = 0.05


@asynccontextmanager
async def _service(redis_url: str) -> AsyncIterator[InventoryClient]:
    """A fresh service process's objects: engine, waiting room, watch hub, tick, gRPC server."""
    redis = connect(redis_url)
    inventory = Inventory(redis, AdmissionSigner(SECRET))
    room = WaitingRoom(redis, inventory.admissions)
    hub = QueueWatchHub(room, TICK)
    target = f"127.0.0.1:{free_port()}"
    server, _health = create_server(inventory, target, queue_hub=hub)
    await server.start()
    ticker = asyncio.create_task(admit_forever(room, TICK))
    try:
        async with InventoryClient(target) as client:
            yield client
    finally:
        ticker.cancel()
        await hub.close()
        await server.stop(None)
        await redis.aclose()


async def test_places_and_admissions_survive_a_restart_of_the_service_and_redis(
    tmp_path: Path,
) -> None:
    redis_server = RedisServer(tmp_path / "redis", persist=True)
    redis_server.start()
    try:
        buyers = [f"b{i}" for i in range(30)]
        async with _service(redis_server.url) as client:
            seats = [
                pb.Seat(seat_id=f"s{n}", section="S", row="1", number=str(n)) for n in range(9)
            ]
            await client.create_event("rs", seats)
            opens_at = datetime.now(UTC) + timedelta(seconds=0.5)
            await client.configure_queue(
                "rs", opens_at=opens_at, admit_per_minute=600, max_active=100, admission_ttl=600
            )
            for buyer in buyers:
                await client.join_queue("rs", buyer)
            while (await client.pause_queue("rs")).admitted < 5:  # admits 10/s from the opening
                await client.resume_queue("rs")
                await asyncio.sleep(0.2)
            before = {buyer: await client.join_queue("rs", buyer) for buyer in buyers}
            status_before = await client.pause_queue("rs")

        redis_server.restart()  # SIGTERM; the append-only file is fsynced at every write

        async with _service(redis_server.url) as client:
            after = {buyer: await client.join_queue("rs", buyer) for buyer in buyers}
            for buyer in buyers:
                assert after[buyer].ticket_id == before[buyer].ticket_id
                assert after[buyer].position == before[buyer].position
                assert after[buyer].admitted == before[buyer].admitted
            admitted = [buyer for buyer in buyers if before[buyer].admitted]
            assert len(admitted) == status_before.admitted >= 5
            first = admitted[0]
            # The token from before the restart still holds: the secret and Redis's record agree.
            held = await client.hold(
                "rs", first, ["s0"], admission_token=before[first].admission_token
            )
            assert list(held.seat_ids) == ["s0"]

            await client.resume_queue("rs")
            waiting = next(buyer for buyer in buyers if not before[buyer].admitted)
            ticket = before[waiting]
            async for update in client.watch_queue("rs", ticket.ticket_id):
                ticket = update
            assert ticket.admitted and ticket.admission_token
            assert (await client.pause_queue("rs")).admitted > status_before.admitted
    finally:
        redis_server.stop()
