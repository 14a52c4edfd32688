"""The booking worker over a Redis past its maxmemory (policy noeviction): Redis refuses its
writes that add data (the change log's trim fields, joining a stream's group, a dead letter's
copy); the worker goes on syncing bookings and transitions and trimming the outboxes, says so
once, not per event and round, and catches up on what was refused once memory is back."""

import logging
from typing import Any

import asyncpg
import pytest
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from booking.worker import OUTBOX_GROUP
from inventory import keys
from inventory.engine import Inventory
from tests.booking.helpers import (
    book,
    booked_in_redis,
    confirm,
    count,
    drained,
    hold,
    make_event,
    pairs,
    running_worker,
    wait_for,
)
from tests.redis_memory import fill

FAST = {"claim_idle_ms": 200, "discovery_interval_s": 0.05, "trim_interval_s": 0.05}


@pytest.fixture
def redis(noeviction_redis: Redis) -> Redis:
    return noeviction_redis


async def _acked(redis: Redis, event_id: str) -> tuple[int, int]:
    """The event's version and the change log's `changelog_acked` mark."""
    meta: Any = await redis.hmget(keys.event_keys(event_id).meta, "version", "changelog_acked")
    return int(meta[0]), int(meta[1])


async def _synced(pg: asyncpg.Connection, redis: Redis, event_id: str) -> bool:
    """Every booked seat of the event in Redis is in Postgres, with its booking, once; every
    version of its change log is in the audit log, once."""
    in_redis = await booked_in_redis(redis, event_id)
    rows = await pg.fetch(
        "SELECT seat_id, booking_id FROM booked_seats WHERE event_id = $1", event_id
    )
    audit = await pg.fetchrow(
        "SELECT count(DISTINCT version) AS versions, count(*) FILTER (WHERE reason = 'confirmed')"
        " AS confirmed, count(DISTINCT (seat_id, version)) AS distinct_rows, count(*) AS all_rows"
        " FROM seat_audit WHERE event_id = $1",
        event_id,
    )
    assert audit is not None
    assert len(rows) == len({r["seat_id"] for r in rows})  # never a seat twice
    version, _ = await _acked(redis, event_id)
    assert audit["distinct_rows"] == audit["all_rows"]  # never a transition twice
    return (
        {r["seat_id"]: r["booking_id"] for r in rows} == in_redis
        and audit["versions"] == version
        and audit["confirmed"] == len(in_redis)
    )


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """The worker's lines about Redis's memory limit at `level`."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and "maxmemory" in r.getMessage()
    ]


async def test_over_maxmemory_the_worker_syncs_trims_and_catches_up_after(
    redis: Redis,
    inventory: Inventory,
    pg: asyncpg.Connection,
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    seats = await make_event(inventory, "show", 400)
    await book(inventory, "show", pairs(seats[:40]))
    async with running_worker(redis, pg_url, **FAST):
        await wait_for(lambda: drained(redis, ["show"]))
    # Holds to confirm once Redis is full (confirm runs then: the payment is taken), and an
    # event created and sold while no worker ran: its streams have no consumer group yet.
    while_full = [await hold(inventory, "show", pairs(seats[n : n + 40])) for n in (40, 80)]
    late = await make_event(inventory, "late", 40)
    await book(inventory, "late", pairs(late[:20]))
    await fill(redis)

    await confirm(inventory, "show", while_full[0])
    # A worker (re)started while Redis is full: it cannot create the late event's groups, and
    # the change log's trim fields are refused at every upkeep round.
    async with running_worker(redis, pg_url, **FAST) as worker:
        await wait_for(lambda: _synced(pg, redis, "show"))
        await confirm(inventory, "show", while_full[1])
        await wait_for(lambda: _synced(pg, redis, "show"))

        async def outbox_trimmed() -> bool:
            return int(await redis.xlen(keys.event_keys("show").outbox)) <= 1

        await wait_for(outbox_trimmed)
        version, acked = await _acked(redis, "show")
        assert acked < version  # the mark could not be written
        assert not worker.done()
        assert await count(pg, "SELECT count(*) FROM bookings WHERE event_id = 'late'") == 0
        # Many upkeep and discovery rounds, each refused: one line per kind of write (the
        # marks; the late event's groups, of the outbox and the change log).
        refusals = _lines(caplog, logging.WARNING)
        assert len(refusals) == 3, refusals
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

        await redis.config_set("maxmemory", 0)
        await wait_for(lambda: _synced(pg, redis, "late"))
        await wait_for(lambda: drained(redis, ["show", "late"]))

        async def marked() -> bool:
            return all(v == a for v, a in [await _acked(redis, e) for e in ("show", "late")])

        await wait_for(marked)
        assert not worker.done()
        assert len(_lines(caplog, logging.INFO)) == 3  # each refusal's end
        assert _lines(caplog, logging.WARNING) == refusals
    assert await _synced(pg, redis, "show") and await _synced(pg, redis, "late")
    assert await count(pg, "SELECT count(*) FROM bookings") == 20 + 20 + 20 + 10


async def test_over_maxmemory_a_dead_letter_waits_for_its_copy_in_redis(
    redis: Redis,
    inventory: Inventory,
    pg: asyncpg.Connection,
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await make_event(inventory, "show", 10)
    holds = [
        await inventory.hold(pb.HoldRequest(event_id="show", holder_id="ann", seat_ids=[seat]))
        for seat in ("s00001", "s00002", "s00003")
    ]
    async with running_worker(redis, pg_url, **FAST):  # creates the groups
        await wait_for(lambda: drained(redis, ["show"]))
    # An operator's rule that refuses one booking for its data (SQLSTATE 23514).
    await pg.execute(
        "ALTER TABLE bookings ADD CONSTRAINT no_refused CHECK (payment_ref <> 'pi_refused')"
    )
    outbox = keys.event_keys("show").outbox
    await fill(redis)
    for held, payment in zip(holds[:2], ("pi_1", "pi_refused"), strict=True):
        confirm = pb.ConfirmRequest(
            event_id="show", hold_id=held.hold.hold_id, holder_id="ann", payment_ref=payment
        )
        await inventory.confirm(confirm)
    async with running_worker(redis, pg_url, max_deliveries=1, **FAST) as worker:

        async def dead_lettered_again() -> bool:
            pending = await redis.xpending_range(outbox, OUTBOX_GROUP, "-", "+", 10)
            return len(pending) == 1 and int(pending[0]["times_delivered"]) >= 4

        await wait_for(dead_lettered_again)  # at each claim: its copy refused, kept pending
        # The outbox is read on: a booking made meanwhile is synced.
        last = pb.ConfirmRequest(event_id="show", hold_id=holds[2].hold.hold_id, holder_id="ann")
        await inventory.confirm(last)

        async def synced() -> bool:
            return await count(pg, "SELECT count(*) FROM bookings") == 2

        await wait_for(synced)
        assert await count(pg, "SELECT count(*) FROM dead_letters") == 1
        assert not await redis.exists(keys.dead_letter_key("show"))
        assert len(_lines(caplog, logging.WARNING)) == 2  # the copies', the marks'
        assert not worker.done()

        await redis.config_set("maxmemory", 0)
        await wait_for(lambda: drained(redis, ["show"]))
        assert await redis.xlen(keys.dead_letter_key("show")) == 1
        assert not worker.done()
    assert await count(pg, "SELECT count(*) FROM dead_letters") == 1
