"""Checkout against real parts: the inventory service over the run's Redis, the gateway under
uvicorn, Postgres (the layouts suite's fresh database: prices and checkout records), and the
real `stripe` library talking to the Stripe stand-in, which calls the gateway's webhook."""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import httpx
import pytest
import stripe
from lml.inventory.v1 import inventory_pb2 as pb

from clients.gateway.app import create_app
from clients.gateway.checkout_routes import WEBHOOK_PATH, StripeSettings
from inventory.engine import Inventory
from inventory.layouts.backends import Backends
from inventory.layouts.canonical import seat_id
from inventory.layouts.events import EventFromLayout, create_event_from_layout
from inventory.layouts.lifecycle import Layouts
from inventory.local_servers import RedisServer
from tests.clients import conftest as clients_fixtures
from tests.clients.conftest import Service, serve_gateway, trust
from tests.layouts.samples import LAYOUT_ID, deployed, small_layout
from tests.stripe_standin import SECRET_KEY, WEBHOOK_SECRET, StripeStandin, stripe_standin

postgres_server = clients_fixtures.postgres_server
postgres_dsn = clients_fixtures.postgres_dsn
pg_layouts = clients_fixtures.pg_layouts
service = clients_fixtures.service
client = clients_fixtures.client

PRICES = {"A": 4500, "B": 2500}  # small_layout: stalls rows A and B are category A, circle B


def seat(section: str, row: str, number: int) -> str:
    return seat_id(LAYOUT_ID, section, row, str(number))


@pytest.fixture
async def pg_pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=6)
    await pool.execute("TRUNCATE layouts, event_layouts, event_prices, checkouts, stripe_events")
    yield pool
    await pool.close()


@dataclass
class Events:
    """Makes events from the deployed small layout, priced at PRICES in GBP."""

    layouts: Layouts
    pool: asyncpg.Pool
    inventory: Inventory
    layout_hash: str

    async def make(self, event_id: str, default_ttl: float = 600, lifetime: float = 0) -> None:
        """`lifetime`: also the hold's maximum lifetime and TTL (0: the service defaults)."""
        limits = pb.EventLimits()
        limits.default_ttl.FromTimedelta(timedelta(seconds=default_ttl))
        limits.max_ttl.FromTimedelta(timedelta(seconds=lifetime))
        limits.max_hold_lifetime.FromTimedelta(timedelta(seconds=lifetime))
        spec = EventFromLayout(event_id, small_layout().id, self.layout_hash, "GBP", PRICES)
        await create_event_from_layout(self.layouts, self.pool, self.inventory, spec, limits)


@pytest.fixture
async def events(pg_layouts: Layouts, pg_pool: asyncpg.Pool, inventory: Inventory) -> Events:
    layout = await deployed(pg_layouts, small_layout())
    assert layout.hash is not None
    made = Events(pg_layouts, pg_pool, inventory, layout.hash)
    await made.make("gala")
    return made


@pytest.fixture
def standin() -> Iterator[StripeStandin]:
    with stripe_standin(webhook_secret=WEBHOOK_SECRET) as server:
        yield server


@pytest.fixture
async def http(
    service: Service,
    pg_layouts: Layouts,
    pg_pool: asyncpg.Pool,
    standin: StripeStandin,
    redis_server: RedisServer,
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway with checkout configured against the stand-in, which delivers to it."""
    settings = StripeSettings(SECRET_KEY, WEBHOOK_SECRET, standin.base_url)
    app = create_app(
        service.target,
        backends=Backends(pg_layouts, pg_pool),
        stripe=settings,
        trust=trust(redis_server),
    )
    async with serve_gateway(app) as gateway:
        standin.webhook_url = f"{gateway.base_url}{WEBHOOK_PATH}".replace("//v1", "/v1")
        yield gateway


@pytest.fixture
async def stripe_client(standin: StripeStandin) -> AsyncIterator[stripe.StripeClient]:
    """The real stripe library on the stand-in, as a buyer's device or Stripe itself."""
    transport = stripe.HTTPXClient()
    yield stripe.StripeClient(
        SECRET_KEY, base_addresses={"api": standin.base_url}, http_client=transport
    )
    await transport.close_async()  # type: ignore[no-untyped-call]
