"""The same library and engine on a real Redis Cluster (three masters): every key of an event
shares its hash tag, so each command runs on the one node that owns the event, and an Execute
batch over events on different nodes still runs every operation. The library is loaded on every
primary."""

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest
from google.protobuf.duration_pb2 import Duration
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis, RedisCluster

from inventory import keys
from inventory.engine import Inventory
from inventory.local_cluster import RedisClusterNodes
from inventory.redis_client import FunctionCallingCluster
from inventory.script_calls import LIBRARY

SEATS = [f"c{i}" for i in range(6)]


@pytest.fixture(scope="module")
def cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed: it creates the cluster (apt-get install redis)")
    nodes = RedisClusterNodes(Path(tmp_path_factory.mktemp("redis-cluster")))
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
async def cluster(cluster_nodes: RedisClusterNodes) -> AsyncIterator[RedisCluster]:
    client = FunctionCallingCluster(
        host="127.0.0.1", port=cluster_nodes.ports[0], decode_responses=True
    )
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def inventory(cluster: RedisCluster) -> Inventory:
    # Annotated for Redis; a RedisCluster client offers every command the engine sends.
    return Inventory(cast(Redis, cluster))


def _events_on_every_node(cluster: RedisCluster) -> list[str]:
    """One event id per master, each owning a different node."""
    by_node: dict[str, str] = {}
    for number in range(1000):
        event_id = f"show-{number}"
        node = cluster.get_node_from_key(keys.event_keys(event_id).meta)
        assert node is not None
        by_node.setdefault(node.name, event_id)
    assert len(by_node) == 3
    return sorted(by_node.values())


async def _create(inventory: Inventory, event_id: str) -> None:
    request = pb.CreateEventRequest(event_id=event_id)
    for number, seat_id in enumerate(SEATS):
        request.seats.add(seat_id=seat_id, section="S", row="1", number=str(number))
    request.areas.add(area_id="floor", capacity=5)
    assert (await inventory.create_event(request)).created


def _statuses(response: pb.GetAvailabilityResponse) -> dict[str, str]:
    return {
        seat.seat_id: pb.SeatStatus.Name(seat.status).removeprefix("SEAT_STATUS_")
        for seat in response.seats
    }


async def test_every_operation_on_events_on_every_node(
    cluster: RedisCluster, inventory: Inventory
) -> None:
    for event_id in _events_on_every_node(cluster):
        await _create(inventory, event_id)
        hold = pb.HoldRequest(event_id=event_id, holder_id="ann", seat_ids=["c0", "c1"])
        held = (await inventory.hold(hold)).hold
        extend = pb.ExtendRequest(
            event_id=event_id, hold_id=held.hold_id, holder_id="ann", ttl=Duration(seconds=1200)
        )
        extended = (await inventory.extend(extend)).hold
        assert extended.expires_at.ToMilliseconds() > held.expires_at.ToMilliseconds()
        confirm = pb.ConfirmRequest(event_id=event_id, hold_id=held.hold_id, holder_id="ann")
        booking = (await inventory.confirm(confirm)).booking
        assert (await inventory.confirm(confirm)).booking == booking
        other = pb.HoldRequest(event_id=event_id, holder_id="bob", seat_ids=["c2"])
        released = await inventory.release(
            pb.ReleaseRequest(
                event_id=event_id,
                hold_id=(await inventory.hold(other)).hold.hold_id,
                holder_id="bob",
            )
        )
        assert list(released.seat_ids) == ["c2"]
        snapshot = await inventory.availability(pb.GetAvailabilityRequest(event_id=event_id))
        assert snapshot.version == 5  # held, extended, confirmed, held, released
        assert _statuses(snapshot) == {seat: "AVAILABLE" for seat in SEATS} | {
            f"floor#{n}": "AVAILABLE" for n in range(1, 6)
        } | {
            "c0": "BOOKED",
            "c1": "BOOKED",
        }
        assert await cluster.xlen(keys.event_keys(event_id).outbox) == 1
        best = pb.HoldRequest(
            event_id=event_id, holder_id="cy", best_available=pb.BestAvailable(quantity=2)
        )
        assert list((await inventory.hold(best)).hold.seat_ids) == ["c2", "c3"]
        places = pb.HoldRequest(
            event_id=event_id,
            holder_id="cy",
            general_admission=pb.GeneralAdmission(area_id="floor", quantity=5),
        )
        assert len((await inventory.hold(places)).hold.seat_ids) == 5


async def test_a_batch_over_events_on_different_nodes_runs_every_operation(
    cluster: RedisCluster, inventory: Inventory
) -> None:
    events = _events_on_every_node(cluster)
    holds: dict[str, pb.Hold] = {}
    for event_id in events:
        await _create(inventory, event_id)
        request = pb.HoldRequest(event_id=event_id, holder_id="ann", seat_ids=["c0"])
        holds[event_id] = (await inventory.hold(request)).hold
    await cluster.function_flush()  # on every node: the batch must load the library again
    await cluster.config_resetstat(target_nodes=RedisCluster.PRIMARIES)
    first, second, third = events
    operations = [
        pb.Operation(
            id=f"hold {event_id}",
            hold=pb.HoldRequest(event_id=event_id, holder_id="bob", seat_ids=["c1", "c2"]),
        )
        for event_id in events
    ]
    operations += [
        pb.Operation(
            id="taken",
            hold=pb.HoldRequest(event_id=second, holder_id="cy", seat_ids=["c0"]),
        ),
        pb.Operation(
            id="extend",
            extend=pb.ExtendRequest(event_id=first, hold_id=holds[first].hold_id, holder_id="ann"),
        ),
        pb.Operation(
            id="confirm",
            confirm=pb.ConfirmRequest(
                event_id=second, hold_id=holds[second].hold_id, holder_id="ann"
            ),
        ),
        pb.Operation(
            id="release",
            release=pb.ReleaseRequest(
                event_id=third, hold_id=holds[third].hold_id, holder_id="ann"
            ),
        ),
    ]
    results = {result.id: result for result in await inventory.execute(operations)}
    kinds = {name: result.WhichOneof("result") for name, result in results.items()}
    assert kinds == {f"hold {event_id}": "hold" for event_id in events} | {
        "taken": "error",
        "extend": "extend",
        "confirm": "confirm",
        "release": "release",
    }
    expected = {
        first: {"c0": "HELD", "c1": "HELD", "c2": "HELD"},
        second: {"c0": "BOOKED", "c1": "HELD", "c2": "HELD"},
        third: {"c0": "AVAILABLE", "c1": "HELD", "c2": "HELD"},
    }
    for event_id in events:
        snapshot = await inventory.availability(pb.GetAvailabilityRequest(event_id=event_id))
        statuses = _statuses(snapshot)
        assert {seat: statuses[seat] for seat in ("c0", "c1", "c2")} == expected[event_id]
    # The library is on every primary, loaded once on each, and no FCALL needed a node to find
    # its keys (COMMAND GETKEYS) before it was sent.
    for primary in cluster.get_primaries():
        listed = await cluster.execute_command(
            "FUNCTION", "LIST", "LIBRARYNAME", LIBRARY.name, target_nodes=primary
        )
        assert [library["library_name"] for library in listed] == [LIBRARY.name]
        stats = await cluster.info("commandstats", target_nodes=primary)
        assert stats["cmdstat_function|load"]["calls"] == 1, primary
        assert stats["cmdstat_fcall"]["calls"] >= 2, primary
        assert "cmdstat_command|getkeys" not in stats, primary


async def test_the_sweeper_expires_holds_on_every_node(
    cluster: RedisCluster, inventory: Inventory
) -> None:
    events = _events_on_every_node(cluster)
    for event_id in events:
        await _create(inventory, event_id)
        await inventory.hold(
            pb.HoldRequest(
                event_id=event_id,
                holder_id="ann",
                seat_ids=["c3", "c4"],
                ttl=Duration(nanos=20_000_000),
            )
        )
    await asyncio.sleep(0.05)
    assert await inventory.sweep() == len(events)
    for event_id in events:
        changes = cast(
            "list[tuple[str, dict[str, str]]]",
            await cluster.xrange(keys.event_keys(event_id).changes),
        )
        assert [fields["reason"] for _, fields in changes] == ["held", "expired"]
