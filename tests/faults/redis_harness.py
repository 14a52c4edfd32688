"""What the Redis fault tests share: the service as a process, its health, its event, and a TCP
proxy that can stall, cut and repoint the service's Redis connections."""

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc

from inventory.health_probe import SERVICE_NAME
from inventory.local_servers import free_port

EVENT = "faults"
SEATS = [f"s{i}" for i in range(20_000)]


class ServiceProcess:
    """`lml-inventory serve` on a fixed port, to kill and start again."""

    def __init__(self, redis_url: str, log: Path, *options: str) -> None:
        self.target = f"127.0.0.1:{free_port()}"
        self.command = [sys.executable, "-m", "inventory.cli", "serve", "--listen", self.target]
        self.command += ["--redis-url", redis_url, "--redis-timeout", "1", "--grace", "1"]
        self.command += ["--sweep-interval", "0.2", *options]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=out)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@contextlib.contextmanager
def service(redis_url: str, log: Path, *options: str) -> Iterator[ServiceProcess]:
    process = ServiceProcess(redis_url, log, *options)
    process.start()
    try:
        yield process
    finally:
        process.stop()


async def health(target: str) -> int:
    """The service's health as its clients see it; -1 when it does not answer."""
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=2
            )
        except grpc.aio.AioRpcError:
            return -1
        return int(reply.status)


async def until_health(target: str, wanted: int, seconds: float = 60) -> None:
    async with asyncio.timeout(seconds):
        while True:
            if await health(target) == wanted:
                return
            await asyncio.sleep(0.05)


async def create_event(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        request = pb.CreateEventRequest(event_id=EVENT)
        for index, seat_id in enumerate(SEATS):
            request.seats.add(
                seat_id=seat_id, section="A", row=str(index // 100), number=str(index % 100)
            )
        request.limits.max_seats_per_holder = 4
        await pb_grpc.InventoryServiceStub(channel).CreateEvent(request, timeout=60)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a Redis; can stall (hold every byte), cut (close every
    connection) and repoint (new connections go to another Redis)."""

    def __init__(self, upstream_port: int) -> None:
        self.port = free_port()
        self.upstream_port = upstream_port
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._connections: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        for writer in list(self._connections):
            writer.transport.abort()
        self._connections.clear()

    def repoint(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cut()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._connections |= {writer, up_writer}
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )
        for each in (writer, up_writer):
            self._connections.discard(each)
            each.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()
            if writer.transport.is_closing():
                return
            writer.write(data)
            await writer.drain()
        writer.transport.abort()
