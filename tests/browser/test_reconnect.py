"""The live stream comes back after the gateway restarts: EventSource reconnects with the last
version it saw (Last-Event-ID) and the page catches up on what changed meanwhile; after an
error answer (which ends an EventSource for good) the page opens a new stream itself."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
import uvicorn
from fastapi import FastAPI
from lml.inventory.v1 import inventory_pb2 as pb
from playwright.async_api import Browser, Route, expect

from clients.gateway.app import create_app
from inventory.engine import Inventory
from inventory.layouts.backends import Backends
from inventory.layouts.lifecycle import Layouts
from inventory.local_servers import RedisServer, free_port
from tests.browser.test_live_page import SEATS_JS, seat
from tests.clients.conftest import Service, trust, until


@contextlib.asynccontextmanager
async def gateway_on(app: FastAPI, port: int) -> AsyncIterator[None]:
    """`app` on `port` until the block ends; open streams are cut a second after."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started)
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("first_retry_fails", [False, True])
async def test_the_page_catches_up_after_the_gateway_restarts(
    browser: Browser,
    service: Service,
    pg_layouts: Layouts,
    pg_pool: asyncpg.Pool,
    inventory: Inventory,
    opera_event: str,
    redis_server: RedisServer,
    first_retry_fails: bool,
) -> None:
    port = free_port()
    backends = Backends(pg_layouts, pg_pool)
    settings = trust(redis_server)  # one session secret: the page's session outlives a restart
    page = await browser.new_page()
    async with gateway_on(create_app(service.target, backends=backends, trust=settings), port):
        await page.goto(f"http://127.0.0.1:{port}/demo?event={opera_event}")
        await expect(page.locator("#connection")).to_have_text("live")
        seat_ids: list[str] = await page.evaluate(SEATS_JS, ["dress-circle-centre", 0, 3])
    await expect(page.locator("#connection")).to_have_text("reconnecting")
    await inventory.hold(
        pb.HoldRequest(event_id=opera_event, holder_id="elsewhere", seat_ids=seat_ids)
    )
    refused: list[str] = []
    if first_retry_fails:

        async def unavailable_once(route: Route) -> None:
            if refused:
                await route.continue_()
                return
            refused.append(route.request.url)
            await route.fulfill(status=503, json={"reason": "INVENTORY_UNAVAILABLE"})

        await page.route("**/changes", unavailable_once)

    async with gateway_on(create_app(service.target, backends=backends, trust=settings), port):
        await expect(page.locator("#connection")).to_have_text("live", timeout=15_000)
        for seat_id in seat_ids:
            await expect(seat(page, seat_id)).to_have_attribute("data-status", "held")
        stats = await page.evaluate("window.lml.stats")
        # Resumed from its version (one snapshot), or a new stream's snapshot after the 503.
        assert stats["snapshots"] == (2 if first_retry_fails else 1)
        assert len(refused) == int(first_retry_fails)
        await page.close()
