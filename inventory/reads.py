"""Reads straight from Redis, without a script: an event's settings and seats, and the seats a
booking holds. Nothing here changes state, so no atomic script is needed."""

import json
from typing import Any

from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from inventory import event_shape, keys, validation
from inventory.errors import InventoryError
from inventory.times import duration, timestamp


async def get_event(redis: Redis, request: pb.GetEventRequest) -> pb.GetEventResponse:
    validation.check_event_id(request.event_id)
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(keys.event_keys(request.event_id).meta)
    if request.include_seats:
        pipe.hgetall(keys.event_keys(request.event_id).seat_info)
    meta, *infos = await pipe.execute()
    if not meta:
        raise InventoryError(pb.ERROR_REASON_EVENT_NOT_FOUND, f"no event {request.event_id}")
    event = pb.Event(
        event_id=request.event_id,
        limits=pb.EventLimits(
            max_seats_per_hold=int(meta["max_seats_per_hold"]),
            max_seats_per_holder=int(meta["max_seats_per_holder"]),
            default_ttl=duration(int(meta["default_ttl_ms"])),
            max_ttl=duration(int(meta["max_ttl_ms"])),
            max_hold_lifetime=duration(int(meta["max_lifetime_ms"])),
        ),
        seat_count=int(meta["seat_count"]),
        version=int(meta["version"]),
        created_at=timestamp(meta["created_at_ms"]),
    )
    for area_id, capacity, category in event_shape.stored_areas(meta["areas"]):
        area = event.areas.add(area_id=area_id, capacity=capacity)
        if category:
            area.category = category
    response = pb.GetEventResponse(event=event)
    if infos:
        described = sorted(
            ((json.loads(info), seat_id) for seat_id, info in infos[0].items()),
            key=lambda pair: pair[0]["order"],
        )
        for info, seat_id in described:
            if "area_no" not in info:  # places are described by their area
                response.seats.append(_seat(seat_id, info))
    return response


def _seat(seat_id: str, info: dict[str, Any]) -> pb.Seat:
    seat = pb.Seat(
        seat_id=seat_id,
        section=info["section"],
        row=info["row"],
        number=info["number"],
        rank=info.get("rank"),
        wheelchair=info["kind"] == "W",
        companion=info["kind"] == "C",
    )
    if "category" in info:
        seat.category = info["category"]
    return seat


async def booked_seats(redis: Redis, event_id: str, booking_id: str) -> list[str]:
    """The event's seats booked by `booking_id`, scanned without blocking Redis.

    There is no index from booking to seats; only cancel_booking.lua ever takes a seat away from
    a booking, and it checks each seat again, so a scan that runs beside other writes suffices.
    """
    marker = f"B:{booking_id}"
    seats = {
        seat: None
        async for seat, value in redis.hscan_iter(keys.event_keys(event_id).seats, count=1000)
        if value == marker
    }
    return list(seats)
