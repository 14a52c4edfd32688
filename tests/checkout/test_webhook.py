"""The webhook: Stripe's signature and timestamp checked, each event processed once however
often and however concurrently it is delivered; and the checkout routes' refusals."""

import asyncio
import time
from typing import Any

import asyncpg
import httpx
import pytest

from clients import InventoryClient
from clients.gateway.app import create_app
from clients.gateway.checkout_routes import WEBHOOK_PATH, StripeSettings
from inventory.layouts.backends import Backends
from inventory.layouts.lifecycle import Layouts
from inventory.local_servers import RedisServer
from tests.checkout.conftest import Events
from tests.checkout.test_checkout import ANN, CIRCLE, STALLS, hold, pay, settled, start
from tests.clients.conftest import Service, buyer, seats, serve_gateway, trust, until
from tests.clients.test_gateway import problem
from tests.stripe_standin import StripeStandin

# stripe's HTTPXClient posts bytes through httpx's deprecated `data=`: the library's, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


async def paid_unannounced(
    http: httpx.AsyncClient, standin: StripeStandin, seats: list[str]
) -> tuple[str, dict[str, Any]]:
    """A paid checkout whose payment_intent.succeeded event was not delivered yet."""
    hold_id = await hold(http, seats)
    assert (await start(http, hold_id)).status_code == 201
    url, standin.webhook_url = standin.webhook_url, None
    assert (await pay(http, hold_id)).status_code == 202
    await until(lambda: bool(standin.deliveries))
    standin.webhook_url = url
    event, status = standin.deliveries.pop()
    assert status is None and event["type"] == "payment_intent.succeeded"
    return hold_id, event


async def processed(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT outcome FROM stripe_events")
    return [row[0] for row in rows]


async def test_bad_signature_or_stale_timestamp_is_refused_and_changes_nothing(
    http: httpx.AsyncClient, events: Events, standin: StripeStandin, pg_pool: asyncpg.Pool
) -> None:
    hold_id, event = await paid_unannounced(http, standin, CIRCLE)
    refusals = {
        "no signatures found matching": await standin.deliver(event, secret="whsec_other"),
        "outside the tolerance zone": await standin.deliver(event, timestamp=time.time() - 301),
        "no signatures found with expected scheme": await standin.deliver(
            event, signature="t=1,v0=abc"
        ),
        "no stripe-signature header": await http.post(WEBHOOK_PATH, content=b"{}"),
    }
    for why, refused in refusals.items():
        assert why in problem(refused, 400, "BAD_WEBHOOK")["detail"].lower()
    assert await processed(pg_pool) == []
    status = await http.get(f"/v1/events/gala/holds/{hold_id}/checkout", headers=buyer("ann"))
    assert status.json()["status"] == "awaiting_payment"
    accepted = await standin.deliver(event, timestamp=time.time() - 250)  # within tolerance
    assert accepted.json()["outcome"] == "booked"


async def test_a_replayed_event_changes_nothing(
    http: httpx.AsyncClient, events: Events, standin: StripeStandin, pg_pool: asyncpg.Pool
) -> None:
    hold_id, event = await paid_unannounced(http, standin, STALLS)
    first = await standin.deliver(event)
    assert first.json() == {"received": True, "outcome": "booked"}
    booked = await settled(http, hold_id, "booked")
    replayed = await standin.deliver(event)
    assert replayed.status_code == 200
    assert replayed.json()["outcome"] == "already processed: booked"
    assert await settled(http, hold_id, "booked") == booked
    assert await processed(pg_pool) == ["booked"]
    # Another event about the same payment (its own id) finds the payment settled.
    again = standin.event("payment_intent.succeeded", event["data"]["object"])
    assert (await standin.deliver(again)).json()["outcome"] == "payment already settled: booked"
    assert await settled(http, hold_id, "booked") == booked


async def test_concurrent_duplicate_deliveries_book_once(
    http: httpx.AsyncClient,
    events: Events,
    standin: StripeStandin,
    pg_pool: asyncpg.Pool,
    client: InventoryClient,
) -> None:
    hold_id, event = await paid_unannounced(http, standin, STALLS + CIRCLE)
    replies = await asyncio.gather(*(standin.deliver(event) for _ in range(8)))
    assert [reply.status_code for reply in replies] == [200] * 8
    outcomes = sorted(reply.json()["outcome"] for reply in replies)
    assert outcomes == ["already processed: booked"] * 7 + ["booked"]
    assert await processed(pg_pool) == ["booked"]
    booking_id = (await settled(http, hold_id, "booked"))["booking_id"]
    assert (await client.confirm("gala", hold_id, ANN)).booking_id == booking_id


async def test_a_delivery_that_fails_after_confirming_is_redelivered_to_the_same_booking(
    http: httpx.AsyncClient,
    events: Events,
    standin: StripeStandin,
    pg_pool: asyncpg.Pool,
    service: Service,
    client: InventoryClient,
) -> None:
    hold_id, event = await paid_unannounced(http, standin, CIRCLE)
    service.faults.armed["Confirm"] = 4  # every attempt of the gateway's SDK: applied, then lost
    failed = await standin.deliver(event)
    problem(failed, 503, "UNAVAILABLE")  # Stripe redelivers on any non-2xx answer
    assert service.faults.applied["Confirm"] == 4 and await processed(pg_pool) == []
    booking = await client.confirm("gala", hold_id, ANN)  # Redis booked it on the first try
    assert booking.payment_ref == event["data"]["object"]["id"]
    assert (await standin.deliver(event)).json()["outcome"] == "booked"
    assert (await settled(http, hold_id, "booked"))["booking_id"] == booking.booking_id


async def test_other_events_are_acknowledged_and_ignored(
    http: httpx.AsyncClient, events: Events, standin: StripeStandin, pg_pool: asyncpg.Pool
) -> None:
    other = await standin.deliver(standin.event("charge.refunded", {"object": "charge"}))
    assert other.json()["outcome"] == "ignored: charge.refunded"
    stranger = {"id": "pi_elsewhere", "object": "payment_intent", "status": "succeeded"}
    unknown = await standin.deliver(standin.event("payment_intent.succeeded", stranger))
    assert unknown.json()["outcome"] == "no checkout for pi_elsewhere"


async def test_checkout_refusals(
    http: httpx.AsyncClient, events: Events, standin: StripeStandin
) -> None:
    hold_id = await hold(http, CIRCLE)
    problem(await start(http, hold_id, holder="mallory"), 403, "NOT_HOLDER")
    problem(await start(http, "0" * 32), 404, "HOLD_NOT_FOUND")
    problem(await pay(http, hold_id), 404, "CHECKOUT_NOT_FOUND")
    assert (await start(http, hold_id)).status_code == 201
    theirs = await http.get(f"/v1/events/gala/holds/{hold_id}/checkout", headers=buyer("mallory"))
    problem(theirs, 403, "NOT_HOLDER")
    problem(await http.post(f"/v1/events/gala/holds/{hold_id}/checkout"), 401, "UNAUTHENTICATED")
    assert standin.intents and all(
        i["status"] == "requires_payment_method" for i in standin.intents.values()
    )


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        (None, "STRIPE_SECRET_KEY"),
        (StripeSettings("sk_test_x"), "STRIPE_WEBHOOK_SECRET"),
    ],
)
async def test_without_stripe_keys_checkout_is_not_configured(
    service: Service,
    pg_layouts: Layouts,
    pg_pool: asyncpg.Pool,
    redis_server: RedisServer,
    settings: StripeSettings | None,
    missing: str,
) -> None:
    app = create_app(
        service.target,
        backends=Backends(pg_layouts, pg_pool),
        stripe=settings,
        trust=trust(redis_server),
    )
    path = "/v1/events/gala/holds/h1/checkout"
    async with serve_gateway(app) as http:
        for response in (
            await http.post(path, headers=buyer("ann")),
            await http.get(path, headers=buyer("ann")),
            await http.post(f"{path}/test-payment", headers=buyer("ann")),
            await http.post(WEBHOOK_PATH, content=b"{}"),
        ):
            detail = problem(response, 503, "CHECKOUT_NOT_CONFIGURED")["detail"]
            assert detail.startswith("checkout is not configured: set ") and missing in detail


async def test_a_live_key_gets_no_test_payments_and_stripe_failures_are_502(
    service: Service,
    pg_layouts: Layouts,
    pg_pool: asyncpg.Pool,
    events: Events,
    standin: StripeStandin,
    redis_server: RedisServer,
) -> None:
    settings = StripeSettings("sk_live_x", "whsec_x", standin.base_url)
    app = create_app(
        service.target,
        backends=Backends(pg_layouts, pg_pool),
        stripe=settings,
        trust=trust(redis_server),
    )
    async with serve_gateway(app) as http:
        refused = await pay(http, "h1")
        assert "sk_test_" in problem(refused, 403, "TEST_MODE_ONLY")["detail"]
        hold_id = await hold(http, CIRCLE)
        failed = problem(await start(http, hold_id), 502, "PAYMENT_PROVIDER_ERROR")
        assert "Invalid API Key" in failed["detail"]  # the stand-in takes sk_test_ keys only


async def test_an_event_without_prices_cannot_check_out(
    http: httpx.AsyncClient, events: Events, client: InventoryClient
) -> None:
    await client.create_event("plain", seats("A1"))
    held = await client.hold("plain", ANN, ["A1"])
    started = await http.post(
        f"/v1/events/plain/holds/{held.hold_id}/checkout", headers=buyer("ann")
    )
    assert "no event plain" in problem(started, 409, "EVENT_NOT_PRICED")["detail"]
