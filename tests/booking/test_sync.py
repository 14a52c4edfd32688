"""The worker in this process against real Redis and Postgres: sync, audit, conflicts,
dead letters, trimming."""

import json

import asyncpg
from lml.inventory.v1 import inventory_pb2 as pb
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from booking.worker import OUTBOX_GROUP
from inventory import keys
from inventory.engine import Inventory
from tests.booking.helpers import (
    book,
    count,
    entries,
    hold,
    make_event,
    pairs,
    running_worker,
    seat_states,
    wait_for,
)

FAST = {"claim_idle_ms": 200, "discovery_interval_s": 0.05, "trim_interval_s": 0.1}


async def test_bookings_reach_postgres_once_with_their_seats(
    redis: Redis, inventory: Inventory, pg: asyncpg.Connection, pg_url: str
) -> None:
    seats = await make_event(inventory, "show-1", 400)
    booking_ids = await book(inventory, "show-1", pairs(seats[:300]))
    async with running_worker(redis, pg_url, **FAST):

        async def synced() -> bool:
            return await count(pg, "SELECT count(*) FROM bookings") == len(booking_ids)

        await wait_for(synced)
        more = await book(inventory, "show-1", pairs(seats[300:]))
        booking_ids += more

        async def all_synced() -> bool:
            return await count(pg, "SELECT count(*) FROM booked_seats") == len(seats)

        await wait_for(all_synced)

        async def trimmed() -> bool:
            return int(await redis.xlen(keys.event_keys("show-1").outbox)) <= 1

        await wait_for(trimmed)
    rows = await pg.fetch("SELECT booking_id, event_id, status FROM bookings")
    assert sorted(r["booking_id"] for r in rows) == sorted(booking_ids)
    assert {(r["event_id"], r["status"]) for r in rows} == {("show-1", "active")}
    redis_seats = await seat_states(redis, "show-1")
    pg_seats = await pg.fetch("SELECT seat_id, booking_id, state FROM booked_seats")
    assert {r["seat_id"]: f"B:{r['booking_id']}" for r in pg_seats} == redis_seats
    assert await count(pg, "SELECT count(*) FROM booking_conflicts") == 0
    assert await count(pg, "SELECT count(*) FROM event_seats WHERE event_id = 'show-1'") == 400


async def test_every_transition_lands_in_the_audit_log(
    redis: Redis, inventory: Inventory, pg: asyncpg.Connection, pg_url: str
) -> None:
    await make_event(inventory, "show-1", 10)
    first = (await hold(inventory, "show-1", [["s00001", "s00002"]]))[0]
    await inventory.release(pb.ReleaseRequest(event_id="show-1", hold_id=first, holder_id="h0"))
    [booking_id] = await book(inventory, "show-1", [["s00001"]])
    async with running_worker(redis, pg_url, **FAST):

        async def audited() -> bool:
            return await count(pg, "SELECT count(*) FROM seat_audit") == 6

        await wait_for(audited)
    history = await pg.fetch(
        "SELECT reason, status, booking_id FROM seat_audit WHERE event_id = 'show-1' "
        "AND seat_id = 's00001' ORDER BY version"
    )
    assert [(r["reason"], r["status"]) for r in history] == [
        ("held", "HELD"),
        ("released", "AVAILABLE"),
        ("held", "HELD"),
        ("confirmed", "BOOKED"),
    ]
    assert history[-1]["booking_id"] == booking_id
    try:
        await pg.execute("DELETE FROM seat_audit")
        raise AssertionError("seat_audit accepted a delete")
    except asyncpg.RaiseError as error:
        assert "append-only" in str(error)


async def test_a_double_booking_reaches_the_conflicts_table(
    redis: Redis, inventory: Inventory, pg: asyncpg.Connection, pg_url: str
) -> None:
    await make_event(inventory, "show-1", 10)
    [first] = await book(inventory, "show-1", [["s00001", "s00002"]])
    # Redis forgets the booking of s00001 (as a failover losing writes would), so it is sold again.
    await redis.hset(keys.event_keys("show-1").seats, "s00001", "A")
    [second] = await book(inventory, "show-1", [["s00001", "s00003"]])
    before = REGISTRY.get_sample_value("lml_booking_conflicts_total") or 0.0
    async with running_worker(redis, pg_url, **FAST):

        async def recorded() -> bool:
            return await count(pg, "SELECT count(*) FROM booking_conflicts") == 1

        await wait_for(recorded)
    conflict = await pg.fetchrow("SELECT * FROM booking_conflicts")
    assert conflict is not None
    assert (conflict["seat_id"], conflict["booking_id"], conflict["existing_booking_id"]) == (
        "s00001",
        second,
        first,
    )
    seats = await pg.fetch("SELECT booking_id, seat_id, state FROM booked_seats ORDER BY 1, 2")
    states = {(r["booking_id"], r["seat_id"]): r["state"] for r in seats}
    assert states == {
        (first, "s00001"): "active",
        (first, "s00002"): "active",
        (second, "s00001"): "conflict",
        (second, "s00003"): "active",
    }
    rows = await pg.fetch("SELECT booking_id, status FROM bookings")
    statuses = {r["booking_id"]: r["status"] for r in rows}
    assert statuses == {first: "active", second: "conflict"}
    assert (REGISTRY.get_sample_value("lml_booking_conflicts_total") or 0.0) == before + 1


async def test_a_bad_entry_is_dead_lettered_and_does_not_block_others(
    redis: Redis, inventory: Inventory, pg: asyncpg.Connection, pg_url: str
) -> None:
    await make_event(inventory, "show-1", 10)
    outbox = keys.event_keys("show-1").outbox
    bad_id = await redis.xadd(
        outbox, {"kind": "confirmed", "booking_id": "b-bad", "event_id": "show-1"}
    )
    [good] = await book(inventory, "show-1", [["s00001"]])
    async with running_worker(redis, pg_url, max_deliveries=2, **FAST):

        async def dead() -> bool:
            return await count(pg, "SELECT count(*) FROM dead_letters") == 1

        await wait_for(dead)
    letter = await pg.fetchrow("SELECT * FROM dead_letters")
    assert letter is not None
    assert letter["entry_id"] == bad_id
    assert letter["consumer_group"] == OUTBOX_GROUP
    assert letter["reason"] == "field 'hold_id' is missing"
    assert json.loads(letter["fields"])["booking_id"] == "b-bad"
    assert letter["deliveries"] == 2
    stream = await entries(redis, keys.dead_letter_key("show-1"))
    assert [fields["entry_id"] for _, fields in stream] == [bad_id]
    assert await redis.xpending(outbox, OUTBOX_GROUP) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }
    assert [r["booking_id"] for r in await pg.fetch("SELECT booking_id FROM bookings")] == [good]


async def test_a_redelivered_entry_changes_nothing(
    redis: Redis, inventory: Inventory, pg: asyncpg.Connection, pg_url: str
) -> None:
    await make_event(inventory, "show-1", 10)
    await book(inventory, "show-1", [["s00001", "s00002"]])
    outbox = keys.event_keys("show-1").outbox
    [(_, fields)] = await entries(redis, outbox)
    await redis.xadd(outbox, dict(fields))  # type: ignore[arg-type]  # a retried publish
    async with running_worker(redis, pg_url, **FAST):

        async def drained() -> bool:
            info = await redis.xinfo_groups(outbox)
            return bool(info) and info[0]["lag"] == 0 and info[0]["pending"] == 0

        await wait_for(drained)
    assert await count(pg, "SELECT count(*) FROM bookings") == 1
    assert await count(pg, "SELECT count(*) FROM booked_seats") == 2
    assert await count(pg, "SELECT count(*) FROM booking_conflicts") == 0


async def test_an_entry_postgres_refuses_holds_back_only_itself(
    redis: Redis, inventory: Inventory, pg: asyncpg.Connection, pg_url: str
) -> None:
    await make_event(inventory, "show-1", 10)
    [before] = await book(inventory, "show-1", [["s00001"]])
    outbox = keys.event_keys("show-1").outbox
    [(_, fields)] = await entries(redis, outbox)
    # Well formed, but its time is out of Postgres's range: the whole batch is refused at first.
    fields.update(booking_id="b-far-future", seat_ids='["s00009"]', confirmed_at=str(10**17))
    far_id = await redis.xadd(outbox, dict(fields))  # type: ignore[arg-type]
    [after] = await book(inventory, "show-1", [["s00002"]])
    async with running_worker(redis, pg_url, max_deliveries=1, **FAST):

        async def dead() -> bool:
            return await count(pg, "SELECT count(*) FROM dead_letters") == 1

        await wait_for(dead)
    letter = await pg.fetchrow("SELECT entry_id, reason FROM dead_letters")
    assert letter is not None
    assert letter["entry_id"] == far_id
    assert letter["reason"].startswith("postgres refused it: ")
    rows = await pg.fetch("SELECT booking_id FROM bookings")
    assert sorted(r["booking_id"] for r in rows) == sorted([before, after])
