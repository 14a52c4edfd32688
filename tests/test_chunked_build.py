"""Creating and rebuilding an event in bounded chunks (inventory/event_build.py): invisible until
the last call, taken up again after a caller died, the same outcome as one atomic step."""

import asyncio
from collections import Counter
from typing import Any

import pytest
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from inventory import build_calls, event_build, keys
from inventory.engine import Inventory
from inventory.errors import InventoryError
from inventory.scripts import Call, ScriptRunner

EVENT = "build"
SEATS = 60  # rows of 10, and 6 general-admission places
BUILD_KEYS = (keys.building_key(EVENT), *keys.event_keys(EVENT))


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks small enough that a small event takes many calls."""
    monkeypatch.setattr(event_build, "ENTRY_CHUNK", 7)
    monkeypatch.setattr(event_build, "ROW_CHUNK_SEATS", 15)
    monkeypatch.setattr(event_build, "RESTORE_CHUNK_SEATS", 4)


def _request(seats: int = SEATS, category: str = "") -> pb.CreateEventRequest:
    request = pb.CreateEventRequest(event_id=EVENT)
    for n in range(seats):
        seat = request.seats.add(seat_id=f"s{n}", section="stalls", row=str(n // 10))
        seat.number = str(n % 10)
        if category:
            seat.category = category
    request.areas.add(area_id="floor", capacity=6)
    return request


class FailingRunner(ScriptRunner):
    """The engine's runner, whose connection drops after `calls` calls: a caller that died."""

    def __init__(self, redis: Redis, calls: int) -> None:
        super().__init__(redis)
        self.left = calls
        self.made: list[Call] = []

    async def run(self, call: Call) -> Any:
        if self.left == 0:
            raise RedisConnectionError("the caller died")
        self.left -= 1
        self.made.append(call)
        return await super().run(call)


async def _refused(call: Any) -> str:
    with pytest.raises(InventoryError) as refused:
        await call
    return refused.value.reason


async def _invisible(inventory: Inventory) -> None:
    """Nothing of the event is to be seen: every command finds no event."""
    assert await _refused(inventory.get_event(pb.GetEventRequest(event_id=EVENT))) == (
        "EVENT_NOT_FOUND"
    )
    hold = pb.HoldRequest(event_id=EVENT, holder_id="ann", seat_ids=["s1"])
    assert await _refused(inventory.hold(hold)) == "EVENT_NOT_FOUND"
    best = pb.HoldRequest(
        event_id=EVENT, holder_id="ann", best_available=pb.BestAvailable(quantity=2)
    )
    assert await _refused(inventory.hold(best)) == "EVENT_NOT_FOUND"
    assert await _refused(inventory.availability(pb.GetAvailabilityRequest(event_id=EVENT))) == (
        "EVENT_NOT_FOUND"
    )
    assert await inventory.sweep() == 0


async def _complete(inventory: Inventory, redis: Redis, seats: int = SEATS) -> None:
    """The event as one atomic create leaves it: every seat and place, every row indexed, no
    staging left, nothing that expires."""
    event = (await inventory.get_event(pb.GetEventRequest(event_id=EVENT))).event
    assert event.seat_count == seats
    availability = await inventory.availability(pb.GetAvailabilityRequest(event_id=EVENT))
    assert len(availability.seats) == seats + 6
    assert not await redis.exists(keys.building_key(EVENT))
    for key in keys.event_keys(EVENT):
        assert await redis.pttl(key) in (-1, -2), key  # no TTL left (or no such key)
    assert await redis.hlen(keys.event_keys(EVENT).rows) == seats // 10
    best = pb.HoldRequest(
        event_id=EVENT, holder_id="bob", best_available=pb.BestAvailable(quantity=4)
    )
    assert len((await inventory.hold(best)).hold.seat_ids) == 4


@pytest.mark.parametrize("calls", [1, 2, 5, 9, 13])  # open; seats; seats done; rows; all but commit
async def test_a_create_that_dies_between_chunks_leaves_nothing_visible_and_a_retry_completes(
    redis: Redis, inventory: Inventory, calls: int
) -> None:
    dying = FailingRunner(redis, calls)
    with pytest.raises(RedisConnectionError):
        await event_build.build_event(dying, build_calls.build_of(_request()))
    assert len(dying.made) == calls
    await _invisible(inventory)
    # What it left expires with the build, unless a retry takes it up first.
    for key in BUILD_KEYS:
        assert await redis.pttl(key) in range(-2, build_calls.STAGING_TTL_MS + 1), key
        assert await redis.pttl(key) != -1, key
    assert await redis.pttl(keys.building_key(EVENT)) > 0

    retry = FailingRunner(redis, 1000)
    assert (await event_build.build_event(retry, build_calls.build_of(_request()))).created
    # Taken up where it stopped: no chunk written twice.
    assert len(retry.made) == 1 + 14 - calls + 1  # opens again, writes the rest
    await _complete(inventory, redis)


async def test_a_full_create_takes_the_expected_chunks(redis: Redis) -> None:
    runner = FailingRunner(redis, 1000)
    assert (await event_build.build_event(runner, build_calls.build_of(_request()))).created
    names = [call.script.name for call in runner.made]
    # 66 seats and places in chunks of 7, 6 rows of 10 in chunks of 2 rows.
    assert names == ["create_event", *["build_seats"] * 10, *["build_rows"] * 3, "build_commit"]


async def test_holds_during_a_create_find_no_event_until_it_is_complete(
    redis: Redis, inventory: Inventory
) -> None:
    seats = 2000
    outcomes: list[str] = []
    created = asyncio.Event()

    async def create() -> None:
        await inventory.create_event(_request(seats))
        created.set()

    async def hold_until_created() -> None:
        while not created.is_set():
            hold = pb.HoldRequest(event_id=EVENT, holder_id="ann", seat_ids=[f"s{seats - 1}"])
            try:
                held = await inventory.hold(hold)
            except InventoryError as error:
                outcomes.append(error.reason)
                continue
            outcomes.append("held")
            # A hold that succeeds sees the whole event: every seat and row is there.
            assert await redis.hlen(keys.event_keys(EVENT).seats) == seats + 6
            assert await redis.hlen(keys.event_keys(EVENT).rows) == seats // 10
            release = pb.ReleaseRequest(event_id=EVENT, hold_id=held.hold.hold_id, holder_id="ann")
            await inventory.release(release)

    await asyncio.gather(create(), hold_until_created())
    assert "EVENT_NOT_FOUND" in outcomes
    assert set(outcomes) <= {"EVENT_NOT_FOUND", "held"}
    await _complete(inventory, redis, seats)


async def test_the_same_create_again_changes_nothing_and_other_input_is_refused(
    redis: Redis, inventory: Inventory
) -> None:
    assert (await inventory.create_event(_request())).created
    before = {key: await redis.dump(key) for key in keys.event_keys(EVENT)}
    again = FailingRunner(redis, 1000)
    assert not (await event_build.build_event(again, build_calls.build_of(_request()))).created
    assert [call.script.name for call in again.made] == ["create_event"]
    assert {key: await redis.dump(key) for key in keys.event_keys(EVENT)} == before
    assert await _refused(inventory.create_event(_request(category="gold"))) == "EVENT_EXISTS"
    assert {key: await redis.dump(key) for key in keys.event_keys(EVENT)} == before


async def test_a_dead_build_of_other_input_is_dropped_by_the_next_create(
    redis: Redis, inventory: Inventory
) -> None:
    with pytest.raises(RedisConnectionError):
        await event_build.build_event(FailingRunner(redis, 8), build_calls.build_of(_request(80)))
    assert (await inventory.create_event(_request(40))).created
    await _complete(inventory, redis, 40)
    assert await redis.hlen(keys.event_keys(EVENT).seats) == 46  # none of the dead build's left


async def test_a_create_whose_build_another_input_took_over_is_refused(
    redis: Redis, inventory: Inventory
) -> None:
    first, other = build_calls.build_of(_request()), build_calls.build_of(_request(category="g"))
    runner = ScriptRunner(redis)
    await runner.run(build_calls.create_event_call(first))
    await runner.run(build_calls.create_event_call(other))  # the later create wins the build
    chunk = build_calls.build_seats_call(first, 1, 7)
    with pytest.raises(InventoryError) as refused:
        build_calls.build_seats_done(await runner.run(chunk))
    assert refused.value.reason == "EVENT_EXISTS"
    assert (await event_build.build_event(runner, other)).created
    assert await _refused(event_build.build_event(runner, first)) == "EVENT_EXISTS"
    await _complete(inventory, redis)


async def test_a_rebuild_that_dies_while_restoring_leaves_nothing_visible_and_a_retry_completes(
    redis: Redis, inventory: Inventory
) -> None:
    bookings = {f"b{n}": [f"s{n}", f"s{n + 1}"] for n in range(0, 24, 2)}  # 12 bookings
    restore = event_build.Restore(5, bookings)
    dying = FailingRunner(redis, 1 + 10 + 2)  # opened, seats written, 2 of 6 restore chunks
    with pytest.raises(RedisConnectionError):
        await event_build.build_event(dying, build_calls.build_of(_request()), restore)
    await _invisible(inventory)

    outcome = await inventory.rebuild_event(_request(), restore)
    assert outcome.created
    restored = outcome.restored
    assert (restored.restored, restored.already_booked) == (16, 8)  # 4 bookings restored before
    assert restored.conflicts == []
    seats = await redis.hgetall(keys.event_keys(EVENT).seats)
    for booking_id, seat_ids in bookings.items():
        assert all(seats[seat] == f"B:{booking_id}" for seat in seat_ids)
    # Best available never offers a booked seat: the index was built from the booked states.
    best = pb.HoldRequest(
        event_id=EVENT, holder_id="ann", best_available=pb.BestAvailable(quantity=4)
    )
    held = (await inventory.hold(best)).hold.seat_ids
    assert not set(held) & {seat for seat_ids in bookings.values() for seat in seat_ids}
    # Versions go on above the floor; each booking restored is logged once.
    event = (await inventory.get_event(pb.GetEventRequest(event_id=EVENT))).event
    assert event.version > 5
    log: Any = await redis.xrange(keys.event_keys(EVENT).changes)
    assert sorted(
        fields["booking_id"] for _id, fields in log if fields["reason"] == "restored"
    ) == (sorted(bookings))

    again = await inventory.rebuild_event(_request(), restore)
    assert not again.created
    assert (again.restored.restored, again.restored.already_booked) == (0, 24)


async def test_two_identical_creates_at_once_build_one_event(
    redis: Redis, inventory: Inventory
) -> None:
    outcomes = await asyncio.gather(*(inventory.create_event(_request()) for _ in range(3)))
    assert sorted(outcome.created for outcome in outcomes) == [False, False, True]
    await _complete(inventory, redis)


async def _commands(redis: Redis, runner: ScriptRunner, call: Call) -> Counter[str]:
    """The commands Redis ran for one call (INFO commandstats counts a script's own commands)."""
    await redis.config_resetstat()
    await runner.run(call)
    stats = await redis.info("commandstats")
    return Counter(
        {
            key.removeprefix("cmdstat_"): int(value["calls"])
            for key, value in stats.items()
            if key.removeprefix("cmdstat_").split("|")[0] not in {"config", "info"}
        }
    )


async def test_opening_and_committing_a_build_cost_the_same_for_any_event_size(
    redis: Redis,
) -> None:
    """The one step that makes an event visible, and the one that opens its build, do not grow
    with the event: only the chunks between do, each bounded."""
    runner = ScriptRunner(redis)
    costs = []
    for seats in (60, 3000):
        await redis.flushall()
        build = build_calls.build_of(_request(seats))
        opened = await _commands(redis, runner, build_calls.create_event_call(build))
        chunks = -(-len(build.shape.entries) // event_build.ENTRY_CHUNK) + len(
            list(event_build.row_chunks(build.shape.row_lengths))
        )
        with pytest.raises(RedisConnectionError):  # every chunk written, then no commit
            await event_build.build_event(FailingRunner(redis, 1 + chunks), build)
        assert not await redis.exists(keys.event_keys(EVENT).meta)
        committed = await _commands(redis, runner, build_calls.build_commit_call(build))
        costs.append((opened, committed))
    assert costs[0] == costs[1]
    assert costs[0][1]["rename"] == 1
    assert await redis.exists(keys.event_keys(EVENT).meta)


async def test_a_create_task_cancelled_midway_leaves_nothing_visible_and_a_retry_completes(
    redis: Redis, inventory: Inventory
) -> None:
    seats = 2000
    task = asyncio.create_task(inventory.create_event(_request(seats)))
    building = keys.building_key(EVENT)
    while int(await redis.hget(building, "built_entries") or 0) < 100:
        assert not task.done()
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _invisible(inventory)
    assert (await inventory.create_event(_request(seats))).created
    await _complete(inventory, redis, seats)


async def test_the_fields_every_call_reads_lead_the_meta(
    redis: Redis, inventory: Inventory
) -> None:
    """Redis walks a small hash from its head: what read_event reads is found first, however
    many section and category names follow (lua/RECORDS.md, field order)."""
    request = _request()
    for n in range(40):
        request.seats.add(seat_id=f"named{n}", section=f"box {n}", category=f"c{n}")
    await inventory.create_event(request)
    meta = keys.event_keys(EVENT).meta
    assert await redis.object("encoding", meta) == "listpack"
    fields = list(await redis.hgetall(meta))
    assert fields[:5] == [
        "version",
        "settings",
        "changelog_max",
        "changelog_acked",
        "changelog_retention",
    ]
    assert len(fields) > 80
