"""The gateway's seat-map routes over the venue layouts (real Postgres) and the inventory."""

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from lml.inventory.v1 import inventory_pb2 as pb

from clients.gateway.app import create_app
from clients.gateway.event_records import EventRecords
from inventory.engine import Inventory
from inventory.layouts.backends import Backends
from inventory.layouts.canonical import seat_id
from inventory.layouts.events import EventFromLayout, create_event_from_layout
from inventory.layouts.lifecycle import Layouts
from inventory.layouts.model import Layout
from inventory.local_servers import RedisServer
from tests.clients.conftest import Service, buyer, serve_gateway, trust, until
from tests.clients.test_gateway import problem
from tests.layouts.samples import deployed, small_layout


@pytest.fixture
async def layout(pg_layouts: Layouts, pg_pool: asyncpg.Pool, inventory: Inventory) -> Layout:
    """A deployed small layout and the event `gala` made from it."""
    layout = await deployed(pg_layouts, small_layout())
    assert layout.hash is not None
    spec = EventFromLayout("gala", layout.id, layout.hash, "GBP", {"A": 4500, "B": 2500})
    await create_event_from_layout(pg_layouts, pg_pool, inventory, spec)
    return layout


@pytest.fixture
async def seatmap_gateway(
    service: Service,
    pg_layouts: Layouts,
    pg_pool: asyncpg.Pool,
    redis_server: RedisServer,
) -> AsyncIterator[tuple[httpx.AsyncClient, EventRecords]]:
    """The gateway over the layouts database, once it keeps events' records, and those."""
    app = create_app(
        service.target, backends=Backends(pg_layouts, pg_pool), trust=trust(redis_server)
    )
    async with serve_gateway(app) as client:
        records: EventRecords = app.state.event_records
        await until(lambda: records.listening)
        yield client, records


@pytest.fixture
def http(seatmap_gateway: tuple[httpx.AsyncClient, EventRecords]) -> httpx.AsyncClient:
    return seatmap_gateway[0]


async def changed(pool: asyncpg.Pool, records: EventRecords, statement: str, *args: Any) -> None:
    """Runs `statement` and waits until the gateway has heard of it (a notification arrives
    a moment after the commit)."""
    generation = records.generation
    await pool.execute(statement, *args)
    await until(lambda: records.generation > generation)


async def test_seat_map_lists_taken_seats_at_a_version(
    http: httpx.AsyncClient, layout: Layout
) -> None:
    first = await http.get("/v1/events/gala/seatmap")
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["layout_hash"], body["currency"], body["prices"]) == (
        layout.hash,
        "GBP",
        {"A": 4500, "B": 2500},
    )
    assert (body["version"], body["held"], body["booked"]) == (0, [], [])
    assert first.headers["etag"] == '"0"' and first.headers["cache-control"] == "no-cache"
    same = await http.get("/v1/events/gala/seatmap", headers={"If-None-Match": '"0"'})
    assert same.status_code == 304

    seat = seat_id(str(layout.id), "stalls", "A", "1")
    held = await http.post("/v1/events/gala/holds", json={"seat_ids": [seat]}, headers=buyer("a"))
    assert held.status_code == 201, held.text
    after = (await http.get("/v1/events/gala/seatmap", headers={"If-None-Match": '"0"'})).json()
    assert (after["version"], after["held"]) == (1, [seat])


async def test_layout_export_is_immutable_and_cached_by_hash(
    http: httpx.AsyncClient, layout: Layout
) -> None:
    url = (await http.get("/v1/events/gala/seatmap")).json()["layout_url"]
    exported = await http.get(url)
    assert exported.status_code == 200
    assert exported.headers["etag"] == f'"{layout.hash}"'
    assert "immutable" in exported.headers["cache-control"]
    document = exported.json()
    assert document["hash"] == layout.hash
    ids = [row_seat[0] for s in document["sections"] for r in s["rows"] for row_seat in r["seats"]]
    assert seat_id(str(layout.id), "stalls", "A", "1") in ids and len(ids) == 17
    cached = await http.get(url, headers={"If-None-Match": exported.headers["etag"]})
    assert cached.status_code == 304 and cached.content == b""


async def test_seat_map_errors(http: httpx.AsyncClient, gateway: httpx.AsyncClient) -> None:
    problem(await http.get("/v1/events/nope/seatmap"), 404, "LAYOUT_NOT_FOUND")
    problem(await http.get("/v1/events/nope/seatmap/layout"), 404, "LAYOUT_NOT_FOUND")
    problem(await gateway.get("/v1/events/any/seatmap"), 501, "SEAT_MAP_NOT_CONFIGURED")


async def test_the_seat_map_is_the_export_plus_live_availability(
    http: httpx.AsyncClient, layout: Layout, pg_layouts: Layouts, inventory: Inventory
) -> None:
    first, second = (seat_id(str(layout.id), "stalls", "A", n) for n in ("3", "4"))
    await inventory.hold(pb.HoldRequest(event_id="gala", holder_id="h1", seat_ids=[first]))
    hold = await inventory.hold(pb.HoldRequest(event_id="gala", holder_id="h2", seat_ids=[second]))
    await inventory.confirm(
        pb.ConfirmRequest(event_id="gala", hold_id=hold.hold.hold_id, holder_id="h2")
    )
    # Archiving the layout later does not take the map away from an existing event.
    await pg_layouts.archive(layout.id)

    shown = (await http.get("/v1/events/gala/seatmap")).json()
    exported = (await http.get(shown["layout_url"])).json()
    assert exported["hash"] == shown["layout_hash"] == layout.hash
    assert shown["prices"] == {"A": 4500, "B": 2500}
    assert shown["held"] == [first]
    assert shown["booked"] == [second]
    assert shown["version"] == 3


async def test_the_seat_map_of_an_unknown_event(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v1/events/nope/seatmap")
    assert (
        "no event nope was created from a layout"
        in problem(missing, 404, "LAYOUT_NOT_FOUND")["detail"]
    )
