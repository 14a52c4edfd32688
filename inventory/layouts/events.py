"""Events from deployed layouts: the Redis inventory from the layout's seats, and a Postgres
record of which layout (by hash) and which prices the event was created with.
"""

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from lml.inventory.v1 import inventory_pb2 as pb

from inventory.engine import Inventory
from inventory.errors import InventoryError
from inventory.layouts.canonical import seat_id
from inventory.layouts.errors import EventSetupError
from inventory.layouts.lifecycle import Layouts
from inventory.layouts.model import Layout
from inventory.layouts.ranking import ranks

_CURRENCY = re.compile(r"[A-Z]{3}")
_MAX_PRICE = 2**63 - 1  # Postgres bigint
Queryable = asyncpg.Connection | PoolConnectionProxy | asyncpg.Pool


@dataclass(frozen=True)
class EventFromLayout:
    """An event to create from the deployed layout with this id and hash, at these prices."""

    event_id: str
    layout_id: uuid.UUID
    layout_hash: str
    currency: str
    prices: Mapping[str, int]  # category id -> price in the currency's minor unit


@dataclass(frozen=True)
class EventLayout:
    """What Postgres records about an event created from a layout."""

    event: EventFromLayout
    layout_version: int


def event_seats(layout: Layout) -> list[pb.Seat]:
    """The layout's seats with their ranks (ranking.py) and accessibility, row by row."""
    return [
        pb.Seat(
            seat_id=seat_id(str(layout.id), p.section.id, p.row.label, p.seat.number),
            section=p.section.id,
            row=p.row.label,
            number=p.seat.number,
            category=p.seat.category,
            rank=rank,
            wheelchair=p.seat.wheelchair,
            companion=p.seat.companion,
        )
        for p, rank in zip(layout.seats(), ranks(layout), strict=True)
    ]


def event_areas(layout: Layout) -> list[pb.GeneralAdmissionArea]:
    return [
        pb.GeneralAdmissionArea(area_id=area.id, capacity=area.capacity, category=area.category)
        for area in layout.ga_areas
    ]


def _check_prices(layout: Layout, currency: str, prices: Mapping[str, int]) -> None:
    if not _CURRENCY.fullmatch(currency):
        raise EventSetupError(f"currency {currency!r} is not a three-letter ISO 4217 code")
    categories = {category.id for category in layout.categories}
    missing, unknown = sorted(categories - prices.keys()), sorted(prices.keys() - categories)
    if missing:
        raise EventSetupError(f"no price for category(ies) {', '.join(missing)}")
    if unknown:
        raise EventSetupError(f"the layout has no category(ies) {', '.join(unknown)}")
    for category, price in prices.items():
        if isinstance(price, bool) or not isinstance(price, int) or not 0 <= price <= _MAX_PRICE:
            raise EventSetupError(
                f"price of {category!r} must be a whole number of minor units, 0 to {_MAX_PRICE}"
            )


async def create_event_from_layout(
    layouts: Layouts,
    pool: asyncpg.Pool,
    inventory: Inventory,
    event: EventFromLayout,
    limits: pb.EventLimits | None = None,
) -> pb.CreateEventResponse:
    """Creates the event's inventory from the deployed layout `event` names by id and hash.

    Idempotent: the same request again changes nothing. The Postgres record commits only once
    Redis holds the inventory, and Redis creation is idempotent, so a failure anywhere leaves
    nothing behind that a retry would trip over.
    """
    layout = await layouts.deployed(event.layout_id, event.layout_hash)
    _check_prices(layout, event.currency, event.prices)
    request = pb.CreateEventRequest(
        event_id=event.event_id, seats=event_seats(layout), areas=event_areas(layout)
    )
    if limits is not None:
        request.limits.CopyFrom(limits)
    recorded = EventLayout(replace(event, prices=dict(event.prices)), layout.version)
    async with pool.acquire() as connection, connection.transaction():
        await _record(connection, recorded)
        try:
            return await inventory.create_event(request)
        except InventoryError as error:
            raise EventSetupError(f"event {event.event_id}: {error.message}") from error


async def _record(connection: Queryable, recorded: EventLayout) -> None:
    event = recorded.event
    inserted = await connection.fetchval(
        "INSERT INTO event_layouts (event_id, layout_id, layout_version, layout_hash, currency)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        event.event_id,
        event.layout_id,
        recorded.layout_version,
        event.layout_hash,
        event.currency,
    )
    if inserted is None:
        existing = await read_event_layout(connection, event.event_id)
        if existing != recorded:
            raise EventSetupError(
                f"event {event.event_id} exists with another layout, currency or prices"
            )
        return
    await connection.executemany(
        "INSERT INTO event_prices (event_id, category, price_minor) VALUES ($1, $2, $3)",
        [(event.event_id, category, price) for category, price in event.prices.items()],
    )


async def read_event_layout(connection: Queryable, event_id: str) -> EventLayout:
    row = await connection.fetchrow(
        "SELECT layout_id, layout_version, layout_hash, currency FROM event_layouts"
        " WHERE event_id = $1",
        event_id,
    )
    if row is None:
        raise EventSetupError(f"no event {event_id} was created from a layout")
    prices = await connection.fetch(
        "SELECT category, price_minor FROM event_prices WHERE event_id = $1", event_id
    )
    event = EventFromLayout(event_id, row[0], row[2], row[3], {p[0]: p[1] for p in prices})
    return EventLayout(event, row[1])
