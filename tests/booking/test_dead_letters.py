"""Only bad data is dead-lettered, and `lml-worker dead-letters list|replay` brings it back once
its cause is fixed, exactly once however often it is replayed."""

import asyncio
import subprocess

import asyncpg
import pytest
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from booking.worker import OUTBOX_GROUP
from inventory.engine import Inventory
from tests.booking.helpers import (
    book,
    count,
    make_event,
    pairs,
    running_worker,
    wait_for,
    worker_command,
)

FAST = {"claim_idle_ms": 200, "discovery_interval_s": 0.05, "trim_interval_s": 0.1}


def dead_letters(pg_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*worker_command(), "dead-letters", *args, "--postgres-url", pg_url],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _terminate_others(pg: asyncpg.Connection) -> None:
    await pg.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )


async def test_a_read_only_postgres_is_waited_out_never_dead_lettered(
    redis: Redis,
    inventory: Inventory,
    pg: asyncpg.Connection,
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seats = await make_event(inventory, "show-1", 200)
    await book(inventory, "show-1", pairs(seats[:20]))
    database = await pg.fetchval("SELECT current_database()")
    async with running_worker(redis, pg_url, max_deliveries=1, **FAST):

        async def synced(expected: int) -> bool:
            return await count(pg, "SELECT count(*) FROM bookings") == expected

        await wait_for(lambda: synced(10))
        # As during a failover: every new session is read-only (SQLSTATE 25006 on write).
        await pg.execute(f"ALTER DATABASE {database} SET default_transaction_read_only = on")
        await _terminate_others(pg)
        await book(inventory, "show-1", pairs(seats[20:60]))

        async def retried() -> bool:
            dead = await count(pg, "SELECT count(*) FROM dead_letters")
            return dead > 0 or "booking-sync write failed (attempt 5)" in caplog.text

        await wait_for(retried)  # retried in place, well past --max-deliveries 1
        assert await count(pg, "SELECT count(*) FROM dead_letters") == 0
        assert await count(pg, "SELECT count(*) FROM bookings") == 10
        await pg.execute(f"ALTER DATABASE {database} RESET default_transaction_read_only")
        await _terminate_others(pg)
        await wait_for(lambda: synced(30))
    assert await count(pg, "SELECT count(*) FROM dead_letters") == 0
    assert await count(pg, "SELECT count(*) FROM booked_seats") == 60


async def test_dead_letters_are_listed_and_replayed_once_after_the_fix(
    redis: Redis, inventory: Inventory, pg: asyncpg.Connection, pg_url: str
) -> None:
    await make_event(inventory, "show-1", 10)
    booking_ids: list[str] = []
    for seat, payment in (("s00001", "pi_1"), ("s00002", "pi_refused"), ("s00003", "pi_3")):
        hold = pb.HoldRequest(event_id="show-1", holder_id="ann", seat_ids=[seat])
        hold_id = (await inventory.hold(hold)).hold.hold_id
        confirm = pb.ConfirmRequest(
            event_id="show-1", hold_id=hold_id, holder_id="ann", payment_ref=payment
        )
        booking_ids.append((await inventory.confirm(confirm)).booking.booking_id)
    # An operator's rule that refuses one booking for its data (SQLSTATE 23514).
    await pg.execute(
        "ALTER TABLE bookings ADD CONSTRAINT no_refused CHECK (payment_ref <> 'pi_refused')"
    )
    async with running_worker(redis, pg_url, max_deliveries=1, **FAST):

        async def dead() -> bool:
            return await count(pg, "SELECT count(*) FROM dead_letters") == 1

        await wait_for(dead)
        await wait_for(lambda: _audited(pg, 6))
    rows = await pg.fetch("SELECT booking_id FROM bookings")
    assert sorted(r["booking_id"] for r in rows) == sorted([booking_ids[0], booking_ids[2]])

    listed = dead_letters(pg_url, "list", "--event", "show-1")
    assert listed.returncode == 0, listed.stderr
    [line, total] = listed.stdout.splitlines()
    assert f" {OUTBOX_GROUP} event=show-1 " in line and " waiting: " in line
    assert "no_refused" in line and "23514" in line
    assert total == "1 dead letters"

    still = dead_letters(pg_url, "replay")
    assert still.returncode == 1
    assert "0 replayed, 1 still refused" in still.stdout
    assert "no_refused" in still.stderr

    await pg.execute("ALTER TABLE bookings DROP CONSTRAINT no_refused")
    replayed = dead_letters(pg_url, "replay", "--event", "show-1")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == "1 replayed, 0 still refused"
    assert dead_letters(pg_url, "replay").stdout.strip() == "0 replayed, 0 still refused"
    again = dead_letters(pg_url, "replay", "--again")
    assert again.stdout.strip() == "1 replayed, 0 still refused"

    counts = await pg.fetch("SELECT booking_id, count(*) AS n FROM bookings GROUP BY 1")
    assert {r["booking_id"]: r["n"] for r in counts} == dict.fromkeys(booking_ids, 1)
    seats = await pg.fetch("SELECT seat_id, booking_id FROM booked_seats WHERE state = 'active'")
    assert {r["seat_id"]: r["booking_id"] for r in seats} == dict(
        zip(["s00001", "s00002", "s00003"], booking_ids, strict=True)
    )
    assert dead_letters(pg_url, "list").stdout.strip() == "0 dead letters"
    assert " replayed " in dead_letters(pg_url, "list", "--all").stdout


async def _audited(pg: asyncpg.Connection, rows: int) -> bool:
    await asyncio.sleep(0)
    return await count(pg, "SELECT count(*) FROM seat_audit") == rows
