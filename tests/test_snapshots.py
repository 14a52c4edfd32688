"""Availability snapshots read in bounded chunks, and the per-event snapshot cache.

Writes race with chunked reads on a real Redis; every snapshot at version v must equal the state
obtained by replaying the change log up to v, and a watcher continuing from v must see every
later change exactly once. Costs are counted with INFO commandstats, never timed.
"""

import asyncio
import json
import random
from collections import Counter
from typing import Any

from google.protobuf.duration_pb2 import Duration
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from inventory import keys, script_calls
from inventory.engine import Inventory
from inventory.errors import InventoryError
from inventory.snapshots import SnapshotCache, Status
from inventory.watch import WatchHub

EVENT = "race"
SEATS = 3_000  # fifteen chunks or so
STATUS = {"AVAILABLE": pb.SEAT_STATUS_AVAILABLE, "HELD": pb.SEAT_STATUS_HELD}
STATUS["BOOKED"] = pb.SEAT_STATUS_BOOKED


async def _create(inventory: Inventory, event_id: str, seats: int, places: int = 0) -> None:
    request = pb.CreateEventRequest(event_id=event_id)
    for number in range(seats):
        request.seats.add(seat_id=f"s{number}", section="S", row=str(number // 100), number="1")
    if places:
        request.areas.add(area_id="floor", capacity=places)
    await inventory.create_event(request)


def _states(snapshot: pb.GetAvailabilityResponse) -> dict[str, Status]:
    states = {seat.seat_id: seat.status for seat in snapshot.seats}
    assert len(states) == len(snapshot.seats), "a seat listed twice"
    return states


async def _replayed(
    redis: Redis, event_id: str, seats: list[str], version: int
) -> dict[str, Status]:
    """Every seat available at version 0, then each logged change up to `version` applied."""
    states = dict.fromkeys(seats, pb.SEAT_STATUS_AVAILABLE)
    entries: Any = await redis.xrange(keys.event_keys(event_id).changes, "-", f"0-{version}")
    assert [int(entry_id.split("-")[1]) for entry_id, _ in entries] == list(range(1, version + 1))
    for _entry_id, fields in entries:
        for seat in json.loads(fields["seat_ids"]) or []:
            states[seat] = STATUS[fields["status"]]
    return states


async def _writer(inventory: Inventory, number: int, stop: asyncio.Event) -> int:
    """Holds, releases, confirms and lets holds run out on random seats until told to stop."""
    rng = random.Random(number)
    holder = f"w{number}"
    writes = 0
    while not stop.is_set():
        seats = [f"s{rng.randrange(SEATS)}" for _ in range(rng.randint(1, 3))]
        ttl = Duration(nanos=rng.choice([2_000_000, 60_000_000, 200_000_000]))
        request = pb.HoldRequest(event_id=EVENT, holder_id=holder, seat_ids=set(seats), ttl=ttl)
        try:
            hold = (await inventory.hold(request)).hold
        except InventoryError:
            continue  # taken, or over the holder's limit
        writes += 1
        ref: Any = {"event_id": EVENT, "hold_id": hold.hold_id, "holder_id": holder}
        outcome = rng.random()
        try:
            if outcome < 0.4:
                await inventory.release(pb.ReleaseRequest(**ref))
            elif outcome < 0.6:
                await inventory.confirm(pb.ConfirmRequest(**ref))
        except InventoryError:
            pass  # it ran out first
        writes += 1
    return writes


async def test_chunked_snapshots_equal_the_replayed_log_while_writes_race(
    inventory: Inventory, redis: Redis
) -> None:
    await _create(inventory, EVENT, SEATS)
    seats = [f"s{number}" for number in range(SEATS)]
    stop = asyncio.Event()
    writers = [asyncio.create_task(_writer(inventory, n, stop)) for n in range(6)]
    hub = WatchHub(redis)
    snapshots: list[pb.GetAvailabilityResponse] = []
    compacts: list[pb.GetAvailabilityResponse] = []
    try:
        for _round in range(6):
            # A fresh cache: a full chunked read; then the same cache, brought forward by the log.
            cache = SnapshotCache(redis, inventory.runner)
            snapshots.append(await cache.availability(EVENT))
            snapshots.append(await cache.availability(EVENT))
            compacts.append(await cache.availability(EVENT, unavailable_only=True))
        first = snapshots[0]
        watched: list[pb.SeatChange] = []
        progressed = asyncio.Event()

        async def watch() -> None:
            async for changes in hub.watch(EVENT, first.version):
                watched.extend(changes)
                progressed.set()

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        writes = sum(await asyncio.gather(*writers))
    final = await SnapshotCache(redis, inventory.runner).availability(EVENT)
    while not watched or watched[-1].version < final.version:
        progressed.clear()
        await asyncio.wait_for(progressed.wait(), 10)
    watcher.cancel()
    await hub.close()

    versions = [snapshot.version for snapshot in snapshots]
    assert writes > 50 and len(set(versions)) > 6, (writes, versions)  # reads raced with writes
    for snapshot in [*snapshots, final]:
        replayed = await _replayed(redis, EVENT, seats, snapshot.version)
        assert _states(snapshot) == replayed
        available = sum(status == pb.SEAT_STATUS_AVAILABLE for status in replayed.values())
        assert snapshot.available_count == available
    for compact in compacts:  # held and booked seats only, and how many are available
        replayed = await _replayed(redis, EVENT, seats, compact.version)
        taken = {s: status for s, status in replayed.items() if status != pb.SEAT_STATUS_AVAILABLE}
        assert _states(compact) == taken and compact.available_count == SEATS - len(taken)
    # A watcher continuing from the first snapshot: every later change once, in order.
    assert [change.version for change in watched] == list(
        range(first.version + 1, final.version + 1)
    )
    states = _states(first)
    for change in watched:
        for seat in change.seat_ids:
            states[seat] = change.status
    assert states == _states(final)


async def test_holds_past_their_deadline_never_show_as_held(
    inventory: Inventory, redis: Redis
) -> None:
    await _create(inventory, EVENT, 200, places=50)
    cache = inventory.snapshots
    await cache.availability(EVENT)  # cached before the holds, so the next read is from the log
    short = Duration(nanos=1_000_000)
    for number in range(3 * script_calls.AVAILABILITY_SWEEP + 1):  # several sweep batches
        await inventory.hold(
            pb.HoldRequest(
                event_id=EVENT, holder_id=f"h{number}", seat_ids=[f"s{number}"], ttl=short
            )
        )
    places = pb.GeneralAdmission(area_id="floor", quantity=5)
    await inventory.hold(pb.HoldRequest(event_id=EVENT, holder_id="ga", general_admission=places))
    await inventory.hold(pb.HoldRequest(event_id=EVENT, holder_id="kept", seat_ids=["s199"]))
    await asyncio.sleep(0.02)

    from_log = await cache.availability(EVENT)
    fresh = await SnapshotCache(redis, inventory.runner).availability(EVENT)
    for snapshot in (from_log, fresh):
        held = {seat.seat_id for seat in snapshot.seats if seat.status == pb.SEAT_STATUS_HELD}
        places_held = {seat for seat in held if seat.startswith("floor#")}
        assert held - places_held == {"s199"} and len(places_held) == 5
        assert [(a.area_id, a.capacity, a.available) for a in snapshot.areas] == [("floor", 50, 45)]
        assert len(snapshot.seats) == 250


async def _commands(redis: Redis) -> Counter[str]:
    stats = await redis.info("commandstats")
    return Counter(
        {
            key.removeprefix("cmdstat_"): int(value["calls"])
            for key, value in stats.items()
            if key.removeprefix("cmdstat_").split("|")[0] not in {"config", "info"}
        }
    )


async def test_a_thousand_readers_of_one_version_cost_about_one_read(
    inventory: Inventory, redis: Redis
) -> None:
    await _create(inventory, EVENT, SEATS)
    cache = inventory.snapshots
    await cache.availability(EVENT)
    await redis.config_resetstat()
    snapshots = await asyncio.gather(*(cache.availability(EVENT) for _ in range(1_000)))
    commands = await _commands(redis)
    # One refresh serves the callers that came before it started, a second the rest: each is
    # one availability_version call; nothing read the seats.
    assert commands["fcall"] <= 2 and "hscan" not in commands, commands
    assert {snapshot.version for snapshot in snapshots} == {0}

    held = pb.HoldRequest(event_id=EVENT, holder_id="ann", seat_ids=["s7", "s8"])
    await inventory.hold(held)
    await redis.config_resetstat()
    after = await cache.availability(EVENT)
    commands = await _commands(redis)
    assert after.version == 1 and _states(after)["s7"] == pb.SEAT_STATUS_HELD
    assert "hscan" not in commands and commands["xrange"] == 1, commands  # from the log

    # The log trimmed past the cached version: a fresh chunked read.
    await inventory.hold(pb.HoldRequest(event_id=EVENT, holder_id="bob", seat_ids=["s9"]))
    await inventory.hold(pb.HoldRequest(event_id=EVENT, holder_id="cy", seat_ids=["s10"]))
    await redis.xtrim(keys.event_keys(EVENT).changes, maxlen=1, approximate=False)
    await redis.config_resetstat()
    trimmed = await cache.availability(EVENT)
    assert (await _commands(redis))["hscan"] > 1
    states = _states(trimmed)
    assert trimmed.version == 3 and len(states) == SEATS
    assert [states[s] for s in ("s7", "s9", "s10", "s11")] == [pb.SEAT_STATUS_HELD] * 3 + [
        pb.SEAT_STATUS_AVAILABLE
    ]


async def test_a_reader_is_never_served_a_version_older_than_its_call(
    inventory: Inventory,
) -> None:
    await _create(inventory, EVENT, 500)
    cache = inventory.snapshots
    await cache.availability(EVENT)
    for number in range(0, 40, 2):
        # A change first, so that the next refresh reads the log after its version call: a
        # refresh still in flight when the second hold lands, whose version predates it.
        for seat in (number, number + 1):
            if seat % 2:
                running = asyncio.create_task(cache.availability(EVENT))
                for _ in range(3):
                    await asyncio.sleep(0)  # the refresh has sent its version call
            hold = pb.HoldRequest(event_id=EVENT, holder_id=f"h{seat}", seat_ids=[f"s{seat}"])
            await inventory.hold(hold)
        # Called after the hold: the running refresh must not answer it.
        seen = await cache.availability(EVENT)
        assert seen.version == number + 2, (number, seen.version)
        assert _states(seen)[f"s{number + 1}"] == pb.SEAT_STATUS_HELD
        assert (await running).version >= number + 1


async def test_chunk_calls_cost_the_same_whatever_the_event_size(
    inventory: Inventory, redis: Redis
) -> None:
    await redis.function_load(script_calls.LIBRARY.source, replace=True)
    costs: list[tuple[Counter[str], Counter[str], int]] = []
    for event_id, size in (("small", 1_000), ("big", 100_000)):
        await _create(inventory, event_id, size)
        await redis.config_resetstat()
        chunk = script_calls.availability_chunk_result(
            await inventory.runner.run(script_calls.availability_chunk_call(event_id, "0"))
        )
        chunk_commands = await _commands(redis)
        await inventory.snapshots.availability(event_id)  # cached
        await inventory.hold(pb.HoldRequest(event_id=event_id, holder_id="a", seat_ids=["s1"]))
        await redis.config_resetstat()
        await inventory.snapshots.availability(event_id)  # brought forward from the log
        costs.append((chunk_commands, await _commands(redis), len(chunk.states)))
    (small_chunk, small_refresh, small_read), (big_chunk, big_refresh, big_read) = costs
    assert small_chunk == big_chunk == Counter(fcall=1, hget=1, hscan=1)
    assert small_refresh == big_refresh
    assert "hscan" not in big_refresh and "hgetall" not in big_refresh
    # HSCAN's COUNT is a hint: a chunk reads about that many seats, never the whole event.
    assert max(small_read, big_read) <= 3 * script_calls.AVAILABILITY_CHUNK


async def test_unavailable_only_over_grpc(inventory: Inventory, stub: Any) -> None:
    await _create(inventory, EVENT, 300, places=20)
    await inventory.hold(pb.HoldRequest(event_id=EVENT, holder_id="a", seat_ids=["s3", "s1"]))
    places = pb.GeneralAdmission(area_id="floor", quantity=2)
    await inventory.hold(pb.HoldRequest(event_id=EVENT, holder_id="b", general_admission=places))
    full = await stub.GetAvailability(pb.GetAvailabilityRequest(event_id=EVENT))
    compact = await stub.GetAvailability(
        pb.GetAvailabilityRequest(event_id=EVENT, unavailable_only=True)
    )
    assert len(full.seats) == 320 and full.available_count == 316 == compact.available_count
    listed = [seat.seat_id for seat in compact.seats]
    assert [seat.seat_id for seat in full.seats if seat.seat_id in listed] == listed  # same order
    assert {"s1", "s3"} < set(listed)
    assert {seat.status for seat in compact.seats} == {pb.SEAT_STATUS_HELD}
    assert len(compact.seats) == 4 and compact.version == full.version == 2
    assert list(compact.areas) == list(full.areas) and full.areas[0].available == 18
