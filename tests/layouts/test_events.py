"""Events from deployed layouts: real Redis (the `inventory` fixture) and real Postgres."""

import asyncio
from typing import Any

import asyncpg
import pytest
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from inventory import keys
from inventory.engine import Inventory
from inventory.layouts.canonical import seat_id
from inventory.layouts.errors import EventSetupError, LayoutImmutable, LayoutStateConflict
from inventory.layouts.events import EventFromLayout, create_event_from_layout, read_event_layout
from inventory.layouts.lifecycle import Layouts
from inventory.layouts.model import Layout
from inventory.layouts.opera import opera_house
from inventory.layouts.ranking import ranks
from tests.layouts.samples import deployed, small_layout, variant

PRICES = {"A": 4500, "B": 2500}


def spec(layout: Layout, event_id: str = "gala-2026", **changes: Any) -> EventFromLayout:
    assert layout.hash is not None
    fields: dict[str, Any] = {
        "event_id": event_id,
        "layout_id": layout.id,
        "layout_hash": layout.hash,
        "currency": "GBP",
        "prices": PRICES,
    }
    return EventFromLayout(**(fields | changes))


async def nothing_recorded(pool: asyncpg.Pool, redis: Redis, event_id: str) -> bool:
    rows = await pool.fetchval("SELECT count(*) FROM event_layouts WHERE event_id = $1", event_id)
    prices = await pool.fetchval("SELECT count(*) FROM event_prices WHERE event_id = $1", event_id)
    exists = await redis.exists(keys.event_keys(event_id).meta)
    return bool(rows == prices == exists == 0)


async def test_an_event_from_a_deployed_layout(
    pg_layouts: Layouts, pg_pool: asyncpg.Pool, inventory: Inventory
) -> None:
    layout = await deployed(pg_layouts, small_layout())
    response = await create_event_from_layout(pg_layouts, pg_pool, inventory, spec(layout))
    assert response.created and response.event.seat_count == 17

    described = await inventory.get_event(
        pb.GetEventRequest(event_id="gala-2026", include_seats=True)
    )
    first = described.seats[0]
    assert (first.section, first.row, first.number, first.category) == ("stalls", "A", "1", "A")
    assert first.seat_id == seat_id(str(layout.id), "stalls", "A", "1")
    assert {seat.category for seat in described.seats} == {"A", "B"}

    record = await read_event_layout(pg_pool, "gala-2026")
    assert record.layout_version == 1
    assert (record.event.layout_hash, record.event.currency) == (layout.hash, "GBP")
    assert record.event.prices == PRICES


async def test_creating_it_again_is_idempotent(
    pg_layouts: Layouts, pg_pool: asyncpg.Pool, inventory: Inventory
) -> None:
    layout = await deployed(pg_layouts, small_layout())
    await create_event_from_layout(pg_layouts, pg_pool, inventory, spec(layout))
    again = await create_event_from_layout(pg_layouts, pg_pool, inventory, spec(layout))
    assert not again.created


async def test_the_opera_house_makes_a_two_thousand_seat_event(
    pg_layouts: Layouts, pg_pool: asyncpg.Pool, inventory: Inventory
) -> None:
    layout = await deployed(pg_layouts, opera_house())
    prices = {"A": 12000, "B": 8000, "C": 4500, "D": 2000, "BOX": 15000}
    response = await create_event_from_layout(
        pg_layouts, pg_pool, inventory, spec(layout, "tosca-1", prices=prices)
    )
    assert response.event.seat_count == sum(1 for _ in layout.seats())


async def test_best_available_follows_the_layouts_ranking(
    pg_layouts: Layouts, pg_pool: asyncpg.Pool, inventory: Inventory
) -> None:
    layout = await deployed(pg_layouts, opera_house())
    prices = {"A": 12000, "B": 8000, "C": 4500, "D": 2000, "BOX": 15000}
    await create_event_from_layout(
        pg_layouts, pg_pool, inventory, spec(layout, "tosca-2", prices=prices)
    )
    placed = {
        seat_id(str(layout.id), p.section.id, p.row.label, p.seat.number): p for p in layout.seats()
    }
    rank = dict(zip(placed, ranks(layout), strict=True))

    async def best(**options: Any) -> list[str]:
        request = pb.HoldRequest(
            event_id="tosca-2", holder_id="h", best_available=pb.BestAvailable(**options)
        )
        return list((await inventory.hold(request)).hold.seat_ids)

    first = await best(quantity=4)
    rows = {(placed[s].section.id, placed[s].row.label) for s in first}
    positions = sorted(placed[s].position for s in first)
    assert len(rows) == 1 and positions == list(range(positions[0], positions[0] + 4))
    assert min(rank[s] for s in first) == 1  # the house's best seat is in the first block
    in_d = await best(quantity=2, category="D")
    assert {placed[s].seat.category for s in in_d} == {"D"}
    accessible = await best(quantity=2, wheelchair_spaces=1)
    assert sorted((placed[s].seat.wheelchair, placed[s].seat.companion) for s in accessible) == [
        (False, True),
        (True, False),
    ]


async def test_general_admission_areas_become_places(
    pg_layouts: Layouts, pg_pool: asyncpg.Pool, inventory: Inventory
) -> None:
    def add_area(data: dict[str, Any]) -> None:
        data["type"] = "hybrid"
        data["ga_areas"] = [
            {
                "id": "pit",
                "label": "Pit",
                "capacity": 30,
                "category": "B",
                "x": 0.4,
                "y": 0.05,
                "width": 0.2,
                "height": 0.05,
            }
        ]

    layout = await deployed(pg_layouts, variant(add_area))
    event = (await create_event_from_layout(pg_layouts, pg_pool, inventory, spec(layout))).event
    assert [(a.area_id, a.capacity, a.category) for a in event.areas] == [("pit", 30, "B")]
    wanted = pb.GeneralAdmission(area_id="pit", quantity=3)
    request = pb.HoldRequest(event_id="gala-2026", holder_id="h", general_admission=wanted)
    assert len((await inventory.hold(request)).hold.seat_ids) == 3


async def test_a_layout_that_is_not_deployed_is_refused(
    pg_layouts: Layouts, pg_pool: asyncpg.Pool, inventory: Inventory, redis: Redis
) -> None:
    layout = small_layout()
    await pg_layouts.add(layout)
    published = await pg_layouts.publish(layout.id)
    with pytest.raises(LayoutStateConflict, match="is published, not deployed"):
        await create_event_from_layout(pg_layouts, pg_pool, inventory, spec(published))
    await pg_layouts.deploy(layout.id)
    await pg_layouts.archive(layout.id)
    with pytest.raises(LayoutStateConflict, match="is archived, not deployed"):
        await create_event_from_layout(pg_layouts, pg_pool, inventory, spec(published))
    assert await nothing_recorded(pg_pool, redis, "gala-2026")


async def test_a_hash_mismatch_is_refused(
    pg_layouts: Layouts, pg_pool: asyncpg.Pool, inventory: Inventory, redis: Redis
) -> None:
    layout = await deployed(pg_layouts, small_layout())
    with pytest.raises(LayoutStateConflict, match="no version with hash"):
        await create_event_from_layout(
            pg_layouts, pg_pool, inventory, spec(layout, layout_hash="ab" * 32)
        )
    assert await nothing_recorded(pg_pool, redis, "gala-2026")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prices": {"A": 4500}}, "no price for category"),
        ({"prices": PRICES | {"VIP": 9900}}, "has no category"),
        ({"prices": {"A": -1, "B": 0}}, "whole number of minor units"),
        ({"prices": {"A": 12.5, "B": 0}}, "whole number of minor units"),
        ({"prices": {"A": 2**63, "B": 0}}, "whole number of minor units"),
        ({"currency": "pounds"}, "ISO 4217"),
        ({"event_id": "bad{id}"}, "event_id may hold only"),
    ],
)
async def test_bad_requests_change_nothing(
    pg_layouts: Layouts,
    pg_pool: asyncpg.Pool,
    inventory: Inventory,
    redis: Redis,
    changes: dict[str, Any],
    message: str,
) -> None:
    layout = await deployed(pg_layouts, small_layout())
    event = spec(layout, **changes)
    with pytest.raises(EventSetupError, match=message):
        await create_event_from_layout(pg_layouts, pg_pool, inventory, event)
    assert await nothing_recorded(pg_pool, redis, event.event_id)


async def test_an_event_id_taken_with_other_prices_is_refused(
    pg_layouts: Layouts, pg_pool: asyncpg.Pool, inventory: Inventory
) -> None:
    layout = await deployed(pg_layouts, small_layout())
    await create_event_from_layout(pg_layouts, pg_pool, inventory, spec(layout))
    with pytest.raises(EventSetupError, match="exists with another layout, currency or prices"):
        await create_event_from_layout(
            pg_layouts, pg_pool, inventory, spec(layout, prices={"A": 1, "B": 1})
        )
    assert (await read_event_layout(pg_pool, "gala-2026")).event.prices == PRICES


async def test_an_event_already_in_redis_with_other_seats_is_not_recorded(
    pg_layouts: Layouts, pg_pool: asyncpg.Pool, inventory: Inventory
) -> None:
    layout = await deployed(pg_layouts, small_layout())
    other = pb.CreateEventRequest(event_id="gala-2026", seats=[pb.Seat(seat_id="x", section="s")])
    await inventory.create_event(other)
    with pytest.raises(EventSetupError, match="exists with other seats"):
        await create_event_from_layout(pg_layouts, pg_pool, inventory, spec(layout))
    assert await pg_pool.fetchval("SELECT count(*) FROM event_layouts") == 0


async def test_racing_creations_of_one_event_agree(
    pg_layouts: Layouts, pg_pool: asyncpg.Pool, inventory: Inventory
) -> None:
    layout = await deployed(pg_layouts, small_layout())
    responses = await asyncio.gather(
        *(create_event_from_layout(pg_layouts, pg_pool, inventory, spec(layout)) for _ in range(4))
    )
    assert sorted(response.created for response in responses) == [False, False, False, True]
    assert await pg_pool.fetchval("SELECT count(*) FROM event_prices") == len(PRICES)


async def test_racing_publishes_of_one_draft_publish_it_once(pg_layouts: Layouts) -> None:
    draft = await pg_layouts.add(small_layout())
    results = await asyncio.gather(
        *(pg_layouts.publish(draft.id) for _ in range(4)), return_exceptions=True
    )
    published = [r for r in results if not isinstance(r, BaseException)]
    assert len(published) == 1
    assert all(
        isinstance(r, LayoutImmutable | LayoutStateConflict) for r in results if r not in published
    )
