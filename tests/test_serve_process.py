"""`lml-inventory serve` as users run it: worker processes on one port, health, SIGTERM drain."""

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc

from inventory.local_servers import RedisServer, free_port


@pytest.fixture
def serving(redis_server: RedisServer) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    target = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from inventory.cli import main; main()",
            "serve",
            "--listen",
            target,
            "--redis-url",
            redis_server.url,
            "--workers",
            "2",
            "--grace",
            "20",
        ]
    )
    yield process, target
    if process.poll() is None:
        process.kill()
        process.wait()


async def wait_serving(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(200):
            try:
                response = await health.Check(
                    health_pb2.HealthCheckRequest(service="lml.inventory.v1.InventoryService"),
                    timeout=1,
                )
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the service never reported SERVING")


async def read(stream: Any) -> pb.ExecuteResponse:
    response = await stream.read()
    assert isinstance(response, pb.ExecuteResponse)
    return response


async def test_sigterm_drains_open_streams_then_exits(
    serving: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, target = serving
    await wait_serving(target)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        await stub.CreateEvent(
            pb.CreateEventRequest(
                event_id="drain", seats=[pb.Seat(seat_id=f"S{n}") for n in range(4)]
            )
        )
        batches: asyncio.Queue[pb.ExecuteRequest | None] = asyncio.Queue()

        async def requests() -> AsyncIterator[pb.ExecuteRequest]:
            while (batch := await batches.get()) is not None:
                yield batch

        def hold(seat: str) -> pb.ExecuteRequest:
            request = pb.HoldRequest(event_id="drain", holder_id=seat, seat_ids=[seat])
            return pb.ExecuteRequest(operations=[pb.Operation(id=seat, hold=request)])

        stream = stub.Execute(requests())
        await batches.put(hold("S0"))
        assert (await read(stream)).results[0].HasField("hold")

        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(1)
        # The call in flight is drained: still answered after SIGTERM...
        await batches.put(hold("S1"))
        assert (await read(stream)).results[0].HasField("hold")
        assert process.poll() is None
        # ...while new calls are refused.
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetEvent(pb.GetEventRequest(event_id="drain"), timeout=2)
        await batches.put(None)
        await stream.wait_for_connection()
    # Once the last call ends, the processes exit cleanly, well before the 20 s grace.
    assert await asyncio.to_thread(process.wait, 10) == 0
