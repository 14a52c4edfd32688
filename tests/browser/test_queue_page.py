"""The waiting room in the browser: with the event behind a paused queue, two sessions join from
the page and see their place; resumed at a small rate, the second session sees its place fall,
then the seat map and the admission's countdown, and holds a seat (the gateway passes the
admission on). Every wait is on the page's state, never on time."""

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from clients import InventoryClient
from tests.browser.conftest import screenshot
from tests.browser.test_live_page import SEATS_JS, seat
from tests.clients.conftest import Service

AHEAD = 3  # buyers in line before the two pages


@pytest.fixture
async def contexts(browser: Browser) -> AsyncIterator[list[BrowserContext]]:
    made = [await browser.new_context(viewport={"width": 1600, "height": 1000}) for _ in "ab"]
    yield made
    for context in made:  # closed before the gateway stops: it waits for open streams
        await context.close()


async def _in_line(context: BrowserContext, url: str, position: int) -> Page:
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("#queue-place")).to_have_text(
        re.compile(rf"^You are number {position} in line, about \d+ minutes?\.$")
    )
    await expect(page.locator("#seatmap")).to_be_hidden()
    return page


async def test_a_second_session_sees_its_place_fall_then_the_seat_map_when_admitted(
    service: Service, site: str, opera_event: str, contexts: list[BrowserContext]
) -> None:
    async with InventoryClient(service.target) as client:
        await client.configure_queue(
            opera_event,
            opens_at=datetime.now(UTC),
            admit_per_minute=60,  # one a second, never two at once: the test takes seconds
            max_active=100,
            admission_ttl=300,
        )
        await client.pause_queue(opera_event)
        for _ in range(AHEAD):
            await client.join_queue(opera_event, uuid.uuid4().hex)
        url = f"{site}/demo?event={opera_event}"
        first = await _in_line(contexts[0], url, AHEAD + 1)
        second = await _in_line(contexts[1], url, AHEAD + 2)
        await screenshot(second, "queue-in-line")
        await client.resume_queue(opera_event)

    for page in (first, second):
        await page.wait_for_function("window.lmlQueue.admitted")
        await expect(page.locator("#queue")).to_be_hidden()
        await page.wait_for_function(
            "document.getElementById('connection').dataset.state === 'live'"
        )
    seen: list[int] = await second.evaluate("window.lmlQueue.seen")
    assert seen[0] == AHEAD + 2 and seen == sorted(seen, reverse=True), seen
    assert len(set(seen)) >= 2, seen  # it saw its place fall before its turn
    assert await second.locator(".seat").count() == 2078
    await expect(second.locator("#admission")).to_be_visible()
    await expect(second.locator("#admission-left")).to_have_text(re.compile(r"^\d:\d\d$"))

    [wanted] = await second.evaluate(SEATS_JS, ["stalls-centre", 12, 1])
    await seat(second, wanted).click()
    await second.locator("#hold-selected").click()
    await expect(seat(second, wanted)).to_have_class("seat mine")
    await expect(seat(first, wanted)).to_have_attribute("data-status", "held")
    await screenshot(second, "queue-admitted-and-holding")
