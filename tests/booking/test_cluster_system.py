"""The whole system on a Redis Cluster of three primaries with a replica each: the service
(`lml-inventory serve --redis-cluster`), the booking worker (`lml-worker run --redis-cluster`),
watchers, rebuild and reconcile, with events on every node, then the invariants: no seat
booked twice, Redis and Postgres agree, every watcher saw every change. Failovers:
test_cluster_failover.py."""

import asyncio
import contextlib
import random
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import asyncpg
import grpc
import pytest
import redis
from google.protobuf.duration_pb2 import Duration
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import Redis, RedisCluster

from inventory import keys
from inventory.local_servers import free_port
from inventory.quotas import Quotas, Rate
from tests.booking.helpers import WorkerProcess, booked_in_redis, drained, wait_for, worker_command
from tests.redis_cluster import RedisClusterNodes
from tests.test_serve_process import wait_serving

SEATS = [f"s{n}" for n in range(24)]
BATCH_SEAT, EXPIRING_SEAT = SEATS[-1], SEATS[-2]  # kept from the buyers
EVENTS_PER_NODE = 2
BUYERS = 6  # per event, racing for the same seats

if TYPE_CHECKING:  # the async stub class exists only in the generated type stubs
    from lml.inventory.v1.inventory_pb2_grpc import InventoryServiceAsyncStub as Stub


def started_cluster(data_dir: Path) -> Iterator[RedisClusterNodes]:
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed: it creates the cluster (apt-get install redis)")
    nodes = RedisClusterNodes(data_dir, replicas=1)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    yield from started_cluster(Path(tmp_path_factory.mktemp("redis-cluster")))


@pytest.fixture
def seed_url(cluster_nodes: RedisClusterNodes) -> str:
    return f"redis://127.0.0.1:{cluster_nodes.ports[0]}/0"


@pytest.fixture
async def cluster(seed_url: str) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(seed_url, decode_responses=True)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def service(seed_url: str) -> Iterator[str]:
    with serving(seed_url) as target:
        yield target


@contextlib.contextmanager
def serving(seed_url: str, *options: str) -> Iterator[str]:
    """`lml-inventory serve --redis-cluster` with `options`; yields its address."""
    target = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [
            *(sys.executable, "-c", "from inventory.cli import main; main()", "serve"),
            *("--listen", target, "--redis-url", seed_url, "--redis-cluster"),
            *("--sweep-interval", "0.1", *options),
        ]
    )
    try:
        yield target
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture
async def stub(cluster: RedisCluster, service: str) -> AsyncIterator["Stub"]:
    await wait_serving(service)
    async with grpc.aio.insecure_channel(service) as channel:
        yield pb_grpc.InventoryServiceStub(channel)


def events_on_every_node(cluster: RedisCluster) -> list[str]:
    """EVENTS_PER_NODE event ids owned by each primary."""
    by_node: dict[str, list[str]] = {}
    for number in range(10_000):
        event_id = f"gig-{number}"
        node = cluster.get_node_from_key(keys.event_keys(event_id).meta)
        assert node is not None
        owned = by_node.setdefault(node.name, [])
        if len(owned) < EVENTS_PER_NODE:
            owned.append(event_id)
        if len(by_node) == 3 and all(len(e) == EVENTS_PER_NODE for e in by_node.values()):
            break
    assert len(by_node) == 3
    return sorted(event for owned in by_node.values() for event in owned)


class Watcher:
    """A WatchEvent stream from the start, folding every change into seat statuses."""

    def __init__(self, stub: "Stub", event_id: str) -> None:
        self.statuses = dict.fromkeys(SEATS, pb.SEAT_STATUS_AVAILABLE)
        self.expired: set[str] = set()  # seats whose hold the sweeper ended
        self.version = 0
        self.task = asyncio.create_task(self._run(stub, event_id))

    async def _run(self, stub: "Stub", event_id: str) -> None:
        async for response in stub.WatchEvent(pb.WatchEventRequest(event_id=event_id)):
            for change in response.changes:
                assert change.version == self.version + 1, "a change missing or repeated"
                self.version = change.version
                self.statuses |= dict.fromkeys(change.seat_ids, change.status)
                if change.reason == pb.CHANGE_REASON_EXPIRED:
                    self.expired.update(change.seat_ids)


async def buyer(stub: "Stub", event_id: str, name: str, rng: random.Random) -> list[pb.Booking]:
    """Tries for random pairs of seats; confirms every other hold, releases the rest."""
    bookings = []
    for attempt in range(6):
        seats = rng.sample(SEATS[:-2], 2)
        try:
            held = await stub.Hold(
                pb.HoldRequest(event_id=event_id, holder_id=name, seat_ids=seats)
            )
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
            continue
        ref = {"event_id": event_id, "hold_id": held.hold.hold_id, "holder_id": name}
        if attempt % 2:
            await stub.Release(pb.ReleaseRequest(**ref))
        else:
            bookings.append((await stub.Confirm(pb.ConfirmRequest(**ref))).booking)
    return bookings


async def execute_across_nodes(stub: "Stub", event_ids: list[str]) -> list[pb.OperationResult]:
    """One Execute batch holding the last seat of every event: one pipeline over every node."""
    batch = pb.ExecuteRequest(
        operations=[
            pb.Operation(
                id=event_id,
                hold=pb.HoldRequest(event_id=event_id, holder_id="batch", seat_ids=[BATCH_SEAT]),
            )
            for event_id in event_ids
        ]
    )

    async def requests() -> AsyncIterator[pb.ExecuteRequest]:
        yield batch

    return [result async for response in stub.Execute(requests()) for result in response.results]


async def postgres_bookings(pg_url: str, event_id: str) -> dict[str, str]:
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            "SELECT seat_id, booking_id FROM booked_seats WHERE event_id = $1", event_id
        )
    finally:
        await conn.close()
    seats = [row["seat_id"] for row in rows]
    assert len(seats) == len(set(seats)), "a seat booked twice in Postgres"
    return {row["seat_id"]: row["booking_id"] for row in rows}


def lml_worker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*worker_command(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def lose_event(cluster: RedisCluster, event_id: str) -> int:
    """Deletes every key of the event on the node that owns it, as a lost primary would."""
    node = cluster.get_node_from_key(keys.event_keys(event_id).meta)
    assert node is not None
    client = redis.Redis(host=node.host, port=int(node.port), decode_responses=True)
    lost = list(client.scan_iter(match=f"lml:{{{event_id}}}:*"))
    client.delete(*lost)
    client.close()
    return len(lost)


async def test_the_whole_flow_on_a_cluster_with_replicas(
    cluster: RedisCluster, stub: "Stub", seed_url: str, pg_url: str
) -> None:
    # Annotated for Redis; a RedisCluster client offers every command the helpers send.
    any_node = cast(Redis, cluster)
    event_ids = events_on_every_node(cluster)
    for event_id in event_ids:
        request = pb.CreateEventRequest(event_id=event_id)
        for number, seat_id in enumerate(SEATS):
            request.seats.add(seat_id=seat_id, section="S", row="1", number=str(number))
        assert (await stub.CreateEvent(request)).created
    watchers = {event_id: Watcher(stub, event_id) for event_id in event_ids}
    for event_id in event_ids:  # the sweeper must end these on every node
        await stub.Hold(
            pb.HoldRequest(
                event_id=event_id,
                holder_id="leaver",
                seat_ids=[EXPIRING_SEAT],
                ttl=Duration(nanos=200_000_000),
            )
        )
    worker = WorkerProcess(seed_url, pg_url, "--redis-cluster")
    worker.start()
    try:
        rng = random.Random(14)
        results = await asyncio.gather(
            *(
                buyer(stub, event_id, f"buyer-{n}", random.Random(rng.random()))
                for event_id in event_ids
                for n in range(BUYERS)
            )
        )
        bookings = [booking for bought in results for booking in bought]
        batch = await execute_across_nodes(stub, event_ids)
        assert sorted(result.id for result in batch if result.HasField("hold")) == event_ids

        async def synced() -> bool:
            return await drained(any_node, event_ids)

        await wait_for(synced, within=60)
        for event_id in event_ids:
            in_redis = await booked_in_redis(any_node, event_id)
            assert await postgres_bookings(pg_url, event_id) == in_redis
        booked = [(b.event_id, seat) for b in bookings for seat in b.seat_ids]
        assert len(booked) == len(set(booked)), "a seat sold twice"
        assert {b.event_id for b in bookings} == set(event_ids), "every node took bookings"

        async def watched() -> bool:
            for event_id, watcher in watchers.items():
                meta = keys.event_keys(event_id).meta
                if EXPIRING_SEAT not in watcher.expired:  # the sweeper has not ended it yet
                    return False
                if watcher.version != int(await cluster.hget(meta, "version") or 0):
                    return False
            return True

        await wait_for(watched, within=30)
        for event_id, watcher in watchers.items():
            assert not watcher.task.done(), watcher.task
            assert watcher.expired == {EXPIRING_SEAT}
            snapshot = await stub.GetAvailability(pb.GetAvailabilityRequest(event_id=event_id))
            assert snapshot.version == watcher.version
            assert {seat.seat_id: seat.status for seat in snapshot.seats} == watcher.statuses
            assert set(await booked_in_redis(any_node, event_id)) == {
                seat for seat, status in watcher.statuses.items() if status == pb.SEAT_STATUS_BOOKED
            }
    finally:
        assert worker.stop() == 0
        for watcher in watchers.values():
            watcher.task.cancel()

    lost = event_ids[0]
    expected = await booked_in_redis(any_node, lost)
    assert expected, "the event to rebuild has bookings"
    assert lose_event(cluster, lost) > 0
    rebuilt = lml_worker(
        *("rebuild", "--redis-url", seed_url, "--redis-cluster"),
        *("--postgres-url", pg_url, "--event", lost),
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert await booked_in_redis(any_node, lost) == expected

    worker.start()  # joins the rebuilt event's streams again
    try:

        async def resynced() -> bool:
            return await drained(any_node, event_ids)

        await wait_for(resynced, within=60)
    finally:
        assert worker.stop() == 0
    for event_id in event_ids:
        reconciled = lml_worker(
            *("reconcile", "--redis-url", seed_url, "--redis-cluster"),
            *("--postgres-url", pg_url, "--event", event_id),
        )
        assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
        assert "0 differences" in reconciled.stdout


async def test_quotas_count_on_the_cluster(cluster: RedisCluster, seed_url: str) -> None:
    """API-key rates of `--redis-cluster`: counted in the cluster, shared by processes."""
    rate = Rate(ops_per_s=1, burst=50)  # 50 per 50 s: no refill during the test
    processes = [Quotas(seed_url, lease_share=0.1, cluster=True) for _ in range(2)]
    admitted = 0
    try:
        for turn in range(80):
            if await processes[turn % 2].charge(f"key-{turn % 4}", rate, 1) is None:
                admitted += 1
    finally:
        for quotas in processes:
            await quotas.close()
    assert admitted == 4 * 20  # 20 turns per key, all within its budget of 50
    refused = Quotas(seed_url, lease_share=0, cluster=True)
    try:
        results = [await refused.charge("key-0", rate, 1) for _ in range(40)]
    finally:
        await refused.close()
    assert results.count(None) == 50 - 20
    assert len([key async for key in cluster.scan_iter(match="lml-quota*")]) > 0


async def test_durable_confirms_are_on_their_replicas_when_answered(
    cluster: RedisCluster, cluster_nodes: RedisClusterNodes, seed_url: str
) -> None:
    """`--confirm-durability replica` on a cluster: a confirm on any node answers once that
    node's replica has the booking (read from the replica at once)."""
    event_ids = events_on_every_node(cluster)
    with serving(seed_url, "--confirm-durability", "replica") as target:
        await wait_serving(target)
        async with grpc.aio.insecure_channel(target) as channel:
            stub: Stub = pb_grpc.InventoryServiceStub(channel)
            for event_id in event_ids:
                request = pb.CreateEventRequest(event_id=event_id)
                for number, seat_id in enumerate(SEATS):
                    request.seats.add(seat_id=seat_id, section="S", row="1", number=str(number))
                await stub.CreateEvent(request)

            async def book(event_id: str) -> pb.Booking:
                hold = pb.HoldRequest(event_id=event_id, holder_id="h", seat_ids=SEATS[:2])
                held = (await stub.Hold(hold)).hold
                confirm = pb.ConfirmRequest(event_id=event_id, hold_id=held.hold_id, holder_id="h")
                return (await stub.Confirm(confirm)).booking

            bookings = await asyncio.gather(*(book(event_id) for event_id in event_ids))
    for booking in bookings:
        primary = cluster.get_node_from_key(keys.event_keys(booking.event_id).meta)
        assert primary is not None
        replica = cluster_nodes.replica_of(int(primary.port))
        node = redis.Redis(port=replica, decode_responses=True)
        node.readonly()
        seats = node.hgetall(keys.event_keys(booking.event_id).seats)
        node.close()
        assert {seat: seats[seat] for seat in booking.seat_ids} == dict.fromkeys(
            booking.seat_ids, f"B:{booking.booking_id}"
        )
