"""A script's cost grows with the seats in the request, never with the seats in the event.

The same operations on a 1,000-seat and a 100,000-seat event must issue the same Redis commands,
counted per command by Redis itself (INFO commandstats counts the commands a script runs too):
the multisets are compared, never a timing.
"""

import asyncio
from collections import Counter
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from inventory.engine import Inventory
from inventory.errors import InventoryError
from inventory.script_calls import LIBRARY

# Commands that read a whole key: none may run for a hold, extend, release or confirm.
WHOLE_KEY_READS = {"hgetall", "hkeys", "hvals", "hscan", "scan", "keys", "smembers", "xrange"}
MEASURING = {"config", "info"}  # the test's own commands
INDEX_WRITES = {"zrem", "zadd"}  # the index's, and the deadlines'


def _without(counts: Counter[str], names: set[str]) -> Counter[str]:
    return Counter({name: n for name, n in counts.items() if name not in names})


async def _commands(redis: Redis, operation: Any) -> Counter[str]:
    """Runs `operation` (an awaitable) and returns the commands Redis ran for it, by name."""
    await redis.config_resetstat()
    await operation
    stats = await redis.info("commandstats")
    counts: Counter[str] = Counter()
    for key, value in stats.items():
        name = key.removeprefix("cmdstat_")
        if name.split("|")[0] not in MEASURING:
            counts[name] = int(value["calls"])
    return counts


async def _create(inventory: Inventory, event_id: str, seats: int) -> None:
    request = pb.CreateEventRequest(event_id=event_id)
    for number in range(seats):
        request.seats.add(seat_id=f"s{number}", section="S", row=str(number // 100), number="1")
    request.areas.add(area_id="floor", capacity=seats // 10)
    await inventory.create_event(request)


async def _costs(inventory: Inventory, redis: Redis, event_id: str) -> dict[str, Counter[str]]:
    """The commands of each operation of one fixed scenario on `event_id`."""

    def hold(holder: str, seats: list[str], ttl_ms: int = 60_000) -> pb.HoldRequest:
        ttl = Duration(seconds=ttl_ms // 1000, nanos=ttl_ms % 1000 * 1_000_000)
        return pb.HoldRequest(event_id=event_id, holder_id=holder, seat_ids=seats, ttl=ttl)

    costs: dict[str, Counter[str]] = {}
    held: list[pb.HoldResponse] = []

    async def keep(call: Any) -> None:
        held.append(await call)

    costs["hold"] = await _commands(redis, keep(inventory.hold(hold("ann", ["s1", "s2", "s3"]))))
    ann = held[-1].hold
    costs["extend"] = await _commands(
        redis,
        inventory.extend(pb.ExtendRequest(event_id=event_id, hold_id=ann.hold_id, holder_id="ann")),
    )
    confirm = pb.ConfirmRequest(event_id=event_id, hold_id=ann.hold_id, holder_id="ann")
    costs["confirm"] = await _commands(redis, inventory.confirm(confirm))
    costs["confirm retry"] = await _commands(redis, inventory.confirm(confirm))

    await keep(inventory.hold(hold("bob", ["s10", "s11"])))
    release = pb.ReleaseRequest(event_id=event_id, hold_id=held[-1].hold.hold_id, holder_id="bob")
    costs["release"] = await _commands(redis, inventory.release(release))

    # A hold that runs out, then another holder's hold on one of its seats ends it on the way.
    await keep(inventory.hold(hold("cy", ["s20", "s21", "s22"], ttl_ms=1)))
    await asyncio.sleep(0.01)
    costs["hold ending an expired hold"] = await _commands(
        redis, keep(inventory.hold(hold("dee", ["s22", "s23"])))
    )

    best = pb.BestAvailable(quantity=4, section="S")
    costs["best available"] = await _commands(
        redis,
        inventory.hold(pb.HoldRequest(event_id=event_id, holder_id="eve", best_available=best)),
    )
    places = pb.GeneralAdmission(area_id="floor", quantity=5)
    costs["general admission"] = await _commands(
        redis,
        keep(
            inventory.hold(
                pb.HoldRequest(event_id=event_id, holder_id="fay", general_admission=places)
            )
        ),
    )
    release = pb.ReleaseRequest(event_id=event_id, hold_id=held[-1].hold.hold_id, holder_id="fay")
    costs["release of places"] = await _commands(redis, inventory.release(release))
    return costs


async def test_operations_issue_the_same_commands_whatever_the_event_size(
    inventory: Inventory, redis: Redis
) -> None:
    await redis.function_load(LIBRARY.source, replace=True)  # loading is not part of the cost
    await _create(inventory, "small", 1_000)
    await _create(inventory, "big", 100_000)
    small_costs = await _costs(inventory, redis, "small")
    big_costs = await _costs(inventory, redis, "big")

    assert big_costs == small_costs
    for operation, commands in small_costs.items():
        assert commands["fcall"] == 1, f"{operation}: one script call"
        assert not WHOLE_KEY_READS & set(commands), f"{operation} reads a whole key: {commands}"
    # Ending the expired hold on the way costs what a release of it would, less the script call
    # and the release's reads of the event's settings and of the clock: a fixed set of commands.
    # The index's ZREM and ZADD calls are left out of that comparison: a run whose first seat,
    # length bucket and best rank stay put keeps its member, so which of them run depends on
    # the runs (here the run before the expired hold keeps its member through the merge and
    # the split after it). At most one of each per change of the index, beside the ZADDs of the
    # expired hold's tombstone and of the new hold's deadline.
    ending = small_costs["hold ending an expired hold"]
    extra = _without(ending - small_costs["hold"], INDEX_WRITES)
    expected = small_costs["release"] - Counter(fcall=1, hmget=1, time=1)
    assert extra == _without(expected, INDEX_WRITES)
    assert ending["zrem"] <= 2 and ending["zadd"] <= 4, ending


async def _create_rowless(inventory: Inventory, event_id: str, seats: int) -> None:
    request = pb.CreateEventRequest(event_id=event_id)
    for number in range(seats):
        request.seats.add(seat_id=f"s{number}")
    await inventory.create_event(request)


async def test_seats_without_rows_cost_the_same_whatever_the_event_size(
    inventory: Inventory, redis: Redis
) -> None:
    await redis.function_load(LIBRARY.source, replace=True)
    costs: list[dict[str, Counter[str]]] = []
    for event_id, size in (("small", 1_000), ("big", 100_000)):
        await _create_rowless(inventory, event_id, size)
        held = pb.HoldRequest(event_id=event_id, holder_id="ann", seat_ids=["s1", "s2", "s999"])
        event_costs = {"hold": await _commands(redis, inventory.hold(held))}
        ref: Any = {"event_id": event_id, "holder_id": "ann"}
        hold_id = (await inventory.hold(pb.HoldRequest(**ref, seat_ids=["s5"]))).hold.hold_id
        event_costs["release"] = await _commands(
            redis, inventory.release(pb.ReleaseRequest(**ref, hold_id=hold_id))
        )
        best = pb.HoldRequest(**ref, best_available=pb.BestAvailable(quantity=2))
        event_costs["best available, refused"] = await _commands(redis, _refused(inventory, best))
        costs.append(event_costs)
    assert costs[0] == costs[1]
    for operation, commands in costs[0].items():
        assert not WHOLE_KEY_READS & set(commands), f"{operation} reads a whole key: {commands}"


async def _refused(inventory: Inventory, request: pb.HoldRequest) -> None:
    with pytest.raises(InventoryError, match="no rows"):
        await inventory.hold(request)
