"""Failovers of a Redis Cluster (three primaries with a replica each) under the service, with
`--confirm-durability replica`: a primary SIGKILLed under load and its replica promoted loses no
acknowledged booking and sells no seat twice; clients see UNAVAILABLE and their retries succeed;
the booking worker resumes on the new primary. And the contrast, made certain by cutting the
replication link first: without durability an acknowledged booking is lost, with it the confirm
is refused until it is on a replica."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import asyncpg
import grpc
import pytest
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import Redis, RedisCluster

from inventory import keys
from tests.booking.helpers import WorkerProcess, booked_in_redis, wait_for
from tests.booking.test_cluster_system import events_on_every_node, serving, started_cluster
from tests.faults.invariants import check_postgres, check_redis, drained, summary
from tests.faults.load import SELL, Outcomes, assert_answers, run_load
from tests.redis_cluster import RedisClusterNodes
from tests.test_serve_process import wait_serving

if TYPE_CHECKING:  # the async stub class exists only in the generated type stubs
    from lml.inventory.v1.inventory_pb2_grpc import InventoryServiceAsyncStub as Stub

DURABLE = ("--confirm-durability", "replica")
SEATS = [f"f{number}" for number in range(400)]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """A cluster of the test's own: it kills its nodes."""
    yield from started_cluster(tmp_path)


@pytest.fixture
async def cluster(nodes: RedisClusterNodes) -> AsyncIterator[RedisCluster]:
    client = await RedisCluster.from_url(seed(nodes), decode_responses=True).initialize()
    yield client
    await client.aclose()


def seed(nodes: RedisClusterNodes) -> str:
    return f"redis://127.0.0.1:{nodes.ports[0]}/0"


async def create(stub: "Stub", event_ids: list[str]) -> None:
    for event_id in event_ids:
        request = pb.CreateEventRequest(event_id=event_id)
        for number, seat_id in enumerate(SEATS):
            request.seats.add(seat_id=seat_id, section="S", row="1", number=str(number))
        assert (await stub.CreateEvent(request)).created


def one_event_per_primary(cluster: RedisCluster, first_on: int = 0) -> list[str]:
    """An event id owned by each primary, the one on port `first_on` (if any) first."""
    by_primary = {
        primary_of(cluster, event_id): event_id for event_id in events_on_every_node(cluster)
    }
    assert len(by_primary) == 3
    return [by_primary[port] for port in sorted(by_primary, key=lambda port: port != first_on)]


def primary_of(cluster: RedisCluster, event_id: str) -> int:
    node = cluster.get_node_from_key(keys.event_keys(event_id).meta)
    assert node is not None
    return int(node.port)


def fail_over(nodes: RedisClusterNodes, primary: int) -> int:
    """SIGKILL of `primary`, its replica promoted, the dead node restarted (it rejoins as the
    new primary's replica, so that durable confirms can go on). Returns the new primary."""
    replica = nodes.replica_of(primary)
    nodes.kill(primary)
    nodes.take_over(replica)
    nodes.restart(primary)
    return replica


@pytest.mark.slow
async def test_a_primary_killed_under_load_loses_no_acknowledged_booking(
    nodes: RedisClusterNodes, cluster: RedisCluster, pg_url: str
) -> None:
    """SIGKILL of the primary that owns one event while buyers hold and confirm on every node,
    with --confirm-durability replica; its replica takes over."""
    # The victim is the seed node of every client (the worst case: the service and the worker
    # must find the cluster again through the other nodes); its event comes first.
    victim = nodes.ports[0]
    event_ids = one_event_per_primary(cluster, first_on=victim)
    with serving(seed(nodes), *DURABLE) as target:
        await wait_serving(target)
        async with grpc.aio.insecure_channel(target) as channel:
            await create(pb_grpc.InventoryServiceStub(channel), event_ids)
        worker = WorkerProcess(seed(nodes), pg_url, "--redis-cluster")
        worker.start()
        try:
            told = Outcomes()
            selling = asyncio.create_task(
                run_load(
                    target,
                    told,
                    dict.fromkeys(event_ids, SEATS),
                    10,
                    buyers=6,
                    mix=SELL,
                    pause=0.02,
                    seed=13,
                )
            )
            await asyncio.sleep(2)
            new_primary = await asyncio.to_thread(fail_over, nodes, victim)
            after_failover = await version_on(new_primary, event_ids[0])
            await selling
            await check_after_load(cluster, told, event_ids, pg_url)
            # The victim's event sold on, on its new primary.
            assert await version_on(new_primary, event_ids[0]) > after_failover
        finally:
            assert worker.stop() == 0


async def version_on(port: int, event_id: str) -> int:
    node = Redis(port=port, decode_responses=True)
    try:
        return int(await node.hget(keys.event_keys(event_id).meta, "version") or 0)
    finally:
        await node.aclose()


async def check_after_load(
    cluster: RedisCluster, told: Outcomes, event_ids: list[str], pg_url: str
) -> None:
    """Every call answered in the end (the UNAVAILABLE ones retried with their request ids), no
    acknowledged booking lost, no seat sold twice, Postgres equal to Redis once the worker has
    caught up, every version of every event in the audit table."""
    assert_answers(told, ok_over=100, abandoned=False)
    assert told.codes()["UNAVAILABLE"] > 0, "no call noticed the dead primary"
    # Confirms on the new primary until its old one is back as its replica, at least.
    assert any(rpc == "Confirm" and code == "UNAVAILABLE" for _, rpc, code, _ in told.calls)
    assert {event_id for event_id, _seats in told.bookings.values()} == set(event_ids)
    # Annotated for Redis; a RedisCluster client offers every command the checks send.
    any_node = cast(Redis, cluster)
    counts = await check_redis(any_node, told, event_ids)

    async def synced() -> bool:
        return await drained(any_node, event_ids)

    await wait_for(synced, within=90)
    pg = await asyncpg.connect(pg_url)
    try:
        await check_postgres(any_node, pg, event_ids)
    finally:
        await pg.close()
    print(summary("primary SIGKILLed, replica promoted", told, counts))


async def hold_on_a_replica(stub: "Stub", cluster: RedisCluster, event_id: str) -> pb.Hold:
    """A hold of two seats, once the event's replica has it too."""
    request = pb.HoldRequest(event_id=event_id, holder_id="h", seat_ids=SEATS[:2])
    held = (await stub.Hold(request)).hold
    primary = Redis(port=primary_of(cluster, event_id), single_connection_client=True)
    try:
        # WAIT counts this connection's writes: one in the event's slot, after the hold's.
        await primary.incr(keys.durability_marker(event_id))
        assert await primary.wait(1, 10_000) == 1
    finally:
        await primary.aclose()
    return held


def confirm_request(hold: pb.Hold) -> pb.ConfirmRequest:
    return pb.ConfirmRequest(
        event_id=hold.event_id,
        hold_id=hold.hold_id,
        holder_id=hold.holder_id,
        request_id=f"confirm-{hold.hold_id}",
    )


async def confirm_until_answered(stub: "Stub", request: pb.ConfirmRequest) -> pb.Booking:
    """Retries the same confirm (its request id too) while it fails UNAVAILABLE."""
    for _ in range(600):
        try:
            return (await stub.Confirm(request, timeout=5)).booking
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
        await asyncio.sleep(0.1)
    raise AssertionError("the confirm never succeeded")


@pytest.mark.slow  # two failovers one after the other
async def test_a_lagging_replica_loses_an_acknowledged_booking_only_without_durability(
    nodes: RedisClusterNodes, cluster: RedisCluster
) -> None:
    """The replication link of two primaries cut, then a confirm on each: through a service
    without durability it is acknowledged, and lost when the replica takes over; through one
    with --confirm-durability replica it fails UNAVAILABLE (in the same batch as a confirm on
    the third primary, which succeeds: each waits on its own primary), and its retry after the
    takeover gets a booking that is on the new primary and its replica."""
    plain_event, durable_event, healthy_event = one_event_per_primary(cluster)
    with serving(seed(nodes)) as plain, serving(seed(nodes), *DURABLE) as durable:
        await wait_serving(plain)
        await wait_serving(durable)
        async with (
            grpc.aio.insecure_channel(plain) as plain_channel,
            grpc.aio.insecure_channel(durable) as durable_channel,
        ):
            without: Stub = pb_grpc.InventoryServiceStub(plain_channel)
            with_durability: Stub = pb_grpc.InventoryServiceStub(durable_channel)
            event_ids = [plain_event, durable_event, healthy_event]
            await create(without, event_ids)
            holds = [await hold_on_a_replica(without, cluster, event_id) for event_id in event_ids]
            primaries = [primary_of(cluster, event_id) for event_id in event_ids[:2]]
            for primary in primaries:
                nodes.cut_replication(nodes.replica_of(primary))

            acknowledged = (await without.Confirm(confirm_request(holds[0]))).booking
            refused, healthy = await confirm_batch(with_durability, holds[1:])
            assert refused.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
            assert "replica" in refused.error.message
            assert healthy.confirm.booking.seat_ids == holds[2].seat_ids

            new_primaries = [
                await asyncio.to_thread(fail_over, nodes, primary) for primary in primaries
            ]
            lost = await booked_on(new_primaries[0], plain_event)
            assert acknowledged.booking_id not in lost.values(), "the booking survived"
            assert lost == {}

            booking = await confirm_until_answered(with_durability, confirm_request(holds[1]))
            assert booking.seat_ids == holds[1].seat_ids
            expected = dict.fromkeys(booking.seat_ids, booking.booking_id)
            assert await booked_on(new_primaries[1], durable_event) == expected
            replica = nodes.replica_of(new_primaries[1])
            assert await booked_on(replica, durable_event, readonly=True) == expected


async def confirm_batch(stub: "Stub", holds: list[pb.Hold]) -> list[pb.OperationResult]:
    """One Execute batch confirming every hold; the results in the holds' order."""
    batch = pb.ExecuteRequest(
        operations=[pb.Operation(id=hold.event_id, confirm=confirm_request(hold)) for hold in holds]
    )

    async def requests() -> AsyncIterator[pb.ExecuteRequest]:
        yield batch

    results = {
        result.id: result
        async for response in stub.Execute(requests())
        for result in response.results
    }
    return [results[hold.event_id] for hold in holds]


async def booked_on(port: int, event_id: str, readonly: bool = False) -> dict[str, str]:
    """The event's booked seats as one node has them (a replica's once READONLY is sent)."""
    node = Redis(port=port, decode_responses=True, single_connection_client=True)
    try:
        if readonly:
            await node.readonly()
        return await booked_in_redis(node, event_id)
    finally:
        await node.aclose()
