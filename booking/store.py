"""The Postgres side: every statement the worker, recovery and history run.

Writes are set-based (one statement per table per batch, arrays passed through unnest), so a
batch of a thousand bookings costs a handful of round trips.
"""

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from lml.inventory.v1 import inventory_pb2 as pb

from booking.records import BookingRecord, CancelRecord, Entry, OutboxRecord, SeatChange

# What the functions below run on: a plain connection or one borrowed from a pool.
Conn = asyncpg.Connection | PoolConnectionProxy


@dataclass
class OutboxResult:
    """What one outbox batch did."""

    inserted: list[BookingRecord] = field(default_factory=list)
    # (booking id, seat id, booking id that keeps the seat)
    conflicts: list[tuple[str, str, str]] = field(default_factory=list)
    cancelled: int = 0
    unknown_cancels: list[CancelRecord] = field(default_factory=list)


async def apply_outbox(conn: Conn, records: Sequence[OutboxRecord]) -> OutboxResult:
    """Applies records in stream order (a cancel and a new booking of the same seat may follow
    each other), in the caller's transaction."""
    result = OutboxResult()
    for is_booking, run in itertools.groupby(records, key=lambda r: isinstance(r, BookingRecord)):
        if is_booking:
            await _insert_bookings(conn, [r for r in run if isinstance(r, BookingRecord)], result)
        else:
            await _cancel_bookings(conn, [r for r in run if isinstance(r, CancelRecord)], result)
    return result


async def _insert_bookings(conn: Conn, bookings: list[BookingRecord], result: OutboxResult) -> None:
    rows = await conn.fetch(
        """INSERT INTO bookings (booking_id, event_id, hold_id, holder_id, payment_ref,
                                 request_id, confirmed_at, version, outbox_id, synced_at)
           SELECT b, e, h, hr, p, r, to_timestamp(c / 1000.0), v, o, clock_timestamp()
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::int8[], $8::int8[], $9::text[]) AS x(b, e, h, hr, p, r, c, v, o)
           ON CONFLICT (booking_id) DO NOTHING
           RETURNING booking_id""",
        [b.booking_id for b in bookings],
        [b.event_id for b in bookings],
        [b.hold_id for b in bookings],
        [b.holder_id for b in bookings],
        [b.payment_ref for b in bookings],
        [b.request_id for b in bookings],
        [b.confirmed_at_ms for b in bookings],
        [b.version for b in bookings],
        [b.entry_id for b in bookings],
    )
    new_ids = {row["booking_id"] for row in rows}
    # A booking id twice in one batch (a redelivered entry) is inserted once.
    new = list({b.booking_id: b for b in bookings if b.booking_id in new_ids}.values())
    result.inserted += new
    wanted = [(b.booking_id, b.event_id, seat, b.entry_id) for b in new for seat in b.seat_ids]
    if not wanted:
        return
    taken = await conn.fetch(
        """INSERT INTO booked_seats (booking_id, event_id, seat_id)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
           ON CONFLICT (event_id, seat_id) WHERE state = 'active' DO NOTHING
           RETURNING booking_id, seat_id""",
        [w[0] for w in wanted],
        [w[1] for w in wanted],
        [w[2] for w in wanted],
    )
    got = {(row["booking_id"], row["seat_id"]) for row in taken}
    lost = [w for w in wanted if (w[0], w[2]) not in got]
    if lost:
        await _record_conflicts(conn, lost, result)


async def _record_conflicts(
    conn: Conn, lost: list[tuple[str, str, str, str]], result: OutboxResult
) -> None:
    """Seats Redis booked twice: kept on the first booking, the second recorded, never dropped."""
    columns = ([w[0] for w in lost], [w[1] for w in lost], [w[2] for w in lost])
    await conn.execute(
        """INSERT INTO booked_seats (booking_id, event_id, seat_id, state)
           SELECT b, e, s, 'conflict'
           FROM unnest($1::text[], $2::text[], $3::text[]) AS x(b, e, s)""",
        *columns,
    )
    rows = await conn.fetch(
        """INSERT INTO booking_conflicts (event_id, seat_id, booking_id, existing_booking_id,
                                          outbox_id)
           SELECT x.e, x.s, x.b, a.booking_id, x.o
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS x(b, e, s, o)
           JOIN booked_seats a ON a.event_id = x.e AND a.seat_id = x.s AND a.state = 'active'
           ON CONFLICT DO NOTHING
           RETURNING booking_id, seat_id, existing_booking_id""",
        *columns,
        [w[3] for w in lost],
    )
    await conn.execute(
        "UPDATE bookings SET status = 'conflict' WHERE booking_id = ANY($1::text[])",
        list({w[0] for w in lost}),
    )
    result.conflicts += [(r["booking_id"], r["seat_id"], r["existing_booking_id"]) for r in rows]


async def _cancel_bookings(conn: Conn, cancels: list[CancelRecord], result: OutboxResult) -> None:
    ids = [c.booking_id for c in cancels]
    rows = await conn.fetch(
        """UPDATE bookings b SET status = 'cancelled', cancelled_at = to_timestamp(x.t / 1000.0),
                                 cancel_reason = x.r
           FROM unnest($1::text[], $2::int8[], $3::text[]) AS x(id, t, r)
           WHERE b.booking_id = x.id AND b.status <> 'cancelled'
           RETURNING b.booking_id""",
        ids,
        [c.cancelled_at_ms for c in cancels],
        [c.reason for c in cancels],
    )
    await conn.execute(
        """UPDATE booked_seats SET state = 'cancelled'
           WHERE booking_id = ANY($1::text[]) AND state = 'active'""",
        ids,
    )
    known = await conn.fetch("SELECT booking_id FROM bookings WHERE booking_id = ANY($1)", ids)
    known_ids = {row["booking_id"] for row in known}
    result.cancelled += len(rows)
    result.unknown_cancels += [c for c in cancels if c.booking_id not in known_ids]


async def insert_changes(conn: Conn, changes: Sequence[SeatChange]) -> int:
    """Appends audit rows; a redelivered change is already there and is skipped."""
    if not changes:
        return 0
    rows = await conn.fetch(
        """INSERT INTO seat_audit (event_id, seat_id, version, reason, status, hold_id,
                                   holder_id, booking_id, at)
           SELECT e, s, v, r, st, h, by, b, to_timestamp(t / 1000.0)
           FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[],
                       $7::text[], $8::text[], $9::int8[]) AS x(e, s, v, r, st, h, by, b, t)
           ON CONFLICT DO NOTHING
           RETURNING 1""",
        [c.event_id for c in changes],
        [c.seat_id for c in changes],
        [c.version for c in changes],
        [c.reason for c in changes],
        [c.status for c in changes],
        [c.hold_id for c in changes],
        [c.holder_id for c in changes],
        [c.booking_id for c in changes],
        [c.at_ms for c in changes],
    )
    return len(rows)


async def insert_dead_letters(
    conn: Conn, group: str, letters: Sequence[tuple[Entry, int, str]]
) -> None:
    """Records entries given up on: (entry, deliveries, reason)."""
    await conn.executemany(
        """INSERT INTO dead_letters (stream, consumer_group, entry_id, fields, deliveries, reason)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6)
           ON CONFLICT DO NOTHING""",
        [
            (entry.stream, group, entry.entry_id, json.dumps(entry.fields), deliveries, reason)
            for entry, deliveries, reason in letters
        ],
    )


async def dead_letters(
    conn: Conn, streams: Sequence[str] | None, ids: Sequence[int], replayed: bool
) -> list[asyncpg.Record]:
    """Dead letters, oldest first: of these streams (None: all), these ids (empty: all), and
    with `replayed` those already replayed too."""
    return await conn.fetch(
        """SELECT id, stream, consumer_group, entry_id, fields, deliveries, reason, created_at,
                  replayed_at
           FROM dead_letters
           WHERE ($1::text[] IS NULL OR stream = ANY($1))
             AND (cardinality($2::int8[]) = 0 OR id = ANY($2))
             AND ($3 OR replayed_at IS NULL)
           ORDER BY id""",
        streams,
        list(ids),
        replayed,
    )


async def mark_replayed(conn: Conn, ids: Sequence[int]) -> None:
    await conn.execute(
        "UPDATE dead_letters SET replayed_at = now() WHERE id = ANY($1::int8[])", list(ids)
    )


async def note_refusal(conn: Conn, letter_id: int, reason: str) -> None:
    await conn.execute("UPDATE dead_letters SET reason = $2 WHERE id = $1", letter_id, reason)


# -- event definitions ------------------------------------------------------------------------


async def has_event(conn: Conn, event_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM events WHERE event_id = $1", event_id))


async def save_event(conn: Conn, described: pb.GetEventResponse) -> None:
    """Keeps an event's definition (limits and seats) so that `rebuild` can recreate it."""
    event, limits = described.event, described.event.limits
    async with conn.transaction():
        inserted = await conn.fetchval(
            """INSERT INTO events (event_id, max_seats_per_hold, max_seats_per_holder,
                                   default_ttl_ms, max_ttl_ms, max_lifetime_ms, seat_count,
                                   created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8 / 1000.0))
               ON CONFLICT DO NOTHING
               RETURNING 1""",
            event.event_id,
            limits.max_seats_per_hold,
            limits.max_seats_per_holder,
            limits.default_ttl.ToMilliseconds(),
            limits.max_ttl.ToMilliseconds(),
            limits.max_hold_lifetime.ToMilliseconds(),
            event.seat_count,
            event.created_at.ToMilliseconds(),
        )
        if not inserted:
            return
        seats = described.seats
        await conn.copy_records_to_table(
            "event_seats",
            records=[
                (
                    event.event_id,
                    seat.seat_id,
                    position,
                    seat.section,
                    seat.row,
                    seat.number,
                    seat.category if seat.HasField("category") else None,
                    seat.rank if seat.HasField("rank") else None,
                    seat.wheelchair,
                    seat.companion,
                )
                for position, seat in enumerate(seats)
            ],
            columns=[
                "event_id",
                "seat_id",
                "position",
                "section",
                "row",
                "number",
                "category",
                "rank",
                "wheelchair",
                "companion",
            ],
        )
        await conn.executemany(
            "INSERT INTO event_areas (event_id, area_id, position, capacity, category)"
            " VALUES ($1, $2, $3, $4, $5)",
            [
                (
                    event.event_id,
                    area.area_id,
                    position,
                    area.capacity,
                    area.category if area.HasField("category") else None,
                )
                for position, area in enumerate(event.areas)
            ],
        )


async def load_event(conn: Conn, event_id: str) -> pb.CreateEventRequest | None:
    """The CreateEvent request that made the event, as saved by save_event."""
    row = await conn.fetchrow("SELECT * FROM events WHERE event_id = $1", event_id)
    if row is None:
        return None
    request = pb.CreateEventRequest(event_id=event_id)
    limits = request.limits
    limits.max_seats_per_hold = row["max_seats_per_hold"]
    limits.max_seats_per_holder = row["max_seats_per_holder"]
    limits.default_ttl.FromMilliseconds(row["default_ttl_ms"])
    limits.max_ttl.FromMilliseconds(row["max_ttl_ms"])
    limits.max_hold_lifetime.FromMilliseconds(row["max_lifetime_ms"])
    seats = await conn.fetch(
        "SELECT * FROM event_seats WHERE event_id = $1 ORDER BY position", event_id
    )
    for seat in seats:
        request.seats.add(
            seat_id=seat["seat_id"],
            section=seat["section"],
            row=seat["row"],
            number=seat["number"],
            category=seat["category"],
            rank=seat["rank"],
            wheelchair=seat["wheelchair"],
            companion=seat["companion"],
        )
    areas = await conn.fetch(
        "SELECT * FROM event_areas WHERE event_id = $1 ORDER BY position", event_id
    )
    for area in areas:
        request.areas.add(
            area_id=area["area_id"], capacity=area["capacity"], category=area["category"]
        )
    return request


async def active_seats(conn: Conn, event_id: str) -> dict[str, str]:
    """seat id -> booking id of every seat booked (and not cancelled) in Postgres."""
    rows = await conn.fetch(
        "SELECT seat_id, booking_id FROM booked_seats WHERE event_id = $1 AND state = 'active'",
        event_id,
    )
    return {row["seat_id"]: row["booking_id"] for row in rows}


async def last_version(conn: Conn, event_id: str) -> int:
    """The highest change-log version Postgres has seen for the event."""
    value = await conn.fetchval(
        """SELECT greatest((SELECT max(version) FROM bookings WHERE event_id = $1),
                           (SELECT max(version) FROM seat_audit WHERE event_id = $1))""",
        event_id,
    )
    return int(value or 0)


async def seat_history(conn: Conn, event_id: str, seat_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT version, at, reason, status, hold_id, holder_id, booking_id
           FROM seat_audit WHERE event_id = $1 AND seat_id = $2 ORDER BY version""",
        event_id,
        seat_id,
    )
