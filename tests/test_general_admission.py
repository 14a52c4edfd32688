"""General admission: places of a standing area held by number, extended, released and confirmed
like seats, and never more than the capacity held or sold, however many buyers race."""

import asyncio
import json
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

EVENT = "gig"
CAPACITY = 50


async def _create(inventory: Inventory, with_seats: bool = True) -> pb.Event:
    request = pb.CreateEventRequest(
        event_id=EVENT,
        areas=[
            pb.GeneralAdmissionArea(area_id="floor", capacity=CAPACITY, category="GA"),
            pb.GeneralAdmissionArea(area_id="terrace", capacity=5),
        ],
        limits=pb.EventLimits(max_seats_per_hold=8, max_seats_per_holder=100),
    )
    if with_seats:
        request.seats.add(seat_id="A1", section="circle", row="A", number="1", category="A")
    return (await inventory.create_event(request)).event


def _places(holder: str, quantity: int, area: str = "floor") -> pb.HoldRequest:
    wanted = pb.GeneralAdmission(area_id=area, quantity=quantity)
    return pb.HoldRequest(event_id=EVENT, holder_id=holder, general_admission=wanted)


async def _available(inventory: Inventory) -> dict[str, int]:
    snapshot = await inventory.availability(pb.GetAvailabilityRequest(event_id=EVENT))
    return {area.area_id: area.available for area in snapshot.areas}


async def test_the_event_describes_its_areas(inventory: Inventory) -> None:
    event = await _create(inventory)
    assert [(a.area_id, a.capacity, a.category) for a in event.areas] == [
        ("floor", CAPACITY, "GA"),
        ("terrace", 5, ""),
    ]
    assert event.seat_count == 1
    described = await inventory.get_event(pb.GetEventRequest(event_id=EVENT, include_seats=True))
    assert [seat.seat_id for seat in described.seats] == ["A1"]
    assert await _available(inventory) == {"floor": CAPACITY, "terrace": 5}


async def test_an_event_of_areas_only(inventory: Inventory) -> None:
    await _create(inventory, with_seats=False)
    hold = (await inventory.hold(_places("h", 5, "terrace"))).hold
    assert sorted(hold.seat_ids) == [f"terrace#{n}" for n in range(1, 6)]
    with pytest.raises(InventoryError) as refused:
        await inventory.hold(_places("other", 1, "terrace"))
    assert refused.value.reason == "SEATS_UNAVAILABLE"
    assert "0 places left" in refused.value.message


async def test_places_behave_as_seats(inventory: Inventory, redis: Redis) -> None:
    await _create(inventory)
    hold = (await inventory.hold(_places("ann", 3))).hold
    assert len(set(hold.seat_ids)) == 3 and all(s.startswith("floor#") for s in hold.seat_ids)
    ref: dict[str, str] = {"event_id": EVENT, "hold_id": hold.hold_id, "holder_id": "ann"}
    assert await _available(inventory) == {"floor": CAPACITY - 3, "terrace": 5}
    extend = pb.ExtendRequest(event_id=EVENT, hold_id=hold.hold_id, holder_id="ann")
    extended = (await inventory.extend(extend)).hold
    assert list(extended.seat_ids) == list(hold.seat_ids)
    await inventory.release(pb.ReleaseRequest(**ref))
    assert await _available(inventory) == {"floor": CAPACITY, "terrace": 5}

    bob = (await inventory.hold(_places("bob", 4))).hold
    ref = {"event_id": EVENT, "hold_id": bob.hold_id, "holder_id": "bob"}
    booking = (await inventory.confirm(pb.ConfirmRequest(**ref))).booking
    assert sorted(booking.seat_ids) == sorted(bob.seat_ids)
    assert await _available(inventory) == {"floor": CAPACITY - 4, "terrace": 5}
    cancel = pb.CancelBookingRequest(event_id=EVENT, booking_id=booking.booking_id)
    await inventory.cancel_booking(cancel)
    assert await _available(inventory) == {"floor": CAPACITY, "terrace": 5}
    assert await actual_index(redis, EVENT) == await expected_index(redis, EVENT)


async def test_expired_places_come_back(inventory: Inventory) -> None:
    await _create(inventory)
    short = _places("ann", 8)
    short.ttl.FromMilliseconds(1)
    await inventory.hold(short)
    await asyncio.sleep(0.01)
    assert await _available(inventory) == {"floor": CAPACITY, "terrace": 5}


async def test_bad_requests(inventory: Inventory) -> None:
    await _create(inventory)
    for request, reason in (
        (_places("h", 1, "nowhere"), "INVALID_ARGUMENT"),
        (_places("h", 0), "INVALID_ARGUMENT"),
        (_places("h", 9), "LIMIT_EXCEEDED"),
    ):
        with pytest.raises(InventoryError) as refused:
            await inventory.hold(request)
        assert refused.value.reason == reason
    for areas in (
        [pb.GeneralAdmissionArea(area_id="x", capacity=0)],
        [pb.GeneralAdmissionArea(area_id="x", capacity=1)] * 2,
        [pb.GeneralAdmissionArea(area_id="a|b", capacity=1)],
    ):
        with pytest.raises(InventoryError) as refused:
            await inventory.create_event(pb.CreateEventRequest(event_id="bad", areas=areas))
        assert refused.value.reason == "INVALID_ARGUMENT"
    clash = pb.CreateEventRequest(
        event_id="bad",
        seats=[pb.Seat(seat_id="x#1")],
        areas=[pb.GeneralAdmissionArea(area_id="x", capacity=1)],
    )
    with pytest.raises(InventoryError):
        await inventory.create_event(clash)


async def test_racing_buyers_never_oversell_an_area(
    inventory: Inventory, redis: Redis, stub: "pb_grpc.InventoryServiceAsyncStub"
) -> None:
    await _create(inventory)
    refused = Counter[str]()

    async def buyer(n: int) -> list[str]:
        rng, bought = random.Random(n), list[str]()
        for _ in range(6):
            try:
                hold = (await stub.Hold(_places(f"b{n}", rng.randint(1, 4)))).hold
            except grpc.aio.AioRpcError as error:
                refused[error.code().name] += 1
                continue
            ref = {"event_id": EVENT, "hold_id": hold.hold_id, "holder_id": f"b{n}"}
            if rng.random() < 0.6:
                bought += (await stub.Confirm(pb.ConfirmRequest(**ref))).booking.seat_ids
            elif rng.random() < 0.8:
                await stub.Release(pb.ReleaseRequest(**ref))
        return bought

    bought = [
        place for places in await asyncio.gather(*(buyer(n) for n in range(40))) for place in places
    ]
    assert set(refused) <= {"FAILED_PRECONDITION"}
    assert refused, "the race never reached the capacity"
    assert len(bought) == len(set(bought)) <= CAPACITY
    states: dict[str, str] = await redis.hgetall(keys.event_keys(EVENT).seats)  # type: ignore[assignment]
    taken = [s for s, state in states.items() if s.startswith("floor#") and state != "A"]
    assert len(taken) <= CAPACITY
    assert sorted(s for s in taken if states[s].startswith("B:")) == sorted(bought)
    assert (await _available(inventory))["floor"] == CAPACITY - len(taken)
    outbox: list[tuple[str, dict[str, str]]] = await redis.xrange(keys.event_keys(EVENT).outbox)  # type: ignore[assignment]
    sold = [seat for _id, entry in outbox for seat in json.loads(entry["seat_ids"])]
    assert sorted(sold) == sorted(bought)
    assert await actual_index(redis, EVENT) == await expected_index(redis, EVENT)
