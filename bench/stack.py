"""The parts a benchmark runs against, each private to the run: Redis, the service, Postgres."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import psutil  # type: ignore[import-untyped]

from inventory.local_servers import RedisServer, free_port

POSTGRES_DSN = os.environ.get("LML_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def redis_server(data_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _wait_ready(target: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for {target} exited with {process.returncode}")
        with grpc.insecure_channel(target) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=0.5)
                return
            except grpc.FutureTimeoutError:
                continue
    raise TimeoutError(f"no gRPC server on {target} after {timeout} s")


@dataclass(frozen=True)
class ServerProcess:
    target: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far, its worker processes included."""
        process = psutil.Process(self.pid)
        times = [p.cpu_times() for p in (process, *process.children(recursive=True))]
        return float(sum(t.user + t.system for t in times))


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, so the process drains and exits; SIGKILL if it has not within 30 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _workers(command: Sequence[str]) -> int:
    """The worker processes a server command asks for (`--workers`, else one)."""
    arguments = list(command)
    if "--workers" not in arguments:
        return 1
    return int(arguments[arguments.index("--workers") + 1])


@contextmanager
def server_process(command: Sequence[str], target: str, log: Path) -> Iterator[ServerProcess]:
    """Runs a gRPC server command until the block ends; yields it once it answers."""
    with log.open("ab") as out:
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(target, process)
        if _workers(command) > 1:
            # SO_REUSEPORT workers bind one by one: give the last ones time to take calls too.
            time.sleep(1.0)
        yield ServerProcess(target, process.pid)
    finally:
        _stop(process)


def inventory_command(target: str, redis_url: str, workers: int) -> list[str]:
    return [
        *(sys.executable, "-m", "inventory.cli", "serve"),
        *("--listen", target, "--redis-url", redis_url, "--workers", str(workers)),
        *("--grace", "1"),
    ]


def reference_command(target: str, redis_url: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.reference_server",
        "--listen",
        target,
        "--redis-url",
        redis_url,
    ]


def empty_command(target: str, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.empty_server",
        "--listen",
        target,
        "--workers",
        str(workers),
    ]


@contextmanager
def booking_worker(redis_url: str, postgres_url: str, log: Path) -> Iterator[None]:
    """`lml-worker run` syncing the outbox into a migrated database, as deployed."""
    from booking import migrations

    asyncio.run(migrations.apply(postgres_url))
    command = [sys.executable, "-c", "from booking.cli import main; main()", "run"]
    command += ["--redis-url", redis_url, "--postgres-url", postgres_url]
    command += ["--discovery-interval", "0.1"]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        _stop(process)


def local_target() -> str:
    return f"127.0.0.1:{free_port()}"


@contextmanager
def postgres_database(name: str, admin_dsn: str = POSTGRES_DSN) -> Iterator[str]:
    """A throwaway database on the local Postgres; yields its DSN and drops it afterwards."""

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(admin_dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}"'))
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
