"""`lml-inventory`: run the inventory service."""

import click

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
@click.option(
    "--redis-timeout",
    envvar="LML_REDIS_TIMEOUT",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds a Redis command may take before the call fails UNAVAILABLE and the "
    "connection is opened again; above the longest script (CreateEvent of the largest event).",
)
def serve(
    listen: str,
    redis_url: str,
    workers: int,
    sweep_interval: float,
    grace: float,
    redis_timeout: float,
) -> None:
    """Serve InventoryService (with gRPC health and reflection) until SIGTERM."""
    config = ServerConfig(listen, redis_url, sweep_interval, grace, redis_timeout=redis_timeout)
    serve_processes(config, workers)


if __name__ == "__main__":
    main()
