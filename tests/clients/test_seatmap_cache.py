"""The gateway keeps events' layout records and layout exports in memory (real Postgres): many
seat-map loads read Postgres once, and a changed record is served from the next request on."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from asyncpg.connection import LoggedQuery

from clients.gateway import event_records
from clients.gateway.app import create_app
from clients.gateway.event_records import EventRecords
from inventory.layouts.backends import Backends
from inventory.layouts.events import EventLayout, Queryable, read_event_layout
from inventory.layouts.lifecycle import Layouts
from inventory.layouts.model import Layout
from inventory.layouts.postgres import PostgresLayoutStore
from inventory.local_servers import RedisServer
from tests.clients.conftest import Service, serve_gateway, trust, until
from tests.clients.test_seatmap import changed, layout
from tests.layouts.samples import deployed, small_layout

__all__ = ["layout"]  # the event `gala` in a deployed small layout

TABLES = ("event_layouts", "event_prices", "layouts")
ROUTES = (
    "/v1/events/gala/seatmap?format=compact",
    "/v1/events/gala/availability?format=compact",
    "/v1/events/gala/seatmap",
    "/v1/events/gala/seatmap/layout",
)


class Counted:
    """The statements a pool's connections send that read the layout tables, by table."""

    def __init__(self) -> None:
        self.reads = dict.fromkeys(TABLES, 0)

    async def init(self, connection: asyncpg.Connection) -> None:
        connection.add_query_logger(self.logged)

    def logged(self, query: LoggedQuery) -> None:
        words = query.query.split()
        for table in TABLES:
            if words[0] == "SELECT" and f"FROM {table} " in f"{query.query} ":
                self.reads[table] += 1


@pytest.fixture
async def counted(postgres_dsn: str) -> AsyncIterator[tuple[Counted, asyncpg.Pool]]:
    counted = Counted()
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=4, init=counted.init)
    yield counted, pool
    await pool.close()


@pytest.fixture
async def gateway_app(
    service: Service, counted: tuple[Counted, asyncpg.Pool], redis_server: RedisServer
) -> AsyncIterator[tuple[httpx.AsyncClient, EventRecords]]:
    """The gateway over a pool whose reads are counted, once it keeps records."""
    pool = counted[1]
    backends = Backends(Layouts(PostgresLayoutStore(pool)), pool)
    app = create_app(service.target, backends=backends, trust=trust(redis_server))
    async with serve_gateway(app) as http:
        records: EventRecords = app.state.event_records
        await until(lambda: records.listening)
        yield http, records


async def test_many_seat_map_loads_read_postgres_once(
    layout: Layout,  # made before the gateway listens: its announcements are not counted
    gateway_app: tuple[httpx.AsyncClient, EventRecords],
    counted: tuple[Counted, asyncpg.Pool],
    pg_layouts: Layouts,
    pg_pool: asyncpg.Pool,
) -> None:
    http, records = gateway_app
    answers = await asyncio.gather(*(http.get(ROUTES[n % 4]) for n in range(40)))
    assert [answer.status_code for answer in answers] == [200] * 40
    assert {answer.json()["layout_hash"] for answer in answers[:2]} == {layout.hash}
    reads = counted[0].reads
    # The first loads, all at once, share one read of the record and one of the layout.
    assert reads == dict.fromkeys(TABLES, 1)
    before = dict(reads)
    for n in range(40):
        assert (await http.get(ROUTES[n % 4])).status_code == 200
    assert reads == before

    # The event now names another layout, as after a restore from another deployment.
    other = await deployed(pg_layouts, small_layout())
    await changed(
        pg_pool,
        records,
        "UPDATE event_layouts SET layout_id = $2, layout_version = $3, layout_hash = $4"
        " WHERE event_id = $1",
        "gala",
        other.id,
        other.version,
        other.hash,
    )
    seat_map = (await http.get(ROUTES[0])).json()
    assert seat_map["layout_hash"] == other.hash != layout.hash
    assert (await http.get(seat_map["layout_url"])).json()["hash"] == other.hash
    await changed(
        pg_pool, records, "UPDATE event_prices SET price_minor = 1 WHERE event_id = 'gala'"
    )
    assert (await http.get(ROUTES[2])).json()["prices"] == {"A": 1, "B": 1}
    assert reads == {"event_layouts": before["event_layouts"] + 2} | {
        "event_prices": before["event_prices"] + 2,
        "layouts": before["layouts"] + 1,
    }


async def test_records_are_read_on_every_request_while_not_listening(
    layout: Layout,  # made before the gateway listens: its announcements are not counted
    gateway_app: tuple[httpx.AsyncClient, EventRecords],
    counted: tuple[Counted, asyncpg.Pool],
    pg_pool: asyncpg.Pool,
) -> None:
    http, records = gateway_app
    reads = counted[0].reads
    await http.get(ROUTES[0])
    listener = "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"
    listener += " AND datname = current_database()"
    assert await pg_pool.execute(f"SELECT pg_terminate_backend(pid) FROM ({listener}) AS l")
    await until(lambda: not records.listening)
    before = reads["event_layouts"]
    for _ in range(3):
        assert (await http.get(ROUTES[0])).status_code == 200
    assert reads["event_layouts"] == before + 3
    await until(lambda: records.listening)  # again, on a new connection
    for _ in range(3):
        assert (await http.get(ROUTES[1])).status_code == 200
    assert reads["event_layouts"] == before + 4


async def _insert_event(pool: asyncpg.Pool, records: EventRecords, event_id: str) -> None:
    await changed(
        pool,
        records,
        "INSERT INTO event_layouts (event_id, layout_id, layout_version, layout_hash, currency)"
        " VALUES ($1, $2, 1, $3, 'GBP')",
        event_id,
        uuid.uuid4(),
        "0" * 64,
    )


class CountingReader:
    """read_event_layout, counted per event, optionally stopping after the read until let go."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.hold: asyncio.Event | None = None

    async def __call__(self, connection: Queryable, event_id: str) -> EventLayout:
        self.calls[event_id] = self.calls.get(event_id, 0) + 1
        record = await read_event_layout(connection, event_id)
        if self.hold is not None:
            await self.hold.wait()
        return record


@pytest.fixture
async def records(pg_pool: asyncpg.Pool) -> AsyncIterator[tuple[EventRecords, CountingReader]]:
    reader = CountingReader()
    kept = EventRecords(pg_pool, reader)
    task = asyncio.create_task(kept.listen())
    await until(lambda: kept.listening)
    yield kept, reader
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_read_overtaken_by_a_change_is_not_kept(
    records: tuple[EventRecords, CountingReader], pg_pool: asyncpg.Pool
) -> None:
    kept, reader = records
    await _insert_event(pg_pool, kept, "e1")
    reader.hold = asyncio.Event()
    reading = asyncio.create_task(kept.of("e1"))
    await until(lambda: reader.calls.get("e1") == 1)
    await changed(pg_pool, kept, "UPDATE event_layouts SET currency = 'EUR'")
    reader.hold.set()
    assert (await reading).event.currency == "GBP"  # read before the change
    assert (await kept.of("e1")).event.currency == "EUR"
    assert (await kept.of("e1")).event.currency == "EUR" and reader.calls["e1"] == 2


async def test_records_kept_are_bounded_and_expire(
    records: tuple[EventRecords, CountingReader],
    pg_pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept, reader = records
    monkeypatch.setattr(event_records, "CACHED_EVENTS", 2)
    for event_id in ("e1", "e2", "e3"):
        await _insert_event(pg_pool, kept, event_id)
    for event_id in ("e1", "e2", "e1", "e3", "e1", "e2"):  # e2 was the least recently used
        await kept.of(event_id)
    assert reader.calls == {"e1": 1, "e2": 2, "e3": 1}
    monkeypatch.setattr(event_records, "RECORD_SECONDS", 0.0)
    await kept.of("e1")
    assert reader.calls["e1"] == 2
    await changed(pg_pool, kept, "TRUNCATE event_layouts CASCADE")  # forgets every event
    monkeypatch.setattr(event_records, "RECORD_SECONDS", 30.0)
    await _insert_event(pg_pool, kept, "e2")
    await kept.of("e2")
    assert reader.calls["e2"] == 3
