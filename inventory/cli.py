"""`lml-inventory`: run the inventory service; run the whole system with a demo event."""

import asyncio

import click

from inventory.demo import DEMO_EVENT, create_demo_event, demo
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
    "--admission-secret",
    envvar="LML_ADMISSION_SECRET",
    default=None,
    help="Signs waiting-room admissions; the same for every process (random when one runs).",
)
@click.option(
    "--queue-tick",
    default=0.25,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Seconds between waiting-room admission ticks.",
)
def serve(
    listen: str,
    redis_url: str,
    workers: int,
    sweep_interval: float,
    grace: float,
    admission_secret: str | None,
    queue_tick: float,
) -> None:
    """Serve InventoryService (with gRPC health and reflection) until SIGTERM."""
    if workers > 1 and not admission_secret:
        raise click.UsageError("--workers > 1 needs --admission-secret (LML_ADMISSION_SECRET)")
    secret = admission_secret.encode() if admission_secret else None
    config = ServerConfig(
        listen,
        redis_url,
        sweep_interval,
        grace,
        admission_secret=secret,
        queue_tick=queue_tick,
    )
    serve_processes(config, workers)


@main.command("create-demo-event")
@click.option(
    "--redis-url", envvar="LML_REDIS_URL", default="redis://127.0.0.1:6379/0", show_default=True
)
@click.option(
    "--postgres-url",
    envvar="LML_POSTGRES_URL",
    default="postgresql://postgres@127.0.0.1:5432/lml",
    show_default=True,
)
def create_demo_event_command(redis_url: str, postgres_url: str) -> None:
    """Create the event `demo` in the sample opera house (idempotent; needs the schema)."""
    click.echo(f"event {DEMO_EVENT!r}: " + asyncio.run(create_demo_event(postgres_url, redis_url)))


main.add_command(demo)

if __name__ == "__main__":
    main()
