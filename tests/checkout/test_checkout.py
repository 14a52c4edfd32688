"""Starting checkout, paying for it, and how each payment outcome ends the hold."""

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import stripe
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from clients import InventoryClient
from clients.gateway.admissions import Admissions
from clients.gateway.identity import holder_of
from inventory.layouts.events import EventFromLayout, create_event_from_layout
from inventory.layouts.lifecycle import Layouts
from tests.checkout.conftest import PRICES, Events, seat
from tests.clients.conftest import IDP_ISSUER, buyer, until
from tests.clients.test_gateway import problem
from tests.layouts.samples import variant
from tests.stripe_standin import StripeStandin

# stripe's HTTPXClient posts bytes through httpx's deprecated `data=`: the library's, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

STALLS = [seat("stalls", "A", 1), seat("stalls", "A", 2)]  # category A, 4500 each
CIRCLE = [seat("circle", "A", 3)]  # category B, 2500


ANN = holder_of(IDP_ISSUER, "ann")  # the holder id of the buyer "ann" of the tests' provider
FESTIVAL_LAYOUT = "0c5f3a7e-2b1d-4c8e-9f6a-3d2e1b0a9c8d"
BRIEF = "brief"  # an event whose holds last 1 s unless extended further


async def hold(
    http: httpx.AsyncClient,
    seats: list[str],
    holder: str = "ann",
    event: str = "gala",
    **extra: Any,
) -> str:
    body = {"seat_ids": seats, **extra}
    held = await http.post(f"/v1/events/{event}/holds", json=body, headers=buyer(holder))
    assert held.status_code == 201, held.text
    hold_id: str = held.json()["hold_id"]
    return hold_id


async def start(
    http: httpx.AsyncClient, hold_id: str, holder: str = "ann", event: str = "gala"
) -> httpx.Response:
    return await http.post(f"/v1/events/{event}/holds/{hold_id}/checkout", headers=buyer(holder))


async def checkout_status(
    http: httpx.AsyncClient, hold_id: str, event: str = "gala"
) -> dict[str, Any]:
    found = await http.get(f"/v1/events/{event}/holds/{hold_id}/checkout", headers=buyer("ann"))
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


async def settled(
    http: httpx.AsyncClient, hold_id: str, status: str, event: str = "gala"
) -> dict[str, Any]:
    """The checkout once it reached `status` (the webhook arrives in the background)."""

    async def reached() -> bool:
        return bool((await checkout_status(http, hold_id, event))["status"] == status)

    await until(reached, 10)
    return await checkout_status(http, hold_id, event)


async def seat_states(client: InventoryClient, seats: list[str], event: str = "gala") -> set[int]:
    snapshot = await client.availability(event)
    return {s.status for s in snapshot.seats if s.seat_id in seats}


async def pay(http: httpx.AsyncClient, hold_id: str, event: str = "gala") -> httpx.Response:
    return await http.post(
        f"/v1/events/{event}/holds/{hold_id}/checkout/test-payment", headers=buyer("ann")
    )


async def started_then_expired(
    http: httpx.AsyncClient, events: Events, client: InventoryClient, seats: list[str]
) -> str:
    """A hold of `seats` on the BRIEF event whose checkout started, after it expired."""
    await events.make(BRIEF, default_ttl=1.0)
    hold_id = await hold(http, seats, event=BRIEF)
    assert (await start(http, hold_id, event=BRIEF)).status_code == 201

    async def expired() -> bool:
        return await seat_states(client, seats, BRIEF) == {pb.SEAT_STATUS_AVAILABLE}

    await until(expired, 10)
    return hold_id


async def test_amount_and_currency_come_from_category_prices(
    http: httpx.AsyncClient, events: Events, standin: StripeStandin
) -> None:
    hold_id = await hold(http, STALLS + CIRCLE, ttl_seconds=30)
    started = await start(http, hold_id)
    assert started.status_code == 201, started.text
    body = started.json()
    assert (body["amount"], body["currency"], body["status"]) == (
        2 * 4500 + 2500,
        "GBP",
        "awaiting_payment",
    )
    intent = standin.intents[body["payment_intent_id"]]
    assert (intent["amount"], intent["currency"]) == (11500, "gbp")
    assert intent["metadata"] == {"event_id": "gala", "hold_id": hold_id, "holder_id": ANN}
    assert body["client_secret"] == intent["client_secret"]
    # Extended from 30 s to the event's default TTL (600 s) so the payment has time.
    remaining = datetime.fromisoformat(body["expires_at"]).timestamp() - intent["created"]
    assert 500 < remaining <= 601


async def test_general_admission_places_cost_their_area_price(
    http: httpx.AsyncClient, events: Events, pg_layouts: Layouts, standin: StripeStandin
) -> None:
    def add_pit(data: dict[str, Any]) -> None:
        data["type"] = "hybrid"
        pit = {"id": "pit", "label": "Pit", "capacity": 50, "category": "B"}
        data["ga_areas"] = [{**pit, "x": 0.1, "y": 0.8, "width": 0.2, "height": 0.1}]

    festival = variant(add_pit, FESTIVAL_LAYOUT)
    await pg_layouts.add(festival)
    await pg_layouts.publish(festival.id)
    deployed = await pg_layouts.deploy(festival.id)
    assert deployed.hash is not None
    spec = EventFromLayout("festival", festival.id, deployed.hash, "GBP", PRICES)
    await create_event_from_layout(pg_layouts, events.pool, events.inventory, spec)
    body = {"general_admission": {"area_id": "pit", "quantity": 3}}
    held = await http.post("/v1/events/festival/holds", json=body, headers=buyer("ann"))
    assert held.status_code == 201, held.text
    started = await start(http, held.json()["hold_id"], event="festival")
    assert started.status_code == 201, started.text
    assert (started.json()["amount"], started.json()["currency"]) == (3 * 2500, "GBP")


async def test_a_hold_at_its_lifetime_limit_keeps_its_expiry(
    http: httpx.AsyncClient, events: Events
) -> None:
    await events.make("capped", default_ttl=3, lifetime=4)
    held = await http.post(
        "/v1/events/capped/holds", json={"seat_ids": CIRCLE}, headers=buyer("ann")
    )
    assert held.status_code == 201, held.text
    await asyncio.sleep(1.5)  # now the default TTL (3 s) would pass the lifetime (4 s)
    started = await start(http, held.json()["hold_id"], event="capped")
    assert started.status_code == 201, started.text
    assert started.json()["expires_at"] == held.json()["expires_at"]


async def test_a_retried_start_gets_the_same_payment_intent(
    http: httpx.AsyncClient, events: Events, standin: StripeStandin
) -> None:
    hold_id = await hold(http, CIRCLE)
    first, second, third = await asyncio.gather(*(start(http, hold_id) for _ in range(3)))
    again = await start(http, hold_id)
    ids = {r.json()["payment_intent_id"] for r in (first, second, third, again)}
    assert [r.status_code for r in (first, second, third, again)] == [201] * 4
    assert len(ids) == 1 and list(standin.intents) == list(ids)


async def test_paying_books_the_seats_with_the_intent_as_payment_ref(
    http: httpx.AsyncClient, events: Events, client: InventoryClient
) -> None:
    hold_id = await hold(http, STALLS)
    intent_id = (await start(http, hold_id)).json()["payment_intent_id"]
    paid = await pay(http, hold_id)
    assert paid.status_code == 202, paid.text
    assert paid.json() == {"payment_intent_id": intent_id, "payment_status": "succeeded"}
    done = await settled(http, hold_id, "booked")
    booking = await client.confirm("gala", hold_id, ANN)  # idempotent: the first booking
    assert (booking.booking_id, booking.payment_ref) == (done["booking_id"], intent_id)
    assert await seat_states(client, STALLS) == {pb.SEAT_STATUS_BOOKED}
    assert problem(await pay(http, hold_id), 409, "CHECKOUT_ENDED")


async def test_with_checkout_only_the_paid_webhook_books_and_the_buyer_sees_it_as_theirs(
    http: httpx.AsyncClient, events: Events, client: InventoryClient
) -> None:
    hold_id = await hold(http, CIRCLE)
    confirm = f"/v1/events/gala/holds/{hold_id}/confirm"
    # The exploit of issue 12: "confirm" with any payment_ref instead of paying.
    for body in ({"payment_ref": "x"}, {}):
        refused = await http.post(confirm, json=body, headers=buyer("ann"))
        assert "webhook" in problem(refused, 403, "PAYMENT_REQUIRED")["detail"]
    assert await seat_states(client, CIRCLE) == {pb.SEAT_STATUS_HELD}

    changes: list[dict[str, Any]] = []

    async def follow() -> None:
        stream = http.stream("GET", "/v1/events/gala/changes", headers=buyer("ann"))
        async with stream as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"reason"' in line:
                    changes.append(json.loads(line.removeprefix("data: ")))

    following = asyncio.create_task(follow())
    intent_id = (await start(http, hold_id)).json()["payment_intent_id"]
    assert (await pay(http, hold_id)).status_code == 202
    done = await settled(http, hold_id, "booked")
    booking = await client.confirm("gala", hold_id, ANN)
    assert (booking.booking_id, booking.payment_ref) == (done["booking_id"], intent_id)
    await until(lambda: any(c["status"] == "BOOKED" for c in changes))
    following.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await following
    booked = next(c for c in changes if c["status"] == "BOOKED")
    assert (booked["mine"], booked["hold_id"], booked["reason"]) == (True, hold_id, "confirmed")


async def test_payment_after_the_hold_expired_books_the_same_seats_again(
    http: httpx.AsyncClient, events: Events, client: InventoryClient
) -> None:
    hold_id = await started_then_expired(http, events, client, CIRCLE)
    assert (await pay(http, hold_id, BRIEF)).status_code == 202
    done = await settled(http, hold_id, "booked", BRIEF)
    assert done["rebooked_hold_id"] not in (None, hold_id)
    booking = await client.confirm(BRIEF, done["rebooked_hold_id"], ANN)
    assert booking.booking_id == done["booking_id"] and list(booking.seat_ids) == CIRCLE
    assert booking.payment_ref == done["payment_intent_id"]
    assert await seat_states(client, CIRCLE, BRIEF) == {pb.SEAT_STATUS_BOOKED}


async def test_payment_after_the_hold_and_the_admission_lapsed_books_a_queued_event_again(
    http: httpx.AsyncClient, events: Events, client: InventoryClient, redis: Redis
) -> None:
    """The webhook's re-hold skips the waiting room: a paid checkout is never refused for
    want of an admission (the service allows it to the gateway's key, which has the scope)."""
    await events.make(BRIEF, default_ttl=1.0)
    await client.configure_queue(
        BRIEF, opens_at=datetime.now(UTC), admit_per_minute=6000, max_active=10, admission_ttl=1
    )

    async def admitted() -> bool:
        joined = await http.post(f"/v1/events/{BRIEF}/queue", headers=buyer("ann"))
        return bool(joined.json()["admitted"])

    await until(admitted, 10)
    hold_id = await hold(http, CIRCLE, event=BRIEF)
    assert (await start(http, hold_id, event=BRIEF)).status_code == 201

    async def lapsed() -> bool:
        free = await seat_states(client, CIRCLE, BRIEF) == {pb.SEAT_STATUS_AVAILABLE}
        return free and not await Admissions(redis).token(BRIEF, ANN)

    await until(lapsed, 10)
    again = await http.post(
        f"/v1/events/{BRIEF}/holds", json={"seat_ids": CIRCLE}, headers=buyer("ann")
    )
    problem(again, 409, "ADMISSION_REQUIRED")  # the buyer could not hold them again now
    assert (await pay(http, hold_id, BRIEF)).status_code == 202
    done = await settled(http, hold_id, "booked", BRIEF)
    assert done["rebooked_hold_id"] not in (None, hold_id)
    assert await seat_states(client, CIRCLE, BRIEF) == {pb.SEAT_STATUS_BOOKED}


async def test_payment_after_the_seats_were_taken_is_refunded(
    http: httpx.AsyncClient, events: Events, client: InventoryClient, standin: StripeStandin
) -> None:
    hold_id = await started_then_expired(http, events, client, STALLS)
    await hold(http, STALLS[1:], holder="bob", event=BRIEF, ttl_seconds=60)
    assert (await pay(http, hold_id, BRIEF)).status_code == 202
    done = await settled(http, hold_id, "refunded", BRIEF)
    assert STALLS[1] in done["reason"] and "taken" in done["reason"]
    refund = standin.refunds[done["refund_id"]]
    assert (refund["payment_intent"], refund["amount"]) == (done["payment_intent_id"], 9000)
    assert done["booking_id"] is None
    assert await seat_states(client, STALLS[:1], BRIEF) == {pb.SEAT_STATUS_AVAILABLE}


@pytest.mark.parametrize("outcome", ["declined", "canceled"])
async def test_a_failed_or_canceled_payment_releases_the_hold(
    http: httpx.AsyncClient,
    events: Events,
    client: InventoryClient,
    stripe_client: stripe.StripeClient,
    outcome: str,
) -> None:
    hold_id = await hold(http, STALLS)
    intent_id = (await start(http, hold_id)).json()["payment_intent_id"]
    if outcome == "declined":
        with pytest.raises(stripe.CardError):
            await stripe_client.v1.payment_intents.confirm_async(
                intent_id, {"payment_method": "pm_card_chargeDeclined"}
            )
    else:
        await stripe_client.v1.payment_intents.cancel_async(
            intent_id, {"cancellation_reason": "abandoned"}
        )
    done = await settled(http, hold_id, "released")
    assert (
        done["reason"]
        == {
            "declined": "payment failed (Your card was declined.)",
            "canceled": "payment canceled (abandoned)",
        }[outcome]
    )
    assert await seat_states(client, STALLS) == {pb.SEAT_STATUS_AVAILABLE}
