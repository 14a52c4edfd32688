"""`lml-inventory`: run the inventory service, and create the demo event."""

import asyncio

import click
import grpc
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc

from inventory.demo import demo
from inventory.server import ServerConfig, serve_processes


@click.group()
def main() -> None:
    """LML seat inventory."""


@main.command()
@click.option(
    "--listen",
    envvar="LML_LISTEN",
    default="127.0.0.1:50051",
    show_default=True,
    help="host:port to serve gRPC on.",
)
@click.option(
    "--redis-url", envvar="LML_REDIS_URL", default="redis://127.0.0.1:6379/0", show_default=True
)
@click.option(
    "--workers",
    envvar="LML_WORKERS",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Server processes sharing the port.",
)
@click.option(
    "--sweep-interval",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Seconds between sweeps of expired holds.",
)
@click.option(
    "--grace",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds SIGTERM waits for calls in flight.",
)
def serve(listen: str, redis_url: str, workers: int, sweep_interval: float, grace: float) -> None:
    """Serve InventoryService (with gRPC health and reflection) until SIGTERM."""
    serve_processes(ServerConfig(listen, redis_url, sweep_interval, grace), workers)


def demo_event_request(event_id: str) -> pb.CreateEventRequest:
    """A small theatre: stalls (rows A-P, 30 seats) and a circle (rows A-F, 24 seats)."""
    seats = [
        pb.Seat(
            seat_id=f"{section}-{row}{number}",
            section=section,
            row=row,
            number=str(number),
            category=category,
        )
        for section, rows, per_row, category in (
            ("stalls", "ABCDEFGHIJKLMNOP", 30, "standard"),
            ("circle", "ABCDEF", 24, "premium"),
        )
        for row in rows
        for number in range(1, per_row + 1)
    ]
    return pb.CreateEventRequest(event_id=event_id, seats=seats)


@main.command("create-demo-event")
@click.option("--target", envvar="LML_TARGET", default="127.0.0.1:50051", show_default=True)
@click.option("--event-id", default="demo", show_default=True)
def create_demo_event(target: str, event_id: str) -> None:
    """Create the demo event through the gRPC API (idempotent)."""

    async def create() -> pb.CreateEventResponse:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.InventoryServiceStub(channel)
            response: pb.CreateEventResponse = await stub.CreateEvent(
                demo_event_request(event_id), wait_for_ready=True, timeout=30
            )
            return response

    response = asyncio.run(create())
    state = "created" if response.created else "already there"
    click.echo(f"event {event_id!r}: {response.event.seat_count} seats, {state}")


main.add_command(demo)

if __name__ == "__main__":
    main()
