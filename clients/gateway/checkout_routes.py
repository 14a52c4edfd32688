"""Checkout routes over Stripe (the service in checkout_service): start a hold's checkout, poll
it, pay with Stripe's test card, and the webhook Stripe calls.

Configured by StripeSettings (lml-gateway: STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET and,
for a stand-in server, STRIPE_API_BASE) and the layouts database (prices, checkout records).
Without them every checkout route answers 503 saying what to set.
"""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import stripe
from fastapi import FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from clients.client import InventoryClient
from clients.gateway import problems
from clients.gateway.access import Buyer
from clients.gateway.checkout_service import Checkout, CheckoutError
from clients.gateway.checkout_store import CheckoutRecord, Status
from inventory.layouts.backends import Backends

WEBHOOK_PATH = "/v1/stripe/webhook"


@dataclass(frozen=True)
class StripeSettings:
    secret_key: str | None = None
    webhook_secret: str | None = None
    api_base: str | None = None  # None: Stripe's own API
    tolerance: int = stripe.Webhook.DEFAULT_TOLERANCE  # seconds a signature stays valid


@dataclass(frozen=True)
class CheckoutState:
    """The app's checkout: working, or None with `unconfigured` saying what is missing."""

    checkout: Checkout | None
    webhook_secret: str
    tolerance: int
    unconfigured: str = ""


def _missing(settings: StripeSettings | None, backends: Backends | None) -> str:
    settings = settings or StripeSettings()
    missing = [
        name
        for name, value in (
            ("STRIPE_SECRET_KEY (--stripe-secret-key)", settings.secret_key),
            ("STRIPE_WEBHOOK_SECRET (--stripe-webhook-secret)", settings.webhook_secret),
            ("LML_LAYOUTS_DSN (--layouts-dsn)", backends),
        )
        if not value
    ]
    if not missing:
        return ""
    return f"checkout is not configured: set {', '.join(missing)}"


@contextlib.asynccontextmanager
async def open_checkout(
    settings: StripeSettings | None, client: InventoryClient, backends: Backends | None
) -> AsyncIterator[CheckoutState]:
    """The checkout for the app's lifetime (its Stripe HTTP client is closed at the end)."""
    unconfigured = _missing(settings, backends)
    if unconfigured or settings is None or backends is None or not settings.secret_key:
        yield CheckoutState(None, "", 0, unconfigured)  # (past `unconfigured`: for the types)
        return
    http = stripe.HTTPXClient()
    stripe_client = stripe.StripeClient(
        settings.secret_key,
        base_addresses={"api": settings.api_base} if settings.api_base else None,
        http_client=http,
        max_network_retries=2,  # safe: every POST carries an idempotency key
    )
    test_mode = settings.secret_key.startswith("sk_test_")
    checkout = Checkout(client, stripe_client, backends.pool, test_mode=test_mode)
    try:
        yield CheckoutState(checkout, settings.webhook_secret or "", settings.tolerance)
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]  # stripe leaves it untyped


class CheckoutStartedOut(BaseModel):
    payment_intent_id: str
    client_secret: str
    amount: int
    currency: str
    status: Status
    expires_at: datetime


class CheckoutOut(BaseModel):
    event_id: str
    hold_id: str
    payment_intent_id: str
    amount: int
    currency: str
    status: Status
    booking_id: str | None
    rebooked_hold_id: str | None
    refund_id: str | None
    reason: str | None
    updated_at: datetime | None

    @classmethod
    def of(cls, record: CheckoutRecord) -> "CheckoutOut":
        fields = {name: getattr(record, name) for name in cls.model_fields}
        return cls.model_validate(fields)


class TestPaymentOut(BaseModel):
    payment_intent_id: str
    payment_status: str


def _checkout_of(request: Request) -> Checkout:
    state: CheckoutState = request.app.state.checkout
    if state.checkout is None:
        raise CheckoutError(503, "CHECKOUT_NOT_CONFIGURED", state.unconfigured)
    return state.checkout


async def _checkout_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, CheckoutError)
    return problems.problem(error.status, error.reason, error.detail, request.url.path)


async def _stripe_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, stripe.StripeError)
    detail = f"Stripe: {error.user_message or error}"
    return problems.problem(502, "PAYMENT_PROVIDER_ERROR", detail, request.url.path)


def add_checkout_routes(app: FastAPI, errors: dict[int | str, dict[str, Any]]) -> None:
    app.add_exception_handler(CheckoutError, _checkout_error)
    app.add_exception_handler(stripe.StripeError, _stripe_error)
    errors = {**errors, 502: errors[503]}
    path = "/v1/events/{event_id}/holds/{hold_id}/checkout"

    @app.post(path, status_code=201, tags=["checkout"], responses=errors)
    async def start_checkout(
        event_id: str, hold_id: str, request: Request, holder: Buyer
    ) -> CheckoutStartedOut:
        """Starts paying for a hold: extends it (within its lifetime limit) and creates its
        Stripe PaymentIntent, for the held seats at the event's prices. A retry returns the
        same PaymentIntent. Pay with the client secret (Stripe.js) or, in test mode,
        `/checkout/test-payment`; Stripe's webhook then books the seats."""
        started = await _checkout_of(request).start(event_id, hold_id, holder)
        record = started.record
        return CheckoutStartedOut(
            payment_intent_id=record.payment_intent_id,
            client_secret=started.client_secret,
            amount=record.amount,
            currency=record.currency,
            status=record.status,
            expires_at=started.hold.expires_at.ToDatetime(tzinfo=UTC),
        )

    @app.get(path, tags=["checkout"], responses=errors)
    async def checkout_status(
        event_id: str, hold_id: str, request: Request, holder: Buyer
    ) -> CheckoutOut:
        """The hold's checkout: `awaiting_payment`, `booked` (booking_id), `refunded`
        (refund_id, reason) or `released` (reason). Poll it after paying."""
        record = await _checkout_of(request).status(event_id, hold_id, holder)
        return CheckoutOut.of(record)

    @app.post(f"{path}/test-payment", status_code=202, tags=["checkout"], responses=errors)
    async def test_payment(
        event_id: str, hold_id: str, request: Request, holder: Buyer
    ) -> TestPaymentOut:
        """Test mode only (an sk_test_ key): pays the checkout with Stripe's test card
        pm_card_visa, server-side. Stripe's webhook then books the seats: poll the status."""
        checkout = _checkout_of(request)
        intent_id, status = await checkout.pay_with_test_card(event_id, hold_id, holder)
        return TestPaymentOut(payment_intent_id=intent_id, payment_status=status)

    @app.post(WEBHOOK_PATH, tags=["checkout"], responses=errors)
    async def stripe_webhook(
        request: Request, stripe_signature: Annotated[str | None, Header()] = None
    ) -> Response:
        """Stripe's events, verified by signature and timestamp; each processed once."""
        checkout = _checkout_of(request)
        state: CheckoutState = request.app.state.checkout
        payload = await request.body()
        try:
            event = checkout.stripe.construct_event(
                payload, stripe_signature, state.webhook_secret, state.tolerance
            )
        except (stripe.SignatureVerificationError, ValueError) as error:
            return problems.problem(400, "BAD_WEBHOOK", str(error), request.url.path)
        outcome = await checkout.handle(event)
        return JSONResponse({"received": True, "outcome": outcome})
