"""Best available inside the engine: adjacency, single-seat gaps, accessibility, categories and
sections, exhaustion and splits, races; the step-by-step index always equals a recomputation."""

import asyncio
import random
from collections import Counter

import grpc
import pytest
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import Redis

from inventory import keys
from inventory.engine import Inventory
from inventory.errors import InventoryError
from tests.free_index_model import actual_index, expected_index

EVENT = "ba"


def _row(section: str, row: str, kinds: str, category: str, first_rank: int) -> list[pb.Seat]:
    """Seats left to right: kinds S standard, W wheelchair space, C companion seat."""
    return [
        pb.Seat(
            seat_id=f"{section}-{row}{n + 1}",
            section=section,
            row=row,
            number=str(n + 1),
            category=category,
            rank=first_rank + n,
            wheelchair=kind == "W",
            companion=kind == "C",
        )
        for n, kind in enumerate(kinds)
    ]


async def _create(inventory: Inventory, *rows: list[pb.Seat], hold_limit: int = 10) -> None:
    request = pb.CreateEventRequest(
        event_id=EVENT,
        seats=[seat for row in rows for seat in row],
        limits=pb.EventLimits(max_seats_per_hold=hold_limit, max_seats_per_holder=1000),
    )
    await inventory.create_event(request)


async def _best(
    inventory: Inventory, quantity: int, holder: str = "h", **options: object
) -> pb.HoldResponse:
    best = pb.BestAvailable(quantity=quantity, **options)  # type: ignore[arg-type]
    request = pb.HoldRequest(event_id=EVENT, holder_id=holder, best_available=best)
    return await inventory.hold(request)


async def _take(inventory: Inventory, *seat_ids: str) -> pb.Hold:
    request = pb.HoldRequest(event_id=EVENT, holder_id="taker", seat_ids=seat_ids)
    return (await inventory.hold(request)).hold


async def _check_index(redis: Redis) -> None:
    assert await actual_index(redis, EVENT) == await expected_index(redis, EVENT)


async def test_the_best_ranked_block_of_one_row(inventory: Inventory, redis: Redis) -> None:
    await _create(
        inventory,
        _row("stalls", "B", "SSSSSS", "A", 20),
        _row("stalls", "A", "SSSSSS", "A", 1),
    )
    first = await _best(inventory, 3)
    assert list(first.hold.seat_ids) == ["stalls-A1", "stalls-A2", "stalls-A3"]
    assert not first.split
    # Row A has 3 left: exactly 3 more fit there without a gap.
    second = await _best(inventory, 3)
    assert list(second.hold.seat_ids) == ["stalls-A4", "stalls-A5", "stalls-A6"]
    third = await _best(inventory, 2)
    assert [s[:8] for s in third.hold.seat_ids] == ["stalls-B"] * 2
    await _check_index(redis)


async def test_no_single_seat_left_alone_when_a_block_avoids_it(
    inventory: Inventory, redis: Redis
) -> None:
    # Row A (best) has 4 seats: 3 of them would leave one alone. Row C has 5: 3 leave 2.
    await _create(
        inventory,
        _row("s", "A", "SSSS", "A", 1),
        _row("s", "C", "SSSSS", "A", 10),
    )
    picked = await _best(inventory, 3)
    assert [s[:3] for s in picked.hold.seat_ids] == ["s-C"] * 3
    # Inside row C the window leaves no single seat either: seats 1-3 (2 left) or 3-5, never 2-4.
    assert list(picked.hold.seat_ids) == ["s-C1", "s-C2", "s-C3"]
    # Now only blocks that leave a seat alone remain (A: 4 free, C: 2 free): it takes one anyway.
    forced = await _best(inventory, 3)
    assert [s[:3] for s in forced.hold.seat_ids] == ["s-A"] * 3
    await _check_index(redis)


async def test_inside_a_row_no_seat_is_left_alone_either(
    inventory: Inventory, redis: Redis
) -> None:
    seats = _row("s", "A", "SSSSSS", "A", 1)
    for seat, rank in zip(seats, (6, 3, 1, 2, 4, 5), strict=True):
        seat.rank = rank  # centre first, as a real hall ranks a row
    await _create(inventory, seats)
    # Seats 2-4 or 3-5 rank best but leave seat 1 or seat 6 alone; 1-3 leaves 4-6 free.
    picked = await _best(inventory, 3)
    assert list(picked.hold.seat_ids) == ["s-A1", "s-A2", "s-A3"]
    await _check_index(redis)


async def test_a_gap_between_taken_seats_counts_too(inventory: Inventory, redis: Redis) -> None:
    await _create(inventory, _row("s", "A", "SSSSSSSS", "A", 1), _row("s", "B", "SS", "A", 50))
    await _take(inventory, "s-A1")
    await _take(inventory, "s-A5")
    # Free runs: A2-A4 (3) and A6-A8 (3). Two seats in either leave one alone between taken
    # seats; row B's pair fits exactly, though ranked worse.
    picked = await _best(inventory, 2)
    assert list(picked.hold.seat_ids) == ["s-B1", "s-B2"]
    await _check_index(redis)


async def test_categories_and_sections(inventory: Inventory, redis: Redis) -> None:
    await _create(
        inventory,
        _row("stalls", "A", "SSSS", "A", 1),
        _row("stalls", "B", "SSSS", "B", 5),
        _row("circle", "A", "SSSS", "B", 9),
    )
    assert [s[:8] for s in (await _best(inventory, 2, category="B")).hold.seat_ids] == [
        "stalls-B"
    ] * 2
    in_circle = await _best(inventory, 2, section="circle")
    assert all(s.startswith("circle-") for s in in_circle.hold.seat_ids)
    both = await _best(inventory, 2, category="B", section="stalls")
    assert all(s.startswith("stalls-B") for s in both.hold.seat_ids)
    for options in ({"category": "Z"}, {"section": "balcony"}):
        with pytest.raises(InventoryError) as refused:
            await _best(inventory, 1, **options)
        assert refused.value.reason == "INVALID_ARGUMENT"
    await _check_index(redis)


async def test_one_category_and_section_in_rows_are_listed_under_any(
    inventory: Inventory, redis: Redis
) -> None:
    """Every seat in a row has category A and section stalls: the index keeps no views by them,
    a request naming them reads the views by any, and one naming a category that only an area
    or a seat without a row has finds no seats in rows."""
    request = pb.CreateEventRequest(
        event_id=EVENT,
        seats=[
            *_row("stalls", "A", "SSSS", "A", 1),
            pb.Seat(seat_id="box-1", section="box", category="B"),
        ],
        areas=[pb.GeneralAdmissionArea(area_id="floor", capacity=3, category="C")],
        limits=pb.EventLimits(max_seats_per_hold=4, max_seats_per_holder=1000),
    )
    await inventory.create_event(request)
    meta = keys.event_keys(EVENT).meta
    assert await redis.hmget(meta, "index_category", "index_section") == ["A", "stalls"]
    picked = await _best(inventory, 2, category="A", section="stalls")
    assert list(picked.hold.seat_ids) == ["stalls-A1", "stalls-A2"]
    for category in ("B", "C"):
        with pytest.raises(InventoryError) as refused:
            await _best(inventory, 1, category=category)
        assert refused.value.reason == "SEATS_UNAVAILABLE", category
    await _check_index(redis)


async def test_a_row_indexed_before_the_status_letters_is_rebuilt_on_its_first_change(
    inventory: Inventory, redis: Redis
) -> None:
    """An event indexed by the earlier layout (each run also listed by position, P members, and
    no status letters, no index_category / index_section, no packed settings): the first change
    of a row rebuilds the row's part of the index whole, the position members gone."""
    await _create(inventory, _row("stalls", "A", "SSSS", "A", 1))
    event = keys.event_keys(EVENT)
    cap = int(await redis.hget(event.meta, "bucket_cap"))  # type: ignore[arg-type]
    await redis.hdel(event.meta, "index_category", "index_section", "settings")
    await redis.hdel(event.row_seats, "1|free")
    await redis.delete(event.free)
    tail = f"{min(4, cap):04d}|{1:07d}|1|1"
    scopes = ("S|A|stalls|", "S|A|*|", "S|*|stalls|", "S|*|*|")
    legacy = [f"{scope}{tail}" for scope in scopes] + ["P|000001|004|1|1|S|stalls|A"]
    await redis.zadd(event.free, dict.fromkeys(legacy, 0))
    await _take(inventory, "stalls-A2")
    await _check_index(redis)
    members: list[str] = await redis.zrange(event.free, 0, -1)  # type: ignore[assignment]
    assert not [m for m in members if m.startswith("P|")]
    assert list((await _best(inventory, 2, category="A")).hold.seat_ids) == [
        "stalls-A3",
        "stalls-A4",
    ]
    await _check_index(redis)


async def test_a_block_never_mixes_categories(inventory: Inventory) -> None:
    seats = _row("s", "A", "SSSS", "A", 1)
    seats[2].category = seats[3].category = "B"
    await _create(inventory, seats)
    with pytest.raises(InventoryError) as refused:
        await _best(inventory, 3)
    assert refused.value.reason == "SEATS_UNAVAILABLE"


async def test_wheelchair_spaces_with_companion_seats(inventory: Inventory, redis: Redis) -> None:
    await _create(
        inventory,
        _row("s", "A", "SSWCSS", "A", 1),
        _row("s", "B", "CWWCSS", "A", 10),
    )
    # Standard requests never get accessible seats: A's runs are 2 + 2 standard seats.
    standard = await _best(inventory, 2)
    assert list(standard.hold.seat_ids) == ["s-A1", "s-A2"]
    one = await _best(inventory, 2, wheelchair_spaces=1)
    assert list(one.hold.seat_ids) == ["s-A3", "s-A4"]
    # Two wheelchair spaces and two companions, side by side: only row B has them.
    two = await _best(inventory, 4, wheelchair_spaces=2)
    assert list(two.hold.seat_ids) == ["s-B1", "s-B2", "s-B3", "s-B4"]
    with pytest.raises(InventoryError) as refused:
        await _best(inventory, 2, wheelchair_spaces=1)
    assert refused.value.reason == "SEATS_UNAVAILABLE"
    await _check_index(redis)


async def test_exhaustion_and_the_split_fallback(inventory: Inventory, redis: Redis) -> None:
    await _create(inventory, _row("s", "A", "SSSSS", "A", 1), _row("s", "B", "SSS", "A", 10))
    await _take(inventory, "s-A3")
    with pytest.raises(InventoryError) as refused:
        await _best(inventory, 4)
    assert refused.value.reason == "SEATS_UNAVAILABLE"
    assert refused.value.seat_ids == []
    split = await _best(inventory, 4, allow_split=True)
    assert split.split
    # As few groups as possible: row B's three, then the best of the pairs, A1-A2 (rank 1 and 2
    # against 4 and 5), its best seat.
    assert sorted(split.hold.seat_ids) == ["s-A1", "s-B1", "s-B2", "s-B3"]
    with pytest.raises(InventoryError) as refused:
        await _best(inventory, 4, allow_split=True)  # only 3 seats are free
    assert refused.value.reason == "SEATS_UNAVAILABLE"
    await _check_index(redis)


async def test_limits_and_bad_requests(inventory: Inventory) -> None:
    await _create(inventory, _row("s", "A", "S" * 12, "A", 1), hold_limit=4)
    with pytest.raises(InventoryError) as refused:
        await _best(inventory, 5)
    assert (refused.value.reason, refused.value.limit) == ("LIMIT_EXCEEDED", "max_seats_per_hold")
    bad = [
        pb.HoldRequest(event_id=EVENT, holder_id="h"),
        pb.HoldRequest(
            event_id=EVENT,
            holder_id="h",
            seat_ids=["s-A1"],
            best_available=pb.BestAvailable(quantity=1),
        ),
        pb.HoldRequest(event_id=EVENT, holder_id="h", best_available=pb.BestAvailable()),
        pb.HoldRequest(event_id=EVENT, holder_id="h", best_available=pb.BestAvailable(quantity=31)),
        pb.HoldRequest(
            event_id=EVENT,
            holder_id="h",
            best_available=pb.BestAvailable(quantity=2, wheelchair_spaces=3),
        ),
        pb.HoldRequest(
            event_id=EVENT,
            holder_id="h",
            best_available=pb.BestAvailable(quantity=2, wheelchair_spaces=1, allow_split=True),
        ),
    ]
    for request in bad:
        with pytest.raises(InventoryError) as refused:
            await inventory.hold(request)
        assert refused.value.reason == "INVALID_ARGUMENT", request


async def test_ranks_out_of_range_are_refused(inventory: Inventory) -> None:
    for rank in (0, 10_000_000):
        seats = _row("s", "A", "SS", "A", 1)
        seats[1].rank = rank
        with pytest.raises(InventoryError) as refused:
            await _create(inventory, seats)
        assert refused.value.reason == "INVALID_ARGUMENT"


async def test_a_retry_returns_the_same_seats(inventory: Inventory) -> None:
    await _create(inventory, _row("s", "A", "SSSSSS", "A", 1))
    request = pb.HoldRequest(
        event_id=EVENT,
        holder_id="h",
        best_available=pb.BestAvailable(quantity=2),
        request_id="r1",
    )
    first, again = await inventory.hold(request), await inventory.hold(request)
    assert again.hold == first.hold


async def test_expired_holds_free_their_seats_for_best_available(
    inventory: Inventory, redis: Redis
) -> None:
    await _create(inventory, _row("s", "A", "SSS", "A", 1))
    short = pb.HoldRequest(event_id=EVENT, holder_id="x", seat_ids=["s-A1", "s-A2", "s-A3"])
    short.ttl.FromMilliseconds(1)
    await inventory.hold(short)
    await asyncio.sleep(0.01)
    # No sweeper ran: the request ends the due hold itself before it picks.
    picked = await _best(inventory, 3)
    assert list(picked.hold.seat_ids) == ["s-A1", "s-A2", "s-A3"]
    await _check_index(redis)


async def test_best_available_right_after_a_change_sees_it(
    inventory: Inventory, redis: Redis
) -> None:
    rows = [_row("s", f"R{r:02d}", "S" * 10, "A", 10 * r + 1) for r in range(30)]
    await _create(inventory, *rows)
    # Seats 3 and 7 taken in the 24 best rows: their longest free runs are 3 seats.
    takes = [await _take(inventory, row[2].seat_id, row[6].seat_id) for row in rows[:24]]
    await _check_index(redis)
    picked = await _best(inventory, 5)
    assert [s[:5] for s in picked.hold.seat_ids] == ["s-R24"] * 5
    # Row R00 freed: the very next request takes its best 5, nothing refreshed in between.
    ref = {"event_id": EVENT, "holder_id": "taker"}
    await inventory.release(pb.ReleaseRequest(**ref, hold_id=takes[0].hold_id))
    again = await _best(inventory, 5)
    assert list(again.hold.seat_ids) == [f"s-R00{n}" for n in range(1, 6)]
    # Released, they are the best again at once; held, the next best block is elsewhere.
    await inventory.release(
        pb.ReleaseRequest(event_id=EVENT, holder_id="h", hold_id=again.hold.hold_id)
    )
    assert list((await _best(inventory, 5, holder="i")).hold.seat_ids) == list(again.hold.seat_ids)
    assert [s[:5] for s in (await _best(inventory, 5, holder="j")).hold.seat_ids] == ["s-R00"] * 5
    await _check_index(redis)


async def test_the_index_follows_every_kind_of_change(inventory: Inventory, redis: Redis) -> None:
    rows = [
        _row("s", r, "SSWCSSSSCWSS", "A" if r < "C" else "B", 12 * i + 1)
        for i, r in enumerate("ABCD")
    ]
    await _create(inventory, *rows)
    rng = random.Random(7)
    all_seats = [seat.seat_id for row in rows for seat in row]
    holds: list[pb.Hold] = []
    for step in range(150):
        choice = rng.random()
        try:
            if choice < 0.35:
                holds.append(await _take(inventory, *rng.sample(all_seats, rng.randint(1, 3))))
            elif choice < 0.6:
                holds.append((await _best(inventory, rng.randint(1, 4), allow_split=True)).hold)
            elif choice < 0.7:
                holds.append((await _best(inventory, 2, wheelchair_spaces=1)).hold)
            elif holds and choice < 0.85:
                hold = holds.pop(rng.randrange(len(holds)))
                ref = {"event_id": EVENT, "hold_id": hold.hold_id, "holder_id": hold.holder_id}
                await inventory.release(pb.ReleaseRequest(**ref))
            elif holds:
                hold = holds.pop(rng.randrange(len(holds)))
                ref = {"event_id": EVENT, "hold_id": hold.hold_id, "holder_id": hold.holder_id}
                booking = (await inventory.confirm(pb.ConfirmRequest(**ref))).booking
                if rng.random() < 0.5:
                    cancel = pb.CancelBookingRequest(event_id=EVENT, booking_id=booking.booking_id)
                    await inventory.cancel_booking(cancel)
        except InventoryError as error:
            assert error.reason == "SEATS_UNAVAILABLE", error
        assert await actual_index(redis, EVENT) == await expected_index(redis, EVENT), step


async def test_racing_best_available_holds_never_share_a_seat(
    inventory: Inventory, redis: Redis, stub: "pb_grpc.InventoryServiceAsyncStub"
) -> None:
    rows = [_row("s", f"R{r:02d}", "S" * 20, "A", 20 * r + 1) for r in range(10)]
    await _create(inventory, *rows)
    row_of = {seat.seat_id: seat.row for row in rows for seat in row}
    position = {seat.seat_id: int(seat.number) for row in rows for seat in row}

    async def buyer(n: int) -> list[pb.Hold]:
        rng, held = random.Random(n), []
        for _ in range(10):
            best = pb.BestAvailable(quantity=rng.randint(1, 6))
            request = pb.HoldRequest(event_id=EVENT, holder_id=f"b{n}", best_available=best)
            try:
                held.append((await stub.Hold(request)).hold)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
        return held

    holds = [hold for held in await asyncio.gather(*(buyer(n) for n in range(30))) for hold in held]
    taken = Counter(seat for hold in holds for seat in hold.seat_ids)
    assert taken and max(taken.values()) == 1, "a seat was given to two holds"
    for hold in holds:
        assert len({row_of[s] for s in hold.seat_ids}) == 1, "a block spans rows"
        places = sorted(position[s] for s in hold.seat_ids)
        assert places == list(range(places[0], places[0] + len(places))), "not side by side"
    states: dict[str, str] = await redis.hgetall(keys.event_keys(EVENT).seats)  # type: ignore[assignment]
    assert sum(state.startswith("H:") for state in states.values()) == sum(taken.values())
    await _check_index(redis)
