"""Events made through the service, a look at a worker's metrics."""

import asyncio
import urllib.request

from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc


async def create_events(
    stub: "pb_grpc.InventoryServiceAsyncStub", event_ids: list[str], seats: int
) -> dict[str, list[str]]:
    """Events of `seats` seats in rows of 50, created through the service; event -> seat ids."""
    made: dict[str, list[str]] = {}
    for event_id in event_ids:
        request = pb.CreateEventRequest(event_id=event_id)
        for i in range(seats):
            request.seats.add(
                seat_id=f"s{i:05d}", section="stalls", row=str(i // 50), number=str(i)
            )
        await stub.CreateEvent(request)
        made[event_id] = [seat.seat_id for seat in request.seats]
    return made


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def metric(port: int, name: str) -> float:
    """The sum of a metric's samples on a worker's --metrics-port (0 when absent)."""
    text = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{")
    ]
    return sum(values)
