"""Every process's Prometheus metrics (`lml-inventory serve`, `lml-worker run`, `lml-gateway`)
bind to loopback unless --metrics-host says otherwise: 127.0.0.1 answers, another address of
the machine (127.0.0.2, also on the loopback interface, stands for one) is refused."""

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from inventory.local_servers import RedisServer, free_port
from tests.booking.helpers import worker_command

OTHER_ADDRESS = "127.0.0.2"  # reached only by a port bound to every interface


def answers(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def refuses(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((host, port)) != 0


def metrics_of(command: list[str], port: int) -> Iterator[None]:
    """Runs `command` until its metrics answer on 127.0.0.1:`port`."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not answers("127.0.0.1", port):
            assert process.poll() is None, f"{command[:3]} exited {process.returncode}"
            assert time.monotonic() < deadline, "the metrics never answered"
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(15)


def commands(name: str, redis_url: str, pg_url: str, port: int) -> list[str]:
    python = [sys.executable, "-c"]
    if name == "inventory":  # the metrics do not follow the --listen host any more
        return [
            *(*python, "from inventory.cli import main; main()", "serve"),
            *("--listen", f"{OTHER_ADDRESS}:{free_port()}", "--redis-url", redis_url),
            *("--metrics-port", str(port)),
        ]
    if name == "worker":
        return [
            *(*worker_command(), "run", "--redis-url", redis_url, "--postgres-url", pg_url),
            *("--metrics-port", str(port)),
        ]
    return [
        *(*python, "from clients.gateway.cli import main; main()"),
        *(f"--listen=127.0.0.1:{free_port()}", f"--target=127.0.0.1:{free_port()}"),
        *(f"--redis-url={redis_url}", "--session-secret=a session secret of 32 bytes or more"),
        *("--metrics-port", str(port)),
    ]


@pytest.mark.parametrize("name", ["inventory", "worker", "gateway"])
def test_metrics_bind_to_loopback_by_default(
    name: str, redis_server: RedisServer, pg_url: str
) -> None:
    port = free_port()
    for _ in metrics_of(commands(name, redis_server.url, pg_url, port), port):
        assert refuses(OTHER_ADDRESS, port)


@pytest.mark.parametrize("name", ["inventory", "worker", "gateway"])
def test_metrics_host_opens_them_to_other_addresses(
    name: str, redis_server: RedisServer, pg_url: str
) -> None:
    port = free_port()
    command = [*commands(name, redis_server.url, pg_url, port), "--metrics-host", "0.0.0.0"]
    for _ in metrics_of(command, port):
        assert answers(OTHER_ADDRESS, port)
