"""Scripts facing faults and awkward input: no half-applied change, no dead hold reported alive,
row-less events of any size (issue 13, points 5 to 7)."""

import asyncio
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from inventory import keys
from inventory.engine import Inventory
from inventory.errors import InventoryError

EVENT = "show"
EVENT_KEYS = keys.event_keys(EVENT)


async def _create(inventory: Inventory, seats: int = 8, rows: bool = True) -> list[str]:
    request = pb.CreateEventRequest(event_id=EVENT)
    for n in range(seats):
        seat = request.seats.add(seat_id=f"s{n}")
        if rows:
            seat.section, seat.row, seat.number = "stalls", str(n // 4), str(n % 4)
    await inventory.create_event(request)
    return [seat.seat_id for seat in request.seats]


def _hold(holder: str, seats: list[str], request_id: str = "", ttl_ms: int = 0) -> pb.HoldRequest:
    ttl = Duration(seconds=ttl_ms // 1000, nanos=ttl_ms % 1000 * 1_000_000)
    return pb.HoldRequest(
        event_id=EVENT, holder_id=holder, seat_ids=seats, request_id=request_id, ttl=ttl
    )


async def _refused(call: object) -> str:
    with pytest.raises(InventoryError) as refused:
        await call  # type: ignore[misc]
    return refused.value.reason


async def _dump(redis: Redis) -> dict[str, bytes | None]:
    """Every key of the event, serialized: equal dumps mean nothing changed."""
    names = [key async for key in redis.scan_iter(match=f"lml:{{{EVENT}}}:*")]
    return {name: await redis.dump(name) for name in sorted(names)}


# -- 5. a script error half-way ---------------------------------------------------------------


async def test_a_change_log_append_that_fails_leaves_no_half_applied_hold(
    redis: Redis, inventory: Inventory
) -> None:
    seats = await _create(inventory)
    held = (await inventory.hold(_hold("ann", seats[:1]))).hold
    await inventory.release(
        pb.ReleaseRequest(event_id=EVENT, hold_id=held.hold_id, holder_id="ann")
    )
    # The version counter below the stream's last id (0-2): the hold's XADD must fail.
    await redis.hset(EVENT_KEYS.meta, "version", 1)
    before = await _dump(redis)
    with pytest.raises(ResponseError, match="XADD"):
        await inventory.hold(_hold("bob", seats[2:4], request_id="r1"))
    assert await _dump(redis) == before


async def test_a_recreated_event_goes_on_above_the_change_log_it_finds(
    redis: Redis, inventory: Inventory
) -> None:
    seats = await _create(inventory)
    for i, holder in enumerate(("ann", "bob", "cy")):
        await inventory.hold(_hold(holder, [seats[i]]))
    # Redis lost the event's keys but its change log (a partial loss, or a key evicted).
    await redis.delete(*(key for key in EVENT_KEYS if key != EVENT_KEYS.changes))
    await _create(inventory)
    held = await inventory.hold(_hold("dee", seats[5:6]))
    assert held.hold.seat_ids == seats[5:6]
    last: Any = await redis.xrevrange(EVENT_KEYS.changes, count=1)
    assert last[0][0] == "0-4"


# -- 6. a hold retry after the hold ended -----------------------------------------------------


async def test_a_hold_retry_returns_the_first_answer_only_while_the_hold_is_live(
    inventory: Inventory,
) -> None:
    seats = await _create(inventory)
    first = (await inventory.hold(_hold("ann", seats[:2], request_id="r1"))).hold
    again = (await inventory.hold(_hold("ann", seats[:2], request_id="r1"))).hold
    assert (again.hold_id, list(again.seat_ids)) == (first.hold_id, seats[:2])

    await inventory.release(
        pb.ReleaseRequest(event_id=EVENT, hold_id=first.hold_id, holder_id="ann")
    )
    await inventory.hold(_hold("bob", seats[:2]))
    assert await _refused(inventory.hold(_hold("ann", seats[:2], request_id="r1"))) == (
        "HOLD_NOT_FOUND"
    )

    await inventory.hold(_hold("ann", seats[4:5], request_id="r2", ttl_ms=1))
    await asyncio.sleep(0.01)
    assert await _refused(inventory.hold(_hold("ann", seats[4:5], request_id="r2"))) == (
        "HOLD_EXPIRED"
    )

    kept = (await inventory.hold(_hold("ann", seats[6:7], request_id="r3"))).hold
    ref = {"event_id": EVENT, "holder_id": "ann"}
    booked = (await inventory.confirm(pb.ConfirmRequest(**ref, hold_id=kept.hold_id))).booking
    # Confirmed: the seats are ann's booking, and "hold, then confirm" retried whole gives it.
    retried = (await inventory.hold(_hold("ann", seats[6:7], request_id="r3"))).hold
    assert retried.hold_id == kept.hold_id
    again_booked = await inventory.confirm(pb.ConfirmRequest(**ref, hold_id=retried.hold_id))
    assert again_booked.booking == booked


# -- 7. seats without rows --------------------------------------------------------------------


async def test_an_event_of_plain_seat_ids_takes_any_size_and_holds_them_by_id(
    inventory: Inventory,
) -> None:
    seats = await _create(inventory, 1_200, rows=False)
    held = (await inventory.hold(_hold("ann", [seats[0], seats[1_100]]))).hold
    assert list(held.seat_ids) == [seats[0], seats[1_100]]
    best = pb.HoldRequest(
        event_id=EVENT, holder_id="bob", best_available=pb.BestAvailable(quantity=2)
    )
    with pytest.raises(InventoryError) as refused:
        await inventory.hold(best)
    assert refused.value.reason == "INVALID_ARGUMENT"
    assert "no rows" in refused.value.message
    await inventory.release(
        pb.ReleaseRequest(event_id=EVENT, hold_id=held.hold_id, holder_id="ann")
    )
    snapshot = await inventory.availability(pb.GetAvailabilityRequest(event_id=EVENT))
    assert {seat.status for seat in snapshot.seats} == {pb.SEAT_STATUS_AVAILABLE}


async def test_best_available_in_a_section_without_rows_says_so(inventory: Inventory) -> None:
    request = pb.CreateEventRequest(event_id=EVENT)
    for n in range(4):
        request.seats.add(seat_id=f"a{n}", section="stalls", row="A", number=str(n))
        request.seats.add(seat_id=f"box{n}", section="boxes")
    await inventory.create_event(request)
    ref: Any = {"event_id": EVENT, "holder_id": "ann"}
    boxes = pb.HoldRequest(**ref, best_available=pb.BestAvailable(quantity=1, section="boxes"))
    with pytest.raises(InventoryError, match="section boxes have no rows"):
        await inventory.hold(boxes)
    anywhere = pb.HoldRequest(**ref, best_available=pb.BestAvailable(quantity=4))
    assert sorted((await inventory.hold(anywhere)).hold.seat_ids) == ["a0", "a1", "a2", "a3"]
    by_id = (await inventory.hold(_hold("bob", ["box0", "box3"]))).hold
    assert list(by_id.seat_ids) == ["box0", "box3"]
