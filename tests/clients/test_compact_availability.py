"""The compact availability forms over the seat index of the event's layout (the opera house,
real Postgres and inventory): they say what the full form says for every seat, in a fraction of
its bytes, and name the layout they follow so that a client with another layout knows."""

import gzip
import json
import random
from typing import Any

import asyncpg
import httpx
import pytest
from lml.inventory.v1 import inventory_pb2 as pb

from clients.gateway.app import create_app
from clients.gateway.event_records import EventRecords
from clients.gateway.models import snapshot_event_data
from clients.gateway.seat_index import SeatIndex
from clients.watching import Snapshot
from inventory.engine import Inventory
from inventory.layouts.backends import Backends
from inventory.layouts.events import EventFromLayout, create_event_from_layout
from inventory.layouts.lifecycle import Layouts
from inventory.layouts.opera import DEFAULT_ID, opera_house
from inventory.local_servers import RedisServer
from tests.clients import test_seatmap
from tests.clients.conftest import Service, serve_gateway, trust
from tests.clients.test_gateway import problem
from tests.clients.test_seatmap import changed
from tests.layouts.samples import deployed, small_layout

seatmap_gateway = test_seatmap.seatmap_gateway  # the gateway over the layouts database
http = test_seatmap.http

EVENT = "opera-night"
PRICES = {"A": 9500, "B": 6500, "C": 4000, "D": 2500, "BOX": 12000}
LETTERS = {"A": "AVAILABLE", "H": "HELD", "B": "BOOKED"}
# The compact answers are at least this many times smaller than the full ones, raw and gzipped.
SMALLER_BY = 20


@pytest.fixture
async def opera(pg_layouts: Layouts, pg_pool: asyncpg.Pool, inventory: Inventory) -> str:
    """The event EVENT in a freshly deployed opera house, with seats held and booked."""
    layout = await deployed(pg_layouts, opera_house(DEFAULT_ID))
    assert layout.hash is not None
    spec = EventFromLayout(EVENT, layout.id, layout.hash, "GBP", PRICES)
    await create_event_from_layout(pg_layouts, pg_pool, inventory, spec)
    event = await inventory.get_event(pb.GetEventRequest(event_id=EVENT, include_seats=True))
    picked = random.Random(14).sample([seat.seat_id for seat in event.seats], 300)
    for number, seat in enumerate(picked):
        held = await inventory.hold(
            pb.HoldRequest(event_id=EVENT, holder_id=f"h{number}", seat_ids=[seat])
        )
        if number % 3 == 0:
            confirm = pb.ConfirmRequest(
                event_id=EVENT, hold_id=held.hold.hold_id, holder_id=f"h{number}"
            )
            await inventory.confirm(confirm)
    return EVENT


def layout_ids(layout: dict[str, Any]) -> list[str]:
    """The seat ids in seat index order, as a client reads them from the layout export."""
    return [seat[0] for s in layout["sections"] for row in s["rows"] for seat in row["seats"]]


def decoded(compact: dict[str, Any], layout: dict[str, Any]) -> dict[str, str]:
    assert compact["layout_hash"] == layout["hash"]
    ids = layout_ids(layout)
    assert len(compact["statuses"]) == len(ids)
    return {seat: LETTERS[letter] for seat, letter in zip(ids, compact["statuses"], strict=True)}


async def test_compact_availability_says_what_the_full_form_says_for_every_seat(
    http: httpx.AsyncClient, opera: str
) -> None:
    seatmap = (await http.get(f"/v1/events/{opera}/seatmap?format=compact")).json()
    layout = (await http.get(seatmap["layout_url"])).json()
    full = (await http.get(f"/v1/events/{opera}/availability")).json()
    compact = (await http.get(f"/v1/events/{opera}/availability?format=compact")).json()
    assert full["version"] == compact["version"] == seatmap["version"] == 300 + 100

    statuses = decoded(compact, layout)
    assert statuses == full["seats"] and len(statuses) == 2078
    assert decoded(seatmap, layout) == statuses
    assert sorted(set(statuses.values())) == ["AVAILABLE", "BOOKED", "HELD"]
    listed = (await http.get(f"/v1/events/{opera}/seatmap")).json()
    assert set(listed["held"]) == {s for s, status in statuses.items() if status == "HELD"}
    assert set(listed["booked"]) == {s for s, status in statuses.items() if status == "BOOKED"}
    assert len(listed["held"]) == 200 and len(listed["booked"]) == 100


async def test_compact_answers_are_many_times_smaller(http: httpx.AsyncClient, opera: str) -> None:
    plain = {"Accept-Encoding": "identity"}
    path = f"/v1/events/{opera}/availability"
    full = await http.get(path, headers=plain)
    compact = await http.get(f"{path}?format=compact", headers=plain)
    assert len(compact.content) * SMALLER_BY < len(full.content)
    zipped = [len(gzip.compress(answer.content, 6)) for answer in (full, compact)]
    assert zipped[1] * SMALLER_BY < zipped[0]
    sent = await http.get(f"{path}?format=compact", headers={"Accept-Encoding": "gzip"})
    assert sent.headers["content-encoding"] == "gzip" and sent.json() == compact.json()

    layout = (await http.get(f"/v1/events/{opera}/seatmap/layout")).json()
    index = SeatIndex.of_export(layout)
    seats = {
        seat: pb.SeatStatus.Value(f"SEAT_STATUS_{status}")
        for seat, status in full.json()["seats"].items()
    }
    snapshot = Snapshot(full.json()["version"], seats)
    sse_full, sse_compact = (snapshot_event_data(opera, snapshot, i) for i in (None, index))
    assert len(sse_compact) * SMALLER_BY < len(sse_full)  # SSE is not gzipped
    assert decoded(httpx.Response(200, text=sse_compact).json(), layout) == full.json()["seats"]


async def test_the_seat_index_is_stable_for_a_layout(
    http: httpx.AsyncClient,
    opera: str,
    service: Service,
    pg_layouts: Layouts,
    pg_pool: asyncpg.Pool,
    redis_server: RedisServer,
) -> None:
    url = (await http.get(f"/v1/events/{opera}/seatmap?format=compact")).json()["layout_url"]
    first = await http.get(url)
    compact = (await http.get(f"/v1/events/{opera}/availability?format=compact")).json()
    # Another gateway process (nothing cached) serves the same export, index and statuses.
    app = create_app(
        service.target, backends=Backends(pg_layouts, pg_pool), trust=trust(redis_server)
    )
    async with serve_gateway(app) as other:
        again = await other.get(url)
        assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
        answer = await other.get(f"/v1/events/{opera}/availability?format=compact")
        assert answer.json() == compact
    assert (await http.get(url)).content == first.content
    ids = layout_ids(first.json())
    assert len(set(ids)) == len(ids) == 2078


async def test_a_changed_layout_is_seen_by_its_hash(
    seatmap_gateway: tuple[httpx.AsyncClient, EventRecords],
    opera: str,
    pg_layouts: Layouts,
    pg_pool: asyncpg.Pool,
) -> None:
    http, records = seatmap_gateway
    before = (await http.get(f"/v1/events/{opera}/seatmap?format=compact")).json()
    old_layout = (await http.get(before["layout_url"])).json()
    # The event's record now names another layout, as after a restore from another deployment.
    other = await deployed(pg_layouts, small_layout())
    await changed(
        pg_pool,
        records,
        "UPDATE event_layouts SET layout_id = $2, layout_version = $3, layout_hash = $4"
        " WHERE event_id = $1",
        opera,
        other.id,
        other.version,
        other.hash,
    )
    compact = (await http.get(f"/v1/events/{opera}/availability?format=compact")).json()
    assert compact["layout_hash"] == other.hash != old_layout["hash"]
    stale = await http.get(before["layout_url"])  # names the old hash: never served as the new
    assert "not" in problem(stale, 404, "LAYOUT_NOT_FOUND")["detail"]
    after = (await http.get(f"/v1/events/{opera}/seatmap?format=compact")).json()
    new_layout = (await http.get(after["layout_url"])).json()
    assert new_layout["hash"] == other.hash and len(layout_ids(new_layout)) == 17
    assert len(after["statuses"]) == len(compact["statuses"]) == 17


async def test_compact_needs_a_layout(
    http: httpx.AsyncClient, gateway: httpx.AsyncClient, inventory: Inventory
) -> None:
    await inventory.create_event(
        pb.CreateEventRequest(event_id="plain", seats=[pb.Seat(seat_id="A1")])
    )
    problem(await http.get("/v1/events/plain/availability?format=compact"), 404, "LAYOUT_NOT_FOUND")
    not_configured = await gateway.get("/v1/events/plain/availability?format=compact")
    problem(not_configured, 501, "SEAT_MAP_NOT_CONFIGURED")
    assert (await gateway.get("/v1/events/plain/availability")).json()["seats"] == {
        "A1": "AVAILABLE"
    }
    problem(await http.get("/v1/events/plain/availability?format=tiny"), 422, "INVALID_REQUEST")


def test_statuses_leave_out_places_not_in_the_layout() -> None:
    document = {"hash": "h", "sections": [{"rows": [{"seats": [["s0"], ["s1"], ["s2"]]}]}]}
    index = SeatIndex.of_export(document)
    taken = [("s2", pb.SEAT_STATUS_HELD), ("floor#1", pb.SEAT_STATUS_BOOKED)]
    assert index.statuses(taken) == "AAH"
    assert (
        index.statuses([("s0", pb.SEAT_STATUS_BOOKED), ("s2", pb.SEAT_STATUS_AVAILABLE)]) == "BAA"
    )


async def test_compact_answers_revalidate_by_version(
    http: httpx.AsyncClient, opera: str, inventory: Inventory
) -> None:
    for path in (f"/v1/events/{opera}/availability", f"/v1/events/{opera}/seatmap"):
        first = await http.get(f"{path}?format=compact")
        etag = first.headers["etag"]
        assert etag == f'"{first.json()["version"]}"'
        same = await http.get(f"{path}?format=compact", headers={"If-None-Match": etag})
        assert same.status_code == 304 and same.content == b""
    position = first.json()["statuses"].index("A")
    layout = (await http.get(f"/v1/events/{opera}/seatmap/layout")).json()
    seat = layout_ids(layout)[position]
    await inventory.hold(pb.HoldRequest(event_id=opera, holder_id="late", seat_ids=[seat]))
    path = f"/v1/events/{opera}/seatmap?format=compact"
    changed = await http.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["statuses"][position] == "H"


async def first_sse_event(http: httpx.AsyncClient, path: str) -> tuple[str, dict[str, Any]]:
    """The name and data of a stream's first event."""
    async with http.stream("GET", path) as response:
        assert response.status_code == 200
        name, data = "", ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif not line and data:
                return name, json.loads(data)
    raise AssertionError("the stream ended before its first event")


async def test_the_live_stream_snapshots_in_the_compact_form(
    http: httpx.AsyncClient, opera: str
) -> None:
    layout = (await http.get(f"/v1/events/{opera}/seatmap/layout")).json()
    full = (await http.get(f"/v1/events/{opera}/availability")).json()
    name, snapshot = await first_sse_event(http, f"/v1/events/{opera}/changes")
    assert name == "snapshot" and "seats" not in snapshot
    assert snapshot["version"] == full["version"]
    assert decoded(snapshot, layout) == full["seats"]
