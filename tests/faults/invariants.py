"""What must hold after any fault, once the worker has caught up."""

from collections.abc import Iterable
from typing import Any

import asyncpg
from redis.asyncio import Redis

from inventory import keys
from tests.booking.helpers import drained
from tests.faults.load import Told

__all__ = ["check", "drained"]


async def check(redis: Redis, pg: asyncpg.Connection, told: Told, event_ids: Iterable[str]) -> None:
    """No seat booked twice; every booking a client was told about is in Redis and in Postgres
    exactly once; Postgres has no booking Redis does not; no seat held by a hold that is gone;
    the audit table has a row for every change-log version, or the loss is reported."""
    sold: dict[tuple[str, str], str] = {}
    for booking_id, (event_id, seats) in told.bookings.items():
        for seat in seats:
            assert (event_id, seat) not in sold, f"seat {seat} of {event_id} booked twice"
            sold[(event_id, seat)] = booking_id
    for event_id in event_ids:
        event_keys = keys.event_keys(event_id)
        states: Any = await redis.hgetall(event_keys.seats)
        booked = {seat: value[2:] for seat, value in states.items() if value.startswith("B:")}
        told_here = {seat: b for (e, seat), b in sold.items() if e == event_id}
        assert {s: booked.get(s) for s in told_here} == told_here, "a told booking not in Redis"
        rows = await pg.fetch(
            "SELECT seat_id, booking_id FROM booked_seats WHERE event_id = $1 AND state = 'active'",
            event_id,
        )
        assert {r["seat_id"]: r["booking_id"] for r in rows} == booked
        counts = await pg.fetch(
            "SELECT booking_id, count(*) AS n FROM bookings WHERE event_id = $1 GROUP BY 1",
            event_id,
        )
        assert {r["booking_id"]: r["n"] for r in counts} == dict.fromkeys(set(booked.values()), 1)
        held = {value[2:] for value in states.values() if value.startswith("H:")}
        for hold_id in held:
            assert await redis.hexists(event_keys.holds, hold_id), f"seat held by gone {hold_id}"
        meta: Any = await redis.hmget(event_keys.meta, "version", "changelog_lost")
        version, lost = int(meta[0]), int(meta[1] or 0)
        audited = await pg.fetchval(
            "SELECT count(DISTINCT version) FROM seat_audit WHERE event_id = $1", event_id
        )
        assert audited + lost == version, (event_id, audited, lost, version)
    assert await pg.fetchval("SELECT count(*) FROM booking_conflicts") == 0
