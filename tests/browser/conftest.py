"""The page's real stack (own Redis, inventory service, gateway over the layouts database, an
event in the sample opera house) and headless Chromium from Debian's package, driven by
Playwright with that browser: no browser download."""

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from clients.gateway.app import create_app
from clients.gateway.checkout_routes import StripeSettings
from inventory.engine import Inventory
from inventory.layouts.backends import Backends
from inventory.layouts.events import EventFromLayout, create_event_from_layout
from inventory.layouts.lifecycle import Layouts
from inventory.layouts.opera import DEFAULT_ID, opera_house
from inventory.local_servers import RedisServer
from tests.clients import conftest as clients_fixtures
from tests.layouts.samples import deployed

service = clients_fixtures.service
gateway = clients_fixtures.gateway
postgres_server = clients_fixtures.postgres_server
postgres_dsn = clients_fixtures.postgres_dsn
pg_pool = clients_fixtures.pg_pool
pg_layouts = clients_fixtures.pg_layouts

EVENT = "opera-night"
PRICES = {"A": 9500, "B": 6500, "C": 4000, "D": 2500, "BOX": 12000}
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium")


@pytest.fixture
async def opera_event(pg_layouts: Layouts, pg_pool: asyncpg.Pool, inventory: Inventory) -> str:
    """The event EVENT in a freshly deployed opera house (2,078 seats)."""
    layout = await deployed(pg_layouts, opera_house(DEFAULT_ID))
    assert layout.hash is not None
    spec = EventFromLayout(EVENT, layout.id, layout.hash, "GBP", PRICES)
    await create_event_from_layout(pg_layouts, pg_pool, inventory, spec)
    return EVENT


@pytest.fixture
def stripe_settings() -> StripeSettings | None:
    """The gateway's checkout settings: none here (checkout not configured); test modules that
    pay override this fixture."""
    return None


@pytest.fixture
async def site(
    service: clients_fixtures.Service,
    pg_layouts: Layouts,
    pg_pool: asyncpg.Pool,
    opera_event: str,
    stripe_settings: StripeSettings | None,
    redis_server: RedisServer,
) -> AsyncIterator[str]:
    """The gateway's base URL. Its page makes an anonymous session; unpaid confirms are
    allowed (served only while checkout is not configured)."""
    backends = Backends(pg_layouts, pg_pool)
    app = create_app(
        service.target,
        backends=backends,
        stripe=stripe_settings,
        trust=clients_fixtures.trust(redis_server),
    )
    async with clients_fixtures.serve_gateway(app) as http:
        yield str(http.base_url).rstrip("/")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (`apt-get install chromium`; make install does)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        await browser.close()


PageOpener = Callable[[str], Awaitable[Page]]


@pytest.fixture
async def open_page(browser: Browser, site: str) -> AsyncIterator[PageOpener]:
    """Opens a path of the site in a browser context of its own (its own session storage, so
    its own holder id) and returns the page once its map is drawn and its live stream open.
    The contexts close before the gateway stops: it waits for open streams to end."""
    contexts: list[BrowserContext] = []

    async def open_path(path: str) -> Page:
        context = await browser.new_context(viewport={"width": 1600, "height": 1000})
        contexts.append(context)
        page = await context.new_page()
        await page.goto(f"{site}{path}")
        await page.wait_for_function(
            "document.getElementById('connection').dataset.state === 'live'"
        )
        return page

    yield open_path
    for context in contexts:
        await context.close()


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=path, full_page=True)
    print(f"screenshot: {path}")
    return path
