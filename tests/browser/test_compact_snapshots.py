"""The page reads availability in the compact form (one status letter per seat in the layout's
seat index order): it draws a compact snapshot, and reloads itself, once, when a snapshot
follows another layout than the one drawn. The live stream is played by the test here, so that
the page meets exactly the snapshot under test."""

import json
from collections.abc import Awaitable, Callable

import httpx
from playwright.async_api import Browser, Page, Route, expect

from tests.clients.conftest import until

SEAT_STATUSES = """(positions) => positions.map(
  (position) => window.lml.map.status(window.lml.map.index[position]))"""


def stream_of(
    snapshot: dict[str, object], retry_ms: int, answered: list[str] | None = None
) -> Callable[[Route], Awaitable[None]]:
    """A /changes answer carrying `snapshot` and ending; EventSource comes back after
    `retry_ms`, to the same answer. Each request's URL is added to `answered`."""
    body = f"retry: {retry_ms}\nid: {snapshot['version']}\nevent: snapshot\n"
    body += f"data: {json.dumps(snapshot)}\n\n"

    async def answer(route: Route) -> None:
        if answered is not None:
            answered.append(route.request.url)
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        await route.fulfill(status=200, headers=headers, body=body)

    return answer


async def compact_seat_map(site: str, event_id: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=site) as http:
        answer = await http.get(f"/v1/events/{event_id}/seatmap?format=compact")
        assert answer.status_code == 200, answer.text
        seat_map: dict[str, object] = answer.json()
        return seat_map


async def opened(browser: Browser) -> Page:
    context = await browser.new_context(viewport={"width": 1600, "height": 1000})
    page = await context.new_page()
    return page


async def test_the_page_draws_a_compact_snapshot(
    browser: Browser, site: str, opera_event: str
) -> None:
    seat_map = await compact_seat_map(site, opera_event)
    statuses = list(str(seat_map["statuses"]))
    assert set(statuses) == {"A"} and len(statuses) == 2078
    statuses[5], statuses[7], statuses[2077] = "H", "B", "H"
    snapshot = {
        "event_id": opera_event,
        "version": 0,
        "layout_hash": seat_map["layout_hash"],
        "statuses": "".join(statuses),
        "areas": [],
    }
    page = await opened(browser)
    await page.route("**/changes", stream_of(snapshot, retry_ms=60_000))
    await page.goto(f"{site}/demo?event={opera_event}")
    await page.wait_for_function("() => window.lml?.stats.snapshots >= 1")
    shown = await page.evaluate(SEAT_STATUSES, [4, 5, 7, 2077])
    assert shown == ["available", "held", "booked", "held"]
    seat = await page.evaluate("() => window.lml.map.index[5]")
    await expect(page.locator(f'[data-id="{seat}"]')).to_have_attribute("data-status", "held")
    await page.context.close()


async def test_a_snapshot_of_another_layout_reloads_the_page_once(
    browser: Browser, site: str, opera_event: str
) -> None:
    snapshot = {
        "event_id": opera_event,
        "version": 0,
        "layout_hash": "f" * 64,  # not the opera house's
        "statuses": "A" * 17,
        "areas": [],
    }
    page = await opened(browser)
    loads: list[str] = []
    page.on("load", lambda loaded: loads.append(loaded.url))
    streams: list[str] = []
    await page.route("**/changes", stream_of(snapshot, retry_ms=200, answered=streams))
    await page.goto(f"{site}/demo?event={opera_event}")
    # Reloaded for the new layout; the reloaded page met it again and said so instead of
    # reloading for ever.
    await expect(page.locator("#message")).to_contain_text("The seat map changed")
    navigation = "() => performance.getEntriesByType('navigation')[0].type"
    assert await page.evaluate(navigation) == "reload"
    stored = f"() => sessionStorage.getItem('lml-layout-reload:{opera_event}')"
    assert await page.evaluate(stored) == "f" * 64
    await until(lambda: len(streams) >= 5, seconds=20)  # more snapshots of the other layout
    assert len(loads) == 2
    await page.context.close()
