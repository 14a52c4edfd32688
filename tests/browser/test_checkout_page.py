"""Checkout from the page to a confirmed booking, against the Stripe stand-in: the gateway
creates the PaymentIntent, pays it with the test card, the stand-in's signed webhook confirms
the hold, and the page shows the booking and its seats booked."""

from collections.abc import Iterator

import pytest
from playwright.async_api import Page, expect

from clients.gateway.checkout_routes import WEBHOOK_PATH, StripeSettings
from tests.browser.conftest import PageOpener, screenshot
from tests.browser.test_live_page import SEATS_JS, seat
from tests.stripe_standin import SECRET_KEY, WEBHOOK_SECRET, StripeStandin, stripe_standin


@pytest.fixture
def standin() -> Iterator[StripeStandin]:
    with stripe_standin() as server:
        yield server


@pytest.fixture
def stripe_settings(standin: StripeStandin) -> StripeSettings:
    return StripeSettings(SECRET_KEY, WEBHOOK_SECRET, standin.base_url)


async def pick(page: Page, section: str, start: int, count: int) -> list[str]:
    seat_ids: list[str] = await page.evaluate(SEATS_JS, [section, start, count])
    for seat_id in seat_ids:
        await seat(page, seat_id).click()
    return seat_ids


async def test_checkout_from_the_page_to_a_booking(
    open_page: PageOpener, site: str, standin: StripeStandin, opera_event: str
) -> None:
    standin.webhook_url = f"{site}{WEBHOOK_PATH}"
    buyer = await open_page(f"/demo?event={opera_event}")
    watcher = await open_page(f"/demo?event={opera_event}")
    seat_ids = await pick(buyer, "stalls-centre", 0, 2)  # front row: premium, £95.00 each
    await buyer.locator("#hold-selected").click()
    await expect(buyer.locator("#hold-total")).to_have_text("£190.00")

    await buyer.locator("#checkout").click()
    await expect(buyer.locator("#payment-text")).to_have_text("To pay: £190.00.")
    [intent] = standin.intents.values()
    assert (intent["amount"], intent["currency"]) == (19000, "gbp")
    await screenshot(buyer, "checkout-to-pay")

    await buyer.locator("#pay").click()
    await expect(buyer.locator("#booking")).to_be_visible(timeout=10_000)
    await expect(buyer.locator("#booking-text")).to_contain_text(intent["id"])
    await expect(buyer.locator("#message")).to_have_text("Booked. Enjoy the show!")
    for page in (buyer, watcher):
        for seat_id in seat_ids:
            await expect(seat(page, seat_id)).to_have_attribute("data-status", "booked")
    assert standin.intents[intent["id"]]["status"] == "succeeded"
    assert [status for _, status in standin.deliveries] == [200]
    await screenshot(buyer, "checkout-booked")
