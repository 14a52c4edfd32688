"""The payments that must not book: paid for a booking cancelled since, paid for a hold booked
without that payment, failed after the hold was booked. End to end: the gateway, the inventory
service, Postgres, and the real stripe library against the Stripe stand-in, whose webhook
deliveries drive the outcome. Money moves here, so each test checks the refund itself (which
payment, how much, once) and what became of the seats."""

import json
from typing import Any

import asyncpg
import httpx
import pytest
import stripe
from lml.inventory.v1 import inventory_pb2 as pb

from clients import BookingCancelled, InventoryClient
from inventory import keys
from inventory.engine import Inventory
from tests.checkout.conftest import Events
from tests.checkout.test_checkout import (
    ANN,
    BRIEF,
    CIRCLE,
    STALLS,
    checkout_status,
    hold,
    pay,
    seat_states,
    start,
    started_then_expired,
)
from tests.checkout.test_webhook import paid_unannounced, processed
from tests.clients.conftest import Service, until
from tests.clients.test_gateway import problem
from tests.stripe_standin import StripeStandin

# stripe's HTTPXClient posts bytes through httpx's deprecated `data=`: the library's, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

STALLS_PRICE = 2 * 4500


async def confirm_directly(client: InventoryClient, hold_id: str, payment_ref: str) -> str:
    """Books the hold over gRPC, as a box office's backend does (buyers cannot confirm through
    a gateway with checkout); returns the booking id."""
    booking = await client.confirm("gala", hold_id, ANN, payment_ref=payment_ref)
    return booking.booking_id


def refund_of(standin: StripeStandin, intent_id: str) -> list[dict[str, object]]:
    return [r for r in standin.refunds.values() if r["payment_intent"] == intent_id]


@pytest.mark.parametrize("booked_with", ["this payment", "no payment"])
async def test_a_payment_for_a_booking_cancelled_since_is_refunded(
    http: httpx.AsyncClient,
    events: Events,
    client: InventoryClient,
    inventory: Inventory,
    standin: StripeStandin,
    booked_with: str,
) -> None:
    hold_id, event = await paid_unannounced(http, standin, STALLS)
    intent_id = event["data"]["object"]["id"]
    # Booked before the webhook came (by an earlier delivery that confirmed, then crashed before
    # its commit; or at the box office), then the booking cancelled by an admin.
    payment_ref = intent_id if booked_with == "this payment" else ""
    booking_id = await confirm_directly(client, hold_id, payment_ref)
    await inventory.cancel_booking(
        pb.CancelBookingRequest(event_id="gala", booking_id=booking_id, reason="admin")
    )
    # What a backend retrying the confirm is told.
    with pytest.raises(BookingCancelled):
        await client.confirm("gala", hold_id, ANN)

    delivered = await standin.deliver(event)
    assert delivered.status_code == 200, delivered.text
    done = await checkout_status(http, hold_id)
    assert (done["status"], done["reason"]) == ("refunded", "the hold's booking was cancelled")
    assert done["booking_id"] is None
    [refund] = refund_of(standin, intent_id)
    assert (refund["id"], refund["amount"]) == (done["refund_id"], STALLS_PRICE)
    # The seats stay free for others (the payment did not take them back).
    assert await seat_states(client, STALLS) == {pb.SEAT_STATUS_AVAILABLE}
    # Stripe sending the event again (or another success event) refunds nothing more.
    await standin.deliver(event)
    replay = await standin.deliver(
        standin.event("payment_intent.succeeded", event["data"]["object"])
    )
    assert replay.json()["outcome"] == "payment already settled: refunded"
    assert len(refund_of(standin, intent_id)) == 1


async def test_a_payment_for_a_hold_booked_without_it_is_refunded(
    http: httpx.AsyncClient, events: Events, client: InventoryClient, standin: StripeStandin
) -> None:
    hold_id, event = await paid_unannounced(http, standin, STALLS)
    intent_id = event["data"]["object"]["id"]
    booking_id = await confirm_directly(client, hold_id, "box-office-42")

    delivered = await standin.deliver(event)
    assert delivered.status_code == 200, delivered.text
    done = await checkout_status(http, hold_id)
    assert done["status"] == "refunded"
    assert done["reason"] == f"the hold was booked without this payment (booking {booking_id})"
    [refund] = refund_of(standin, intent_id)
    assert (refund["id"], refund["amount"]) == (done["refund_id"], STALLS_PRICE)
    # The booking made without the payment stands, unchanged.
    booking = await client.confirm("gala", hold_id, ANN)
    assert (booking.booking_id, booking.payment_ref) == (booking_id, "box-office-42")
    assert await seat_states(client, STALLS) == {pb.SEAT_STATUS_BOOKED}
    await standin.deliver(event)
    assert len(refund_of(standin, intent_id)) == 1


async def test_a_payment_failing_after_the_hold_was_booked_leaves_the_booking(
    http: httpx.AsyncClient,
    events: Events,
    client: InventoryClient,
    standin: StripeStandin,
    stripe_client: stripe.StripeClient,
    pg_pool: asyncpg.Pool,
) -> None:
    hold_id = await hold(http, STALLS)
    intent_id = (await start(http, hold_id)).json()["payment_intent_id"]
    booking_id = await confirm_directly(client, hold_id, "box-office-7")
    with pytest.raises(stripe.CardError):
        await stripe_client.v1.payment_intents.confirm_async(
            intent_id, {"payment_method": "pm_card_chargeDeclined"}
        )
    await until(lambda: [status for _, status in standin.deliveries] == [200])
    assert await processed(pg_pool) == [
        "payment failed (Your card was declined.); the hold was booked without this payment"
    ]
    # Nothing released, nothing refunded: the booking stands and the checkout still waits.
    assert await seat_states(client, STALLS) == {pb.SEAT_STATUS_BOOKED}
    assert (await client.confirm("gala", hold_id, ANN)).booking_id == booking_id
    assert (await checkout_status(http, hold_id))["status"] == "awaiting_payment"
    assert standin.refunds == {}

    # The buyer tries another card, which pays: that payment is refunded, the booking stays.
    assert (await pay(http, hold_id)).status_code == 202
    await until(lambda: [status for _, status in standin.deliveries] == [200, 200])
    done = await checkout_status(http, hold_id)
    assert done["status"] == "refunded" and booking_id in done["reason"]
    [refund] = refund_of(standin, intent_id)
    assert refund["amount"] == STALLS_PRICE
    assert await seat_states(client, STALLS) == {pb.SEAT_STATUS_BOOKED}


async def rebooked_then_lost(
    http: httpx.AsyncClient,
    events: Events,
    client: InventoryClient,
    standin: StripeStandin,
    service: Service,
    inventory: Inventory,
) -> tuple[str, dict[str, Any], str]:
    """A payment that outlived its hold, whose delivery held and booked the seats again, then
    failed before its commit (every answer to the new Confirm lost): Stripe will deliver it
    again. Returns the first hold id, the event, and the booking made on the way."""
    hold_id = await started_then_expired(http, events, client, CIRCLE)
    url, standin.webhook_url = standin.webhook_url, None
    assert (await pay(http, hold_id, BRIEF)).status_code == 202
    await until(lambda: bool(standin.deliveries))
    standin.webhook_url = url
    event, _ = standin.deliveries.pop()
    service.faults.armed["Confirm"] = 4  # every attempt of the SDK: applied, then lost
    problem(await standin.deliver(event), 503, "UNAVAILABLE")
    assert service.faults.applied["Confirm"] == 4
    holds = await inventory.redis.hgetall(keys.event_keys(BRIEF).holds)
    [booking_id] = [
        json.loads(raw)["booking_id"]
        for raw in holds.values()
        if json.loads(raw)["state"] == "confirmed"
    ]
    return hold_id, event, booking_id


async def test_a_redelivery_after_booking_again_gets_the_same_booking(
    http: httpx.AsyncClient,
    events: Events,
    client: InventoryClient,
    standin: StripeStandin,
    service: Service,
    inventory: Inventory,
) -> None:
    hold_id, event, booking_id = await rebooked_then_lost(
        http, events, client, standin, service, inventory
    )
    assert (await standin.deliver(event)).json()["outcome"] == "booked after the hold ended"
    done = await checkout_status(http, hold_id, BRIEF)
    assert (done["status"], done["booking_id"]) == ("booked", booking_id)
    assert standin.refunds == {}


async def test_a_redelivery_after_the_new_booking_was_cancelled_is_refunded(
    http: httpx.AsyncClient,
    events: Events,
    client: InventoryClient,
    standin: StripeStandin,
    service: Service,
    inventory: Inventory,
) -> None:
    hold_id, event, booking_id = await rebooked_then_lost(
        http, events, client, standin, service, inventory
    )
    await inventory.cancel_booking(
        pb.CancelBookingRequest(event_id=BRIEF, booking_id=booking_id, reason="admin")
    )
    delivered = await standin.deliver(event)
    assert delivered.status_code == 200, delivered.text  # not a failure Stripe retries for days
    done = await checkout_status(http, hold_id, BRIEF)
    assert done["status"] == "refunded" and "cancelled" in done["reason"]
    [refund] = refund_of(standin, event["data"]["object"]["id"])
    assert refund["amount"] == 2500
    assert await seat_states(client, CIRCLE, BRIEF) == {pb.SEAT_STATUS_AVAILABLE}
