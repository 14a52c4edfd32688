"""What the Redis fault tests share: the service as a process, a TCP proxy that can stall, cut
and repoint the service's Redis connections, a load of holds, confirms and releases with
retries by request id, and the invariants checked on Redis afterwards."""

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import redis as sync_redis
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc

from inventory import keys
from inventory.health_probe import SERVICE_NAME
from inventory.local_servers import free_port

EVENT = "faults"
SEATS = [f"s{i}" for i in range(20_000)]
ATTEMPT_TIMEOUT = 5.0  # each call's own deadline, far above the service's Redis deadline
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


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


@dataclass
class Outcomes:
    """What the clients were told: acknowledged bookings, and every status by RPC over time."""

    bookings: dict[str, list[str]] = field(default_factory=dict)
    calls: list[tuple[float, str, str]] = field(default_factory=list)  # (when, rpc, code)
    started: float = field(default_factory=time.monotonic)

    def codes(self, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
        return Counter(code for at, _rpc, code in self.calls if since <= at - self.started < until)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def record(self, rpc: str, code: str) -> None:
        self.calls.append((time.monotonic(), rpc, code))


async def _call(outcomes: Outcomes, method: Any, rpc: str, request: Any, give_up: float) -> Any:
    """One call with retries of UNAVAILABLE / DEADLINE_EXCEEDED, the request unchanged (its
    request id too), until it is answered or `give_up` (monotonic) passes."""
    attempt = 0
    while True:
        try:
            response = await method(request, timeout=ATTEMPT_TIMEOUT)
            outcomes.record(rpc, "OK")
            return response
        except grpc.aio.AioRpcError as error:
            outcomes.record(rpc, error.code().name)
            if error.code() not in RETRYABLE or time.monotonic() > give_up:
                return None
        attempt += 1
        await asyncio.sleep(min(0.05 * attempt, 0.5))


async def run_load(
    target: str, outcomes: Outcomes, seconds: float, clients: int = 12, seed: int = 1
) -> None:
    """`clients` buyers for `seconds`: hold 1-2 random seats, then confirm (half), release (a
    third) or leave the hold to expire (1 s TTL); retries may go on 20 s past the end."""
    end = time.monotonic() + seconds
    give_up = end + 20
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)

        async def buyer(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            turn = 0
            while time.monotonic() < end:
                turn += 1
                holder = f"b{index}-{turn}"
                choice = rng.random()
                hold_request = pb.HoldRequest(
                    event_id=EVENT,
                    holder_id=holder,
                    seat_ids=rng.sample(SEATS, rng.choice((1, 2))),
                    request_id=f"hold-{holder}",
                    ttl=Duration(seconds=1 if choice > 0.83 else 60),
                )
                held = await _call(outcomes, stub.Hold, "Hold", hold_request, give_up)
                if held is None:
                    continue
                hold = held.hold
                if choice < 0.5:
                    confirm = pb.ConfirmRequest(
                        event_id=EVENT,
                        hold_id=hold.hold_id,
                        holder_id=holder,
                        payment_ref=f"pay-{holder}",
                        request_id=f"confirm-{holder}",
                    )
                    booked = await _call(outcomes, stub.Confirm, "Confirm", confirm, give_up)
                    if booked is not None:
                        outcomes.bookings[booked.booking.booking_id] = list(booked.booking.seat_ids)
                elif choice < 0.83:
                    release = pb.ReleaseRequest(
                        event_id=EVENT, hold_id=hold.hold_id, holder_id=holder
                    )
                    await _call(outcomes, stub.Release, "Release", release, give_up)

        await asyncio.gather(*(buyer(index) for index in range(clients)))


# What a call may be answered besides OK: contention, a retried release that had run, the
# fault itself (UNAVAILABLE). Anything else (INTERNAL, UNKNOWN, DEADLINE_EXCEEDED: the service
# not answering within the caller's deadline) is a defect.
ALLOWED_CODES = {"OK", "FAILED_PRECONDITION", "NOT_FOUND", "UNAVAILABLE"}


def check_invariants(redis_port: int, outcomes: Outcomes) -> dict[str, int]:
    """The invariants on Redis after a fault, the outbox as the record of bookings (no worker
    has consumed it); returns a few counts for the test's report."""
    client = sync_redis.Redis(port=redis_port, decode_responses=True)
    try:
        outbox: Any = client.xrange(keys.event_keys(EVENT).outbox)
        seats: Any = client.hgetall(keys.event_keys(EVENT).seats)
    finally:
        client.close()
    confirmed = [fields for _id, fields in outbox if fields["kind"] == "confirmed"]
    records = Counter(entry["booking_id"] for entry in confirmed)
    assert all(count == 1 for count in records.values()), "a booking recorded twice"
    owner: dict[str, str] = {}
    for entry in confirmed:  # no cancellations here: a seat in two records is booked twice
        for seat in json.loads(entry["seat_ids"]):
            assert seat not in owner, f"seat {seat} booked twice"
            owner[seat] = entry["booking_id"]
    for booking_id in outcomes.bookings:
        assert records[booking_id] == 1, f"acknowledged booking {booking_id} lost"
    booked = {seat: value[2:] for seat, value in seats.items() if value.startswith("B:")}
    assert booked == owner, "a seat booked without its record, or under another booking"
    return check_seats_and_log(redis_port, outcomes) | {"bookings": len(records)}


def check_seats_and_log(redis_port: int, outcomes: Outcomes) -> dict[str, int]:
    """Every acknowledged booking on its seats; no seat held by a dead hold; the change log
    gapless up to the event's version."""
    client = sync_redis.Redis(port=redis_port, decode_responses=True)
    try:
        names = keys.event_keys(EVENT)
        seats: Any = client.hgetall(names.seats)
        holds: Any = client.hgetall(names.holds)
        log: Any = client.xrange(names.changes)
        version = int(client.hget(names.meta, "version") or 0)
    finally:
        client.close()
    for booking_id, booked in outcomes.bookings.items():
        for seat in booked:
            assert seats[seat] == f"B:{booking_id}", f"acknowledged booking {booking_id} lost"
    held = 0
    for seat, value in seats.items():
        if value.startswith("H:"):
            record = json.loads(holds.get(value[2:], "null"))
            assert record is not None and record["state"] == "held", f"{seat} held by a dead hold"
            assert seat in record["seat_ids"]
            held += 1
    changes = [int(entry_id.split("-")[1]) for entry_id, _fields in log]
    assert changes, "no change log"
    assert changes == list(range(changes[0], changes[0] + len(changes))), "change-log gap"
    assert version == changes[-1], f"version {version} is not the log's last {changes[-1]}"
    return {"held": held, "versions": len(changes)}


def summary(fault: str, outcomes: Outcomes, counts: dict[str, int]) -> str:
    """One line for the log of a run (pytest -s): what the clients saw, what Redis holds."""
    codes = ", ".join(f"{code} {n}" for code, n in sorted(outcomes.codes().items()))
    return (
        f"{fault}: calls {codes}; acknowledged bookings {len(outcomes.bookings)}, recorded "
        f"{counts.get('bookings', '(synced)')}; seats held {counts['held']}; "
        f"change-log versions {counts['versions']}"
    )
