-- Checkout: one Stripe PaymentIntent per hold, and the Stripe events already processed.

CREATE TABLE checkouts (
    event_id          text        NOT NULL,
    hold_id           text        NOT NULL,
    holder_id         text        NOT NULL,
    -- The hold's seats when checkout started: what a payment that outlives its hold books again.
    seat_ids          text[]      NOT NULL CHECK (cardinality(seat_ids) > 0),
    payment_intent_id text        NOT NULL UNIQUE,
    amount            bigint      NOT NULL CHECK (amount >= 0),
    currency          char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status            text        NOT NULL DEFAULT 'awaiting_payment'
                      CHECK (status IN ('awaiting_payment', 'booked', 'refunded', 'released')),
    booking_id        text,
    -- When the payment outlived its hold and the seats were held again for it.
    rebooked_hold_id  text,
    refund_id         text,
    -- Why the hold was released (payment failed or cancelled) or the payment refunded.
    reason            text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, hold_id),
    CHECK ((status = 'booked') = (booking_id IS NOT NULL)),
    CHECK ((status = 'refunded') = (refund_id IS NOT NULL))
);

-- Written in the same transaction as the checkout change a Stripe event caused, after the
-- inventory and Stripe calls it made (each idempotent): a crash before the commit leaves the
-- event unrecorded, and Stripe's redelivery runs it again to the same result.
CREATE TABLE stripe_events (
    stripe_event_id   text        PRIMARY KEY,
    type              text        NOT NULL,
    payment_intent_id text,
    outcome           text        NOT NULL,
    processed_at      timestamptz NOT NULL DEFAULT now()
);
