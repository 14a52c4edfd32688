"""Checkout records in Postgres (tables of booking/migrations/0200_checkout.sql): one per hold,
with its Stripe PaymentIntent and how it ended, and the Stripe events already processed."""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Queryable = asyncpg.Connection | PoolConnectionProxy | asyncpg.Pool
Status = Literal["awaiting_payment", "booked", "refunded", "released"]

_COLUMNS = (
    "event_id, hold_id, holder_id, seat_ids, payment_intent_id, amount, currency, status,"
    " booking_id, rebooked_hold_id, refund_id, reason, created_at, updated_at"
)


@dataclass(frozen=True)
class CheckoutRecord:
    event_id: str
    hold_id: str
    holder_id: str
    seat_ids: tuple[str, ...]
    payment_intent_id: str
    amount: int  # in the currency's minor unit
    currency: str
    status: Status
    booking_id: str | None = None
    rebooked_hold_id: str | None = None
    refund_id: str | None = None
    reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """How a Stripe event changed a checkout (`status` None: it did not)."""

    summary: str
    status: Status | None = None
    booking_id: str | None = None
    rebooked_hold_id: str | None = None
    refund_id: str | None = None
    reason: str | None = None


def _record(row: asyncpg.Record) -> CheckoutRecord:
    values = dict(row)
    values["seat_ids"] = tuple(values["seat_ids"])
    return CheckoutRecord(**values)


async def add(connection: Queryable, record: CheckoutRecord) -> CheckoutRecord:
    """Records a started checkout; a concurrent start of the same hold's checkout keeps the
    first record, which this returns."""
    await connection.execute(
        "INSERT INTO checkouts (event_id, hold_id, holder_id, seat_ids, payment_intent_id,"
        " amount, currency) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (event_id, hold_id) DO NOTHING",
        record.event_id,
        record.hold_id,
        record.holder_id,
        list(record.seat_ids),
        record.payment_intent_id,
        record.amount,
        record.currency,
    )
    found = await get(connection, record.event_id, record.hold_id)
    assert found is not None
    return found


async def get(connection: Queryable, event_id: str, hold_id: str) -> CheckoutRecord | None:
    row = await connection.fetchrow(
        f"SELECT {_COLUMNS} FROM checkouts WHERE event_id = $1 AND hold_id = $2",
        event_id,
        hold_id,
    )
    return None if row is None else _record(row)


async def by_intent(connection: Queryable, payment_intent_id: str) -> CheckoutRecord | None:
    row = await connection.fetchrow(
        f"SELECT {_COLUMNS} FROM checkouts WHERE payment_intent_id = $1", payment_intent_id
    )
    return None if row is None else _record(row)


async def lock_intent(connection: Queryable, payment_intent_id: str) -> None:
    """Serializes the processing of one PaymentIntent's events until the transaction ends
    (concurrent deliveries of one event, or of its events racing each other)."""
    await connection.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", payment_intent_id
    )


async def processed(connection: Queryable, stripe_event_id: str) -> str | None:
    """The recorded outcome of a Stripe event already processed, else None."""
    outcome: str | None = await connection.fetchval(
        "SELECT outcome FROM stripe_events WHERE stripe_event_id = $1", stripe_event_id
    )
    return outcome


async def record_event(
    connection: Queryable,
    stripe_event_id: str,
    kind: str,
    payment_intent_id: str | None,
    outcome: Outcome,
) -> None:
    """Records a processed Stripe event and applies its outcome to the checkout."""
    await connection.execute(
        "INSERT INTO stripe_events (stripe_event_id, type, payment_intent_id, outcome)"
        " VALUES ($1, $2, $3, $4)",
        stripe_event_id,
        kind,
        payment_intent_id,
        outcome.summary,
    )
    if outcome.status is None or payment_intent_id is None:
        return
    await connection.execute(
        "UPDATE checkouts SET status = $2, booking_id = $3, rebooked_hold_id = $4,"
        " refund_id = $5, reason = $6, updated_at = now() WHERE payment_intent_id = $1",
        payment_intent_id,
        outcome.status,
        outcome.booking_id,
        outcome.rebooked_hold_id,
        outcome.refund_id,
        outcome.reason,
    )
