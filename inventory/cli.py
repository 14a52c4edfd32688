"""`lml-inventory`: run the inventory service."""

import asyncio

import click

from inventory.durability import Durability, DurabilityUnsupported, check_support
from inventory.redis_client import connect
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
@click.option(
    "--confirm-durability",
    envvar="LML_CONFIRM_DURABILITY",
    default=Durability.NONE.value,
    show_default=True,
    type=click.Choice([d.value for d in Durability]),
    help="When Confirm answers: once the script ran (none), once a replica has the booking "
    "(replica: WAIT 1), or once it is fsynced to the append-only file (aof: WAITAOF, "
    "Redis >= 7.2).",
)
@click.option(
    "--durability-timeout",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Seconds a confirm waits for its replica or fsync before failing UNAVAILABLE.",
)
@click.option(
    "--metrics-port",
    envvar="LML_METRICS_PORT",
    type=click.IntRange(1, 65535),
    help="Serve Prometheus metrics on this port (on the --listen host); with --workers N the "
    "first process serves every worker's.",
)
@click.option(
    "--log-format",
    envvar="LML_LOG_FORMAT",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="Log lines as text or as JSON objects; both carry the request id of the call.",
)
def serve(
    listen: str,
    redis_url: str,
    workers: int,
    sweep_interval: float,
    grace: float,
    redis_timeout: float,
    confirm_durability: str,
    durability_timeout: float,
    metrics_port: int | None,
    log_format: str,
) -> None:
    """Serve InventoryService (with gRPC health and reflection) until SIGTERM."""
    durability = Durability(confirm_durability)
    if durability != Durability.NONE:
        try:
            asyncio.run(_check_durability(redis_url, durability))
        except DurabilityUnsupported as error:
            raise click.ClickException(str(error)) from error
    config = ServerConfig(
        listen,
        redis_url,
        sweep_interval,
        grace,
        redis_timeout=redis_timeout,
        confirm_durability=durability,
        durability_timeout=durability_timeout,
        metrics_port=metrics_port,
        log_format=log_format,
    )
    serve_processes(config, workers)


async def _check_durability(redis_url: str, durability: Durability) -> None:
    redis = connect(redis_url, timeout=5)
    try:
        await check_support(redis, durability)
    finally:
        await redis.aclose()


if __name__ == "__main__":
    main()
