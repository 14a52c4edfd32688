"""What must hold after any fault: on Redis always, on the outbox while no worker consumed it,
on Postgres once the worker has caught up."""

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import asyncpg
from redis.asyncio import Redis

from inventory import keys
from tests.booking.helpers import drained
from tests.faults.load import Outcomes

__all__ = ["check_outbox", "check_postgres", "check_redis", "drained", "summary"]


def _told_seats(outcomes: Outcomes) -> dict[tuple[str, str], str]:
    """(event id, seat) -> the booking a client was told has it; no seat told twice."""
    sold: dict[tuple[str, str], str] = {}
    for booking_id, (event_id, seats) in outcomes.bookings.items():
        for seat in seats:
            assert (event_id, seat) not in sold, f"seat {seat} of {event_id} booked twice"
            sold[(event_id, seat)] = booking_id
    return sold


async def check_redis(redis: Redis, outcomes: Outcomes, event_ids: Iterable[str]) -> dict[str, int]:
    """No seat booked twice; every acknowledged booking on its seats; no seat held by a hold that
    is gone or no longer held; the change log gapless up to the event's version. Returns the
    seats held and the change-log versions, for the test's report."""
    sold = _told_seats(outcomes)
    held = versions = 0
    for event_id in event_ids:
        names = keys.event_keys(event_id)
        seats: Any = await redis.hgetall(names.seats)
        holds: Any = await redis.hgetall(names.holds)
        for (event, seat), booking_id in sold.items():
            if event == event_id:
                assert seats[seat] == f"B:{booking_id}", f"acknowledged booking {booking_id} lost"
        for seat, value in seats.items():
            if value.startswith("H:"):
                record = json.loads(holds.get(value[2:], "null"))
                assert record is not None and record["state"] == "held", f"{seat} held by gone hold"
                assert seat in record["seat_ids"]
                held += 1
        log: Any = await redis.xrange(names.changes)
        changes = [int(entry_id.split("-")[1]) for entry_id, _fields in log]
        assert changes, f"no change log for {event_id}"
        assert changes == list(range(changes[0], changes[0] + len(changes))), "change-log gap"
        version = int(await redis.hget(names.meta, "version") or 0)
        assert version == changes[-1], f"version {version} is not the log's last {changes[-1]}"
        versions += len(changes)
    return {"held": held, "versions": versions}


async def check_outbox(redis: Redis, outcomes: Outcomes, event_id: str) -> int:
    """With no worker consuming the outbox, and no cancellation: every booking recorded once,
    every acknowledged one among them, no seat in two records, the seats booked in Redis exactly
    those of the records. Returns the number of bookings recorded."""
    names = keys.event_keys(event_id)
    outbox: Any = await redis.xrange(names.outbox)
    seats: Any = await redis.hgetall(names.seats)
    confirmed = [fields for _id, fields in outbox if fields["kind"] == "confirmed"]
    records = Counter(entry["booking_id"] for entry in confirmed)
    assert all(count == 1 for count in records.values()), "a booking recorded twice"
    owner: dict[str, str] = {}
    for entry in confirmed:  # no cancellations here: a seat in two records is booked twice
        for seat in json.loads(entry["seat_ids"]):
            assert seat not in owner, f"seat {seat} booked twice"
            owner[seat] = entry["booking_id"]
    for booking_id, (event, _seats) in outcomes.bookings.items():
        if event == event_id:
            assert records[booking_id] == 1, f"acknowledged booking {booking_id} lost"
    booked = {seat: value[2:] for seat, value in seats.items() if value.startswith("B:")}
    assert booked == owner, "a seat booked without its record, or under another booking"
    return len(records)


async def check_postgres(redis: Redis, pg: asyncpg.Connection, event_ids: Iterable[str]) -> None:
    """Once the worker caught up (and after `check_redis`, which finds every acknowledged
    booking in Redis): Postgres has exactly the bookings Redis has, each once, on the same seats;
    the audit table has a row for every change-log version, or the loss is reported; no booking
    conflict."""
    for event_id in event_ids:
        names = keys.event_keys(event_id)
        states: Any = await redis.hgetall(names.seats)
        booked = {seat: value[2:] for seat, value in states.items() if value.startswith("B:")}
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
        meta: Any = await redis.hmget(names.meta, "version", "changelog_lost")
        version, lost = int(meta[0]), int(meta[1] or 0)
        audited = await pg.fetchval(
            "SELECT count(DISTINCT version) FROM seat_audit WHERE event_id = $1", event_id
        )
        assert audited + lost == version, (event_id, audited, lost, version)
    assert await pg.fetchval("SELECT count(*) FROM booking_conflicts") == 0


def summary(fault: str, outcomes: Outcomes, counts: dict[str, int]) -> str:
    """One line for the log of a run (pytest -s): what the clients saw, what Redis holds."""
    codes = ", ".join(f"{code} {n}" for code, n in sorted(outcomes.codes().items()))
    return (
        f"{fault}: calls {codes}; acknowledged bookings {len(outcomes.bookings)}, recorded "
        f"{counts.get('bookings', '(synced)')}; seats held {counts['held']}; "
        f"change-log versions {counts['versions']}"
    )
