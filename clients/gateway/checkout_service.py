"""Checkout: a hold paid for with a Stripe PaymentIntent, confirmed by Stripe's webhook.

Starting checkout extends the hold (so the payment has time) and creates one PaymentIntent per
hold: the idempotency key is derived from (event, hold), so a retried start gets the same
intent. A `payment_intent.succeeded` event confirms the hold with the intent id as payment
reference; when the hold is gone by then (expired, released) the same seats are held and
confirmed again if they can be, else the payment is refunded and the reason recorded. A failed
or cancelled payment releases the hold (a later success of the same intent, after a retry with
another card, is then a payment that outlived its hold).

Every call a Stripe event causes is idempotent (Confirm and Hold carry request ids derived from
the intent id, refunds an idempotency key), and the event id is recorded in the same Postgres
transaction as the checkout's new state, after those calls: a crash anywhere before the commit
leaves the event unprocessed, and Stripe's redelivery runs it again to the same result.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import stripe
from lml.inventory.v1 import inventory_pb2 as pb

from clients.client import InventoryClient
from clients.errors import (
    BookingCancelled,
    HoldConfirmed,
    HoldExpired,
    HoldNotFound,
    LimitExceeded,
    SeatsUnavailable,
)
from clients.gateway import checkout_store as store
from clients.gateway.checkout_store import CheckoutRecord, Outcome
from inventory.event_shape import area_of_place
from inventory.layouts.errors import EventSetupError
from inventory.layouts.events import read_event_layout

TEST_CARD = "pm_card_visa"  # Stripe's test-mode card that always succeeds
# Extending by 1 ms never moves a live hold's expiry earlier (extend keeps the later of the
# two), so it leaves the hold as it is and still returns its seats: what a checkout does once
# the hold has reached its lifetime limit.
KEEP_EXPIRY_TTL = 0.001
Intent = dict[str, Any]  # a PaymentIntent as Stripe's event carries it


class CheckoutError(Exception):
    """A checkout request that cannot be served: an HTTP status, a reason code, a detail."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


@dataclass(frozen=True)
class Started:
    record: CheckoutRecord
    client_secret: str
    hold: pb.Hold


@dataclass(frozen=True)
class Prices:
    """What each seat and general-admission place of an event costs: an event's seats, areas
    and prices never change."""

    currency: str
    by_seat: dict[str, int]
    by_area: dict[str, int]

    def of(self, seat_id: str) -> int:
        price = self.by_seat.get(seat_id)
        return self.by_area[area_of_place(seat_id)] if price is None else price


class Checkout:
    def __init__(
        self,
        inventory: InventoryClient,
        stripe_client: stripe.StripeClient,
        pool: asyncpg.Pool,
        *,
        test_mode: bool,
    ) -> None:
        self.inventory = inventory
        self.stripe = stripe_client
        self.pool = pool
        self.test_mode = test_mode
        self._prices: dict[str, Prices] = {}

    # -- starting and paying ------------------------------------------------------------------

    async def start(self, event_id: str, hold_id: str, holder_id: str) -> Started:
        """Extends the hold and creates (or, on a retry, finds) its PaymentIntent."""
        hold = await self._extend(event_id, hold_id, holder_id)
        prices = await self.prices(event_id)
        amount = sum(prices.of(seat) for seat in hold.seat_ids)
        if amount < 1:
            raise CheckoutError(
                409, "NOTHING_TO_PAY", "the held seats are free: confirm the hold without payment"
            )
        existing = await store.get(self.pool, event_id, hold_id)
        if existing is not None:
            intent = await self.stripe.v1.payment_intents.retrieve_async(existing.payment_intent_id)
            return Started(existing, intent.client_secret or "", hold)
        intent = await self.stripe.v1.payment_intents.create_async(
            {
                "amount": amount,
                "currency": prices.currency.lower(),
                "metadata": {"event_id": event_id, "hold_id": hold_id, "holder_id": holder_id},
                # Cards and other methods without a redirect: the server can then confirm
                # with a test card (pay_with_test_card) without a return URL.
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            },
            {"idempotency_key": f"checkout:{event_id}:{hold_id}"},
        )
        record = CheckoutRecord(
            event_id,
            hold_id,
            holder_id,
            tuple(hold.seat_ids),
            intent.id,
            amount,
            prices.currency,
            "awaiting_payment",
        )
        return Started(await store.add(self.pool, record), intent.client_secret or "", hold)

    async def _extend(self, event_id: str, hold_id: str, holder_id: str) -> pb.Hold:
        """The hold extended by the event's default TTL, or kept as it is when that would pass
        the hold's lifetime limit (the payment then has what is left of the hold)."""
        try:
            return await self.inventory.extend(event_id, hold_id, holder_id)
        except LimitExceeded as error:
            if error.limit != "max_hold_lifetime":
                raise
            return await self.inventory.extend(event_id, hold_id, holder_id, ttl=KEEP_EXPIRY_TTL)

    async def prices(self, event_id: str) -> Prices:
        """Each seat's price from its category, cached per event."""
        cached = self._prices.get(event_id)
        if cached is not None:
            return cached
        try:
            recorded = await read_event_layout(self.pool, event_id)
        except EventSetupError as error:
            raise CheckoutError(409, "EVENT_NOT_PRICED", str(error)) from error
        found = await self.inventory.get_event(event_id, include_seats=True)
        by_category = recorded.event.prices
        categories = {s.category for s in found.seats} | {a.category for a in found.event.areas}
        unpriced = sorted(repr(category) for category in categories - by_category.keys())
        if unpriced:
            raise CheckoutError(
                409,
                "EVENT_NOT_PRICED",
                f"event {event_id} has no price for category(ies) {', '.join(unpriced)}",
            )
        prices = self._prices[event_id] = Prices(
            recorded.event.currency,
            {seat.seat_id: by_category[seat.category] for seat in found.seats},
            {area.area_id: by_category[area.category] for area in found.event.areas},
        )
        return prices

    async def status(self, event_id: str, hold_id: str, holder_id: str) -> CheckoutRecord:
        record = await store.get(self.pool, event_id, hold_id)
        if record is None:
            raise CheckoutError(404, "CHECKOUT_NOT_FOUND", f"no checkout for hold {hold_id}")
        if record.holder_id != holder_id:
            raise CheckoutError(403, "NOT_HOLDER", "another holder started this checkout")
        return record

    async def pay_with_test_card(
        self, event_id: str, hold_id: str, holder_id: str
    ) -> tuple[str, str]:
        """Confirms the PaymentIntent with Stripe's test card (test mode only); Stripe then
        sends payment_intent.succeeded to the webhook. Returns the intent's id and status."""
        if not self.test_mode:
            raise CheckoutError(
                403, "TEST_MODE_ONLY", "test payments need a test-mode key (sk_test_...)"
            )
        record = await self.status(event_id, hold_id, holder_id)
        if record.status != "awaiting_payment":
            raise CheckoutError(409, "CHECKOUT_ENDED", f"the checkout is {record.status}")
        intent = await self.stripe.v1.payment_intents.confirm_async(
            record.payment_intent_id,
            {"payment_method": TEST_CARD},
            {"idempotency_key": f"test-payment:{record.payment_intent_id}"},
        )
        return intent.id, str(intent.status)

    # -- Stripe events --------------------------------------------------------------------------

    async def handle(self, event: stripe.Event) -> str:
        """Processes a verified Stripe event once; returns what it did (or did before)."""
        handler = self._handlers().get(event.type)
        intent: Intent = event.data.object.to_dict()
        if handler is None or intent.get("object") != "payment_intent":
            return f"ignored: {event.type}"
        async with self.pool.acquire() as connection, connection.transaction():
            await store.lock_intent(connection, intent["id"])
            earlier = await store.processed(connection, event.id)
            if earlier is not None:
                return f"already processed: {earlier}"
            record = await store.by_intent(connection, intent["id"])
            if record is None:
                outcome = Outcome(f"no checkout for {intent['id']}")
            else:
                outcome = await handler(record, intent)
            await store.record_event(connection, event.id, event.type, intent["id"], outcome)
            return outcome.summary

    def _handlers(self) -> dict[str, Callable[[CheckoutRecord, Intent], Awaitable[Outcome]]]:
        return {
            "payment_intent.succeeded": self._succeeded,
            "payment_intent.payment_failed": self._release,
            "payment_intent.canceled": self._release,
        }

    async def _succeeded(self, record: CheckoutRecord, intent: Intent) -> Outcome:
        if record.status in ("booked", "refunded"):
            return Outcome(f"payment already settled: {record.status}")
        try:
            booking = await self.inventory.confirm(
                record.event_id,
                record.hold_id,
                record.holder_id,
                payment_ref=record.payment_intent_id,
                request_id=f"stripe:{record.payment_intent_id}:confirm",
            )
        except (HoldExpired, HoldNotFound):
            return await self._book_again(record)
        except BookingCancelled:
            return await self._refund(record, "the hold's booking was cancelled")
        if booking.payment_ref != record.payment_intent_id:
            return await self._refund(
                record, f"the hold was booked without this payment (booking {booking.booking_id})"
            )
        return Outcome("booked", "booked", booking_id=booking.booking_id)

    async def _book_again(self, record: CheckoutRecord) -> Outcome:
        """The payment outlived its hold: hold and confirm the same seats anew, or refund."""
        intent_id = record.payment_intent_id
        try:
            # The same request id on every delivery: a delivery after one that held (and even
            # confirmed) the seats anew gets that hold again, and its booking from Confirm.
            # Paid, so never refused for want of the waiting room's admission (the gateway's
            # API key needs the service's `checkout` scope for that).
            again = pb.HoldRequest(
                event_id=record.event_id,
                holder_id=record.holder_id,
                seat_ids=record.seat_ids,
                skip_admission=True,
            )
            held = await self.inventory.hold_request(
                again, request_id=f"stripe:{intent_id}:hold-again"
            )
            hold = held.hold
            booking = await self.inventory.confirm(
                record.event_id,
                hold.hold_id,
                record.holder_id,
                payment_ref=intent_id,
                request_id=f"stripe:{intent_id}:confirm-again",
            )
        except SeatsUnavailable as error:
            taken = ", ".join(error.seat_ids)
            return await self._refund(record, f"hold ended and seats were taken: {taken}")
        except (LimitExceeded, HoldExpired, HoldNotFound, HoldConfirmed) as error:
            return await self._refund(record, f"hold ended and could not be made again: {error}")
        except BookingCancelled:
            # An earlier delivery booked again and failed before its commit; an admin has
            # cancelled that booking since. Refunded, not left failing for Stripe to retry.
            return await self._refund(record, "the booking made after the hold ended was cancelled")
        return Outcome(
            "booked after the hold ended",
            "booked",
            booking_id=booking.booking_id,
            rebooked_hold_id=hold.hold_id,
        )

    async def _refund(self, record: CheckoutRecord, reason: str) -> Outcome:
        refund = await self.stripe.v1.refunds.create_async(
            {
                "payment_intent": record.payment_intent_id,
                "metadata": {"event_id": record.event_id, "hold_id": record.hold_id},
            },
            {"idempotency_key": f"refund:{record.payment_intent_id}"},
        )
        return Outcome(f"refunded: {reason}", "refunded", refund_id=refund.id, reason=reason)

    async def _release(self, record: CheckoutRecord, intent: Intent) -> Outcome:
        if record.status != "awaiting_payment":
            return Outcome(f"nothing to release: the checkout is {record.status}")
        why = _why_unpaid(intent)
        try:
            await self.inventory.release(record.event_id, record.hold_id, record.holder_id)
        except HoldConfirmed:
            return Outcome(f"{why}; the hold was booked without this payment")
        except (HoldExpired, HoldNotFound):
            pass  # its seats are free already
        return Outcome(f"hold released: {why}", "released", reason=why)


def _why_unpaid(intent: Intent) -> str:
    if intent.get("status") == "canceled":
        return f"payment canceled ({intent.get('cancellation_reason') or 'no reason given'})"
    error = intent.get("last_payment_error") or {}
    return f"payment failed ({error.get('message') or error.get('code') or 'no reason given'})"
