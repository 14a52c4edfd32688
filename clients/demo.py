"""`lml-demo run`: the whole system on one machine, with a demo event, until Ctrl-C.

Uses the Redis and Postgres given by URL, else the local Postgres on 5432 (database `lml_demo`),
else private servers in a temporary directory. Applies the schema, starts the inventory service,
the booking worker and the HTTP gateway, and creates the event `demo` in the sample opera house.
It starts every other package, so it lives above them all (no package imports it).
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import click
from lml.inventory.v1 import inventory_pb2 as pb

from booking import migrations
from inventory.auth import add_key
from inventory.engine import Inventory
from inventory.errors import InventoryError
from inventory.layouts.backends import open_backends
from inventory.layouts.errors import EventSetupError
from inventory.layouts.events import (
    EventFromLayout,
    create_event_from_layout,
    read_event_layout,
)
from inventory.layouts.opera import DEFAULT_ID, opera_house
from inventory.local_servers import RedisServer, postgres_admin
from inventory.redis_client import connect

DEMO_EVENT = "demo"
PRICES = {"A": 9500, "B": 6500, "C": 4000, "D": 2500, "BOX": 12000}  # pence


def _wait_for_port(address: str, timeout: float = 30) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _start(
    stack: ExitStack, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", *args], env={**os.environ, **(env or {})})

    def stop() -> None:
        process.terminate()
        process.wait(15)

    stack.callback(stop)
    return process


def _redis(stack: ExitStack, redis_url: str | None) -> str:
    if redis_url:
        return redis_url
    server = RedisServer(Path(stack.enter_context(tempfile.TemporaryDirectory())), persist=True)
    server.start()
    stack.callback(server.stop)
    return server.url


def _api_keys(stack: ExitStack) -> tuple[Path, str, Path]:
    """A key file for this run: the gateway's key (admin: it creates events, and its `checkout`
    scope lets the payment webhook re-hold without the waiting room) and an operator's.

    Secrets go to the processes by environment and to a file only its owner reads, never to
    the terminal. Returns the key file, the gateway's secret, the operator secret's file.
    """
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lml-demo-keys-")))
    keys = folder / "keys.json"
    gateway = add_key(keys, "demo-gateway", ["admin"])
    operator = folder / "operator.key"
    descriptor = os.open(operator, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(add_key(keys, "demo-operator", ["sell"]) + "\n")
    return keys, gateway, operator


def _shown(url: str) -> str:
    """`url` without its password, to print."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


async def _fresh_database(admin_url: str, name: str) -> None:
    # The demo's Redis starts empty every time; bookings of an earlier run left in Postgres
    # would look like seats Redis lost (conflicts), so the database starts empty too.
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def _postgres(stack: ExitStack, postgres_url: str | None) -> str:
    if postgres_url:
        return postgres_url
    admin_url = stack.enter_context(postgres_admin())
    asyncio.run(_fresh_database(admin_url, "lml_demo"))
    return admin_url.rsplit("/", 1)[0] + "/lml_demo"


async def create_demo_event(postgres_url: str, redis_url: str) -> str:
    """Creates `demo` from a freshly deployed opera-house layout, unless it exists."""
    redis = connect(redis_url)
    inventory = Inventory(redis)
    try:
        await inventory.get_event(pb.GetEventRequest(event_id=DEMO_EVENT))
        return "already there"
    except InventoryError:
        pass
    finally:
        await redis.aclose()
    async with open_backends(postgres_url) as backends:
        try:  # Postgres kept the event (a fresh Redis): restore it from the same layout version
            event = (await read_event_layout(backends.pool, DEMO_EVENT)).event
        except EventSetupError:
            draft = await backends.layouts.add(opera_house(DEFAULT_ID))
            await backends.layouts.publish(draft.id, draft.version)
            layout = await backends.layouts.deploy(draft.id, draft.version)
            event = EventFromLayout(DEMO_EVENT, layout.id, layout.hash or "", "GBP", PRICES)
        redis = connect(redis_url)
        try:
            created = await create_event_from_layout(
                backends.layouts, backends.pool, Inventory(redis), event
            )
        finally:
            await redis.aclose()
    return f"created: {created.event.seat_count} seats, layout hash {event.layout_hash}"


@click.group()
def main() -> None:
    """The whole LML system on one machine, with a demo event."""


@main.command()
@click.option("--listen", default="127.0.0.1:50051", show_default=True, help="gRPC address.")
@click.option("--http", default="127.0.0.1:8080", show_default=True, help="Gateway address.")
@click.option(
    "--redis-url",
    envvar="LML_REDIS_URL",
    default=None,
    help="A running Redis; default: a private one.",
)
@click.option(
    "--postgres-url",
    envvar="LML_POSTGRES_URL",
    default=None,
    help="A Postgres database; default: lml_demo on 127.0.0.1:5432, else a private one.",
)
def run(listen: str, http: str, redis_url: str | None, postgres_url: str | None) -> None:
    """Run the whole system with a demo event until Ctrl-C (or SIGTERM)."""
    # docker stop and service managers send SIGTERM: stop everything, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with ExitStack() as stack:
        redis_url = _redis(stack, redis_url)
        postgres_url = _postgres(stack, postgres_url)
        asyncio.run(migrations.apply(postgres_url))
        keys, gateway_key, operator_key = _api_keys(stack)
        server = _start(
            stack,
            "inventory.cli",
            "serve",
            "--listen",
            listen,
            "--redis-url",
            redis_url,
            "--api-keys",
            str(keys),
        )
        _start(
            stack, "booking.cli", "run", "--redis-url", redis_url, "--postgres-url", postgres_url
        )
        _start(
            stack,
            "clients.gateway.cli",
            "--listen",
            http,
            "--target",
            listen,
            "--layouts-dsn",
            postgres_url,
            "--redis-url",
            redis_url,
            # Without Stripe keys the page confirms unpaid (with them, only payment books).
            "--allow-unpaid-confirm",
            env={"LML_API_KEY": gateway_key},
        )
        _wait_for_port(listen)
        state = asyncio.run(create_demo_event(postgres_url, redis_url))
        _wait_for_port(http)
        click.echo(
            f"\nEvent {DEMO_EVENT!r} {state}.\n"
            f"  gRPC inventory service: {listen} (Redis {_shown(redis_url)}), keys: {keys}\n"
            f"    a 'sell' key for your own calls is in {operator_key}:\n"
            f'    grpcurl -plaintext -H "authorization: Bearer $(cat {operator_key})" '
            f"{listen} list\n"
            f"  HTTP gateway: http://{http}/docs  (seat map: http://{http}/v1/events/demo/seatmap)\n"
            f"  Live seat-map page: http://{http}/demo\n"
            f"  Postgres: {_shown(postgres_url)}\n"
            "Ctrl-C stops everything."
        )
        try:
            server.wait()
        except KeyboardInterrupt:
            click.echo("stopping")


@main.command("create-event")
@click.option(
    "--redis-url", envvar="LML_REDIS_URL", default="redis://127.0.0.1:6379/0", show_default=True
)
@click.option(
    "--postgres-url",
    envvar="LML_POSTGRES_URL",
    default="postgresql://postgres@127.0.0.1:5432/lml",
    show_default=True,
)
def create_event(redis_url: str, postgres_url: str) -> None:
    """Create the event `demo` in the sample opera house (idempotent; needs the schema)."""
    click.echo(f"event {DEMO_EVENT!r}: " + asyncio.run(create_demo_event(postgres_url, redis_url)))


if __name__ == "__main__":
    main()
