"""Best available from the page: the engine picks the best free block of a category and the
page holds it; when only scattered seats are left it says so, or holds them split if asked."""

import re

from lml.inventory.v1 import inventory_pb2 as pb
from playwright.async_api import Page, expect

from inventory.engine import Inventory
from tests.browser.conftest import PageOpener, screenshot
from tests.browser.test_live_page import seat

SEATS_OF_CATEGORY = """(category) => Array.from(window.lml.map.seats)
    .filter(([, seat]) => seat.category === category).map(([id]) => id)"""
HOLD = "() => window.lml.panel.hold"


async def ask_best(page: Page, quantity: int, category: str, split: bool = False) -> None:
    await page.locator("#best-quantity").fill(str(quantity))
    await page.locator("#best-category").select_option(category)
    await page.locator("#best-split").set_checked(split)
    await page.locator("#best-hold").click()


async def test_best_available_holds_a_block_of_the_category(
    open_page: PageOpener, opera_event: str
) -> None:
    buyer = await open_page(f"/demo?event={opera_event}")
    watcher = await open_page(f"/demo?event={opera_event}")
    await ask_best(buyer, 4, "A")
    await expect(buyer.locator("#message")).to_have_text("Held the best seats available.")
    await expect(buyer.locator("#hold-seats li")).to_have_count(4)
    await expect(buyer.locator("#hold-total")).to_have_text("£380.00")
    hold = await buyer.evaluate(HOLD)
    seats = [await buyer.evaluate("(id) => window.lml.map.seat(id)", i) for i in hold["seat_ids"]]
    assert {s["category"] for s in seats} == {"A"}
    rows = {re.sub(r"\d+$", "", s["label"]) for s in seats}
    assert len(rows) == 1, f"not one block: {[s['label'] for s in seats]}"
    for seat_id in hold["seat_ids"]:
        await expect(seat(buyer, seat_id)).to_have_class(re.compile(r"\bmine\b"))
        await expect(seat(watcher, seat_id)).to_have_attribute("data-status", "held")
    await screenshot(buyer, "best-available")


async def test_scattered_seats_fail_or_are_held_split(
    open_page: PageOpener, inventory: Inventory, opera_event: str
) -> None:
    buyer = await open_page(f"/demo?event={opera_event}")
    premium: list[str] = await buyer.evaluate(SEATS_OF_CATEGORY, "A")
    # Every other premium seat taken (rows follow each other in this order): no two free
    # premium seats are side by side.
    for n, seat_id in enumerate(premium[::2]):
        request = pb.HoldRequest(event_id=opera_event, holder_id=f"other-{n}", seat_ids=[seat_id])
        await inventory.hold(request)
    await expect(seat(buyer, premium[-1 - (len(premium) - 1) % 2])).to_have_attribute(
        "data-status", "held"
    )

    await ask_best(buyer, 2, "A")
    await expect(buyer.locator("#message")).to_have_text(
        "no 2 adjacent seats free that match: tick “allow split” to take the best seats apart"
    )
    await expect(buyer.locator("#picking")).to_be_visible()
    assert await buyer.evaluate(HOLD) is None

    await ask_best(buyer, 2, "A", split=True)
    await expect(buyer.locator("#message")).to_contain_text("not all side by side")
    hold = await buyer.evaluate(HOLD)
    assert len(hold["seat_ids"]) == 2 and set(hold["seat_ids"]) <= set(premium[1::2])
    await screenshot(buyer, "best-available-split")
