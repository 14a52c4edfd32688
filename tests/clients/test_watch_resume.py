"""InventoryClient.watch() resuming on its own: after the server goes away mid-watch (a real
`lml-inventory serve` process, killed or stopped, then started again on the same port) while
changes go on being made, and after the server ends the watch as WATCHER_TOO_SLOW. Either way the
watcher must see every change once, in order: versions without a gap or a repeat, no new
snapshot, and a state equal to the inventory's at the end."""

import asyncio
import contextlib
import random
import signal
import subprocess
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from lml.inventory.v1 import inventory_pb2 as pb

from clients import InventoryClient, Snapshot, Update
from clients.errors import InventoryClientError, Transient, WatcherTooSlow
from inventory import watch
from inventory.engine import Inventory
from inventory.errors import InventoryError
from inventory.local_servers import RedisServer, free_port
from tests.clients.conftest import SEATS, Service, seats, until

EVENT = "show"
TTL = Duration(nanos=200_000_000)
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16_384)]


@dataclass
class Watcher:
    """Everything one watch() yielded, and the seat states it folds into."""

    updates: list[Update] = field(default_factory=list)
    state: dict[str, "pb.SeatStatus.ValueType"] = field(default_factory=dict)
    version: int = 0

    async def run(self, updates: AsyncIterator[Update]) -> None:
        async for update in updates:
            self.fold(update)

    def fold(self, update: Update) -> None:
        self.updates.append(update)
        if isinstance(update, Snapshot):
            self.state = dict(update.seats)
        else:
            self.state.update(dict.fromkeys(update.seat_ids, update.status))
        self.version = update.version

    def reached(self, version: int) -> bool:
        return self.version >= version

    def check(self, final: pb.GetAvailabilityResponse) -> None:
        """One snapshot, then every version after it exactly once, ending where the inventory is."""
        first, *changes = self.updates
        assert isinstance(first, Snapshot)
        assert not any(isinstance(update, Snapshot) for update in changes), "re-snapshotted"
        versions = [change.version for change in changes]
        assert versions == list(range(first.version + 1, final.version + 1))
        assert self.state == {seat.seat_id: seat.status for seat in final.seats}


async def churn(
    inventory: Inventory,
    rng: random.Random,
    holds: int,
    seat_ids: list[str] = SEATS,
    size: int = 2,
    kept: float = 0.2,
) -> None:
    """Makes changes through the engine (no server needed): holds of `size` seats, released at
    once but for a share `kept` left to expire within a fraction of a second."""
    for _ in range(holds):
        chosen = rng.sample(seat_ids, size)
        try:
            hold = await inventory.hold(
                pb.HoldRequest(event_id=EVENT, holder_id="churn", seat_ids=chosen, ttl=TTL)
            )
        except InventoryError as error:
            assert error.reason in ("SEATS_UNAVAILABLE", "LIMIT_EXCEEDED"), error
            continue
        if rng.random() >= kept:
            ref = {"event_id": EVENT, "hold_id": hold.hold.hold_id, "holder_id": "churn"}
            await inventory.release(pb.ReleaseRequest(**ref))


@contextlib.contextmanager
def serving(redis_url: str, target: str) -> Iterator[subprocess.Popen[bytes]]:
    options = ["--listen", target, "--redis-url", redis_url, "--grace", "1"]
    process = subprocess.Popen(
        [sys.executable, "-c", "from inventory.cli import main; main()", "serve", *options]
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def settled(client: InventoryClient, watcher: Watcher) -> pb.GetAvailabilityResponse:
    """The inventory once it stopped changing (the last holds expired and their expiry logged)
    and the watcher has caught up with it."""
    async with asyncio.timeout(30):
        while True:
            final = await client.availability(EVENT)
            await until(partial(watcher.reached, final.version), 20)
            await asyncio.sleep(1.0)  # past the holds' TTL and a sweep: nothing may follow
            if (await client.availability(EVENT)).version == final.version:
                return final


async def wait_serving(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="lml.inventory.v1.InventoryService")
        for _ in range(300):
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await health.Check(request, timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError("the service never reported SERVING")


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
async def test_watch_resumes_after_the_server_restarts(
    redis_server: RedisServer, inventory: Inventory, stop: signal.Signals
) -> None:
    target = f"127.0.0.1:{free_port()}"
    rng = random.Random(13)
    await inventory.create_event(pb.CreateEventRequest(event_id=EVENT, seats=seats()))
    watcher = Watcher()
    with serving(redis_server.url, target) as first:
        await wait_serving(target)
        async with InventoryClient(target, timeout=2.0) as client:
            task = asyncio.create_task(watcher.run(client.watch(EVENT)))
            await churn(inventory, rng, 40)
            await until(partial(watcher.reached, 40), 20)
            first.send_signal(stop)
            await asyncio.to_thread(first.wait, 30)
            # While the server is away, the inventory goes on changing.
            await churn(inventory, rng, 40)
            with serving(redis_server.url, target):
                await wait_serving(target)
                await churn(inventory, rng, 40)
                final = await settled(client, watcher)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    assert watcher.version == final.version
    watcher.check(final)


async def test_watch_resumes_after_being_ended_as_too_slow(
    service: Service, inventory: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client on a slow link: a small HTTP/2 receive window that does not grow, so that what
    # it does not read backs up into the server at once.
    monkeypatch.setattr(
        grpc.aio,
        "insecure_channel",
        partial(grpc.aio.insecure_channel, options=SMALL_WINDOW),
    )
    async with InventoryClient(service.target) as client:
        await watch_slowly(client, inventory, monkeypatch)


async def watch_slowly(
    client: InventoryClient, inventory: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "MAX_QUEUED", 2)  # the server's patience, small for the test
    ended: list[InventoryClientError] = []
    watch_changes = client.watch_changes

    async def observed(event_id: str, from_version: int) -> AsyncGenerator[pb.WatchEventResponse]:
        """The client's own stream, noting how each one ends."""
        try:
            async for response in watch_changes(event_id, from_version):
                yield response
        except (WatcherTooSlow, Transient) as error:
            ended.append(error)
            raise

    monkeypatch.setattr(client, "watch_changes", observed)
    rng = random.Random(7)
    # Long seat ids and holds of ten: changes of a kilobyte, which back the stream up soon.
    long_ids = [f"{n:03d}-{'x' * 120}" for n in range(60)]
    limits = pb.EventLimits(max_seats_per_holder=1000)
    await inventory.create_event(
        pb.CreateEventRequest(
            event_id=EVENT, seats=[pb.Seat(seat_id=s) for s in long_ids], limits=limits
        )
    )
    watcher = Watcher()
    updates = client.watch(EVENT)
    watcher.fold(await anext(updates))
    await churn(inventory, rng, 1, long_ids, 10, kept=0)
    watcher.fold(await anext(updates))  # the stream is open, the watcher now pauses
    # The watcher reads nothing while changes are made: the stream backs up into the server,
    # which ends it.
    await churn(inventory, rng, 1500, long_ids, 10, kept=0)
    task = asyncio.create_task(watcher.run(updates))
    final = await settled(client, watcher)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert [type(error) for error in ended][:1] == [WatcherTooSlow]
    watcher.check(final)
