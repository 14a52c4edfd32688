"""An event's seat map: its layout export (static, cacheable forever) plus live availability.

Clients fetch the layout once by its hash and poll the availability, which lists only the
seats that are not available (most of a hall, most of the time), at one change-log version.
"""

from typing import Any

import asyncpg
from lml.inventory.v1 import inventory_pb2 as pb

from inventory.engine import Inventory
from inventory.event_shape import place_id
from inventory.layouts.events import read_event_layout
from inventory.layouts.export import export_document
from inventory.layouts.lifecycle import Layouts


async def availability(inventory: Inventory, event_id: str) -> dict[str, Any]:
    """Seats held and booked, and each general-admission area's count of free places."""
    snapshot = await inventory.availability(pb.GetAvailabilityRequest(event_id=event_id))
    places = tuple(place_id(area.area_id, "") for area in snapshot.areas)
    taken: dict[str, list[str]] = {"held": [], "booked": []}
    for seat in snapshot.seats:
        if places and seat.seat_id.startswith(places):
            continue
        if seat.status == pb.SEAT_STATUS_HELD:
            taken["held"].append(seat.seat_id)
        elif seat.status == pb.SEAT_STATUS_BOOKED:
            taken["booked"].append(seat.seat_id)
    areas = [
        {"area_id": area.area_id, "capacity": area.capacity, "available": area.available}
        for area in snapshot.areas
    ]
    return {"event_id": event_id, "version": snapshot.version, **taken, "areas": areas}


async def seat_map(
    layouts: Layouts, pool: asyncpg.Pool, inventory: Inventory, event_id: str
) -> dict[str, Any]:
    record = await read_event_layout(pool, event_id)
    event = record.event
    layout = await layouts.store.get(event.layout_id, record.layout_version)
    return {
        "event_id": event_id,
        "layout_hash": event.layout_hash,
        "currency": event.currency,
        "prices": dict(event.prices),
        "layout": export_document(layout),
        "availability": await availability(inventory, event_id),
    }
