-- The durable record of the seat inventory: event definitions (what `rebuild` restores from),
-- bookings and their seats, conflicts, dead letters and the append-only seat audit log.

CREATE TABLE events (
    event_id             text PRIMARY KEY,
    max_seats_per_hold   integer NOT NULL,
    max_seats_per_holder integer NOT NULL,
    default_ttl_ms       bigint NOT NULL,
    max_ttl_ms           bigint NOT NULL,
    max_lifetime_ms      bigint NOT NULL,
    seat_count           integer NOT NULL,
    created_at           timestamptz NOT NULL,
    copied_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE event_seats (
    event_id  text NOT NULL REFERENCES events,
    seat_id   text NOT NULL,
    position  integer NOT NULL,  -- the seat's index in the CreateEvent request
    section   text NOT NULL,
    "row"     text NOT NULL,
    number    text NOT NULL,
    category  text,
    PRIMARY KEY (event_id, seat_id)
);

CREATE TABLE bookings (
    booking_id    text PRIMARY KEY,
    event_id      text NOT NULL,
    hold_id       text NOT NULL,
    holder_id     text NOT NULL,
    payment_ref   text NOT NULL,
    request_id    text NOT NULL,
    confirmed_at  timestamptz NOT NULL,
    version       bigint NOT NULL,  -- the change-log version of the confirmation
    outbox_id     text NOT NULL,    -- the outbox stream entry it came from
    -- 'conflict': Redis booked a seat that Postgres already holds for another booking.
    status        text NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'cancelled', 'conflict')),
    cancelled_at  timestamptz,
    cancel_reason text,
    synced_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bookings_event ON bookings (event_id);

CREATE TABLE booked_seats (
    booking_id text NOT NULL REFERENCES bookings,
    event_id   text NOT NULL,
    seat_id    text NOT NULL,
    state      text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'cancelled', 'conflict')),
    PRIMARY KEY (booking_id, seat_id)
);
-- The safety net under Redis: at most one active booking of a seat.
CREATE UNIQUE INDEX booked_seats_one_active ON booked_seats (event_id, seat_id)
    WHERE state = 'active';

CREATE TABLE booking_conflicts (
    id                  bigserial PRIMARY KEY,
    event_id            text NOT NULL,
    seat_id             text NOT NULL,
    booking_id          text NOT NULL,  -- the booking that arrived second
    existing_booking_id text NOT NULL,  -- the booking that keeps the seat
    outbox_id           text NOT NULL,
    detected_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (booking_id, seat_id)
);

CREATE TABLE dead_letters (
    id             bigserial PRIMARY KEY,
    stream         text NOT NULL,
    consumer_group text NOT NULL,
    entry_id       text NOT NULL,
    fields         jsonb NOT NULL,
    deliveries     integer NOT NULL,
    reason         text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, consumer_group, entry_id)
);

-- One row per seat per change-log entry; never updated or deleted.
CREATE TABLE seat_audit (
    event_id    text NOT NULL,
    seat_id     text NOT NULL,
    version     bigint NOT NULL,
    reason      text NOT NULL,  -- held, extended, released, expired, confirmed, cancelled, restored
    status      text NOT NULL,  -- the seat's new status: AVAILABLE, HELD, BOOKED
    hold_id     text NOT NULL,
    holder_id   text NOT NULL,
    booking_id  text NOT NULL,
    at          timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, seat_id, version)
);

CREATE FUNCTION seat_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'seat_audit is append-only';
END
$$;
CREATE TRIGGER seat_audit_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON seat_audit
    FOR EACH STATEMENT EXECUTE FUNCTION seat_audit_append_only();
