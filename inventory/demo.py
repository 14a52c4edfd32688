"""`lml-inventory demo`: the whole system on one machine, with a demo event, until Ctrl-C.

Starts a private redis-server (unless --redis-url points at a running one), the inventory service,
and creates the demo event through the gRPC API.
"""

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack

import click


def _wait_for_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _start(stack: ExitStack, args: list[str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(args)

    def stop() -> None:
        process.terminate()
        process.wait(15)

    stack.callback(stop)
    return process


def _private_redis(stack: ExitStack, port: int) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise click.ClickException("redis-server is not installed: apt-get install -y redis-server")
    data = stack.enter_context(tempfile.TemporaryDirectory(prefix="lml-demo-redis-"))
    _start(
        stack,
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            data,
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
    )
    _wait_for_port(port)
    return f"redis://127.0.0.1:{port}/0"


@click.command()
@click.option("--listen", default="127.0.0.1:50051", show_default=True)
@click.option(
    "--redis-url",
    envvar="LML_REDIS_URL",
    default=None,
    help="A running Redis to use; default: start a private one on --redis-port.",
)
@click.option("--redis-port", default=6390, show_default=True)
def demo(listen: str, redis_url: str | None, redis_port: int) -> None:
    """Run the whole system with a demo event until Ctrl-C."""
    python = sys.executable
    with ExitStack() as stack:
        redis_url = redis_url or _private_redis(stack, redis_port)
        server = _start(
            stack,
            [python, "-m", "inventory.cli", "serve", "--listen", listen, "--redis-url", redis_url],
        )
        subprocess.run(
            [python, "-m", "inventory.cli", "create-demo-event", "--target", listen], check=True
        )
        click.echo(
            f"\nInventory service on {listen} (Redis {redis_url}). Try:\n"
            f'  grpcurl -plaintext -d \'{{"event_id": "demo"}}\' {listen} '
            "lml.inventory.v1.InventoryService/GetEvent\nCtrl-C stops everything."
        )
        try:
            server.wait()
        except KeyboardInterrupt:
            click.echo("stopping")
