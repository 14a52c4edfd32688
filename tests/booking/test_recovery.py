"""Redis loses an event: `lml-worker rebuild` restores it from Postgres, `reconcile` checks."""

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from booking import migrations, recovery, store
from inventory import keys
from inventory.engine import Inventory
from inventory.local_servers import RedisServer
from inventory.watch import to_change
from tests.booking.helpers import (
    book,
    booked_in_redis,
    drained,
    hold,
    make_event,
    pairs,
    running_worker,
    seat_states,
    wait_for,
    worker_command,
)

FAST = {"claim_idle_ms": 200, "discovery_interval_s": 0.05, "trim_interval_s": 0.1}


def cli(redis_url: str | None, pg_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    urls = ["--postgres-url", pg_url] + (["--redis-url", redis_url] if redis_url else [])
    return subprocess.run(
        [*worker_command(), *args, *urls],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _synced_event(
    redis: Redis, inventory: Inventory, pg: asyncpg.Connection, pg_url: str
) -> dict[str, str]:
    """An event with 40 booked seats and 10 held, all synced; returns seat -> booking id."""
    seats = await make_event(inventory, "show-1", 100)
    await book(inventory, "show-1", pairs(seats[:40]))
    await hold(inventory, "show-1", pairs(seats[40:50]))
    async with running_worker(redis, pg_url, **FAST):
        await wait_for(lambda: drained(redis, ["show-1"]))
    assert int(await pg.fetchval("SELECT count(*) FROM seat_audit")) == 90
    return await booked_in_redis(redis, "show-1")


async def test_flushall_then_rebuild_books_the_seats_again_and_reconcile_is_clean(
    redis: Redis,
    redis_server: RedisServer,
    inventory: Inventory,
    pg: asyncpg.Connection,
    pg_url: str,
) -> None:
    booked = await _synced_event(redis, inventory, pg, pg_url)
    assert len(booked) == 40
    version_before = int(await redis.hget(keys.event_keys("show-1").meta, "version") or 0)
    clean = cli(redis_server.url, pg_url, "reconcile", "--event", "show-1")
    assert (clean.returncode, clean.stdout.splitlines()[-1]) == (0, "0 differences")

    await redis.flushall()
    lost = cli(redis_server.url, pg_url, "reconcile", "--event", "show-1")
    assert lost.returncode == 1
    assert "event show-1: not in Redis" in lost.stdout

    rebuilt = cli(redis_server.url, pg_url, "rebuild", "--event", "show-1")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "event show-1 recreated; 40 seats booked again" in rebuilt.stdout
    assert "every hold of this event is lost" in rebuilt.stdout
    states = await seat_states(redis, "show-1")
    assert len(states) == 100
    assert {s: v[2:] for s, v in states.items() if v != "A"} == booked
    version_after = int(await redis.hget(keys.event_keys("show-1").meta, "version") or 0)
    assert version_after > version_before  # versions (and audit rows) never repeat
    assert cli(redis_server.url, pg_url, "reconcile", "--event", "show-1").returncode == 0

    again = cli(redis_server.url, pg_url, "rebuild", "--event", "show-1")
    assert "was still in Redis; 0 seats booked again, 40 were already booked" in again.stdout

    # Watchers hear of the restoration as such.
    log: Any = await redis.xrange(keys.event_keys("show-1").changes)
    restored_changes = [to_change(entry_id, fields) for entry_id, fields in log]
    assert {c.reason for c in restored_changes} == {pb.CHANGE_REASON_RESTORED}
    assert sorted(s for c in restored_changes for s in c.seat_ids) == sorted(booked)

    # The rebuilt event is watched again, and its restoration is in the audit trail.
    async with running_worker(redis, pg_url, **FAST):
        await wait_for(lambda: drained(redis, ["show-1"]))
    restored = await pg.fetchval("SELECT count(*) FROM seat_audit WHERE reason = 'restored'")
    assert restored == 40
    seat = sorted(booked)[0]
    history = cli(None, pg_url, "history", "--event", "show-1", "--seat", seat)
    reasons = [line.split()[2] for line in history.stdout.splitlines()]
    assert reasons == ["held", "confirmed", "restored"]


async def test_reconcile_reports_a_seat_that_differs(
    redis: Redis,
    redis_server: RedisServer,
    inventory: Inventory,
    pg: asyncpg.Connection,
    pg_url: str,
) -> None:
    booked = await _synced_event(redis, inventory, pg, pg_url)
    seat = sorted(booked)[0]
    await redis.hset(keys.event_keys("show-1").seats, seat, "A")
    result = cli(redis_server.url, pg_url, "reconcile", "--event", "show-1")
    assert result.returncode == 1
    assert f"seat {seat}: booked by {booked[seat]} in Postgres, 'A' in Redis" in result.stdout
    assert result.stdout.splitlines()[-1] == "1 differences"


async def test_rebuild_of_an_unknown_event_is_refused(
    redis_server: RedisServer, pg_url: str
) -> None:
    result = cli(redis_server.url, pg_url, "rebuild", "--event", "nope")
    assert result.returncode == 1
    assert "event nope is not in Postgres" in result.stderr


async def test_migrations_apply_once(pg_url: str) -> None:
    assert await migrations.apply(pg_url) == []  # the template database has them all
    result = cli(None, pg_url, "migrate")
    assert result.stdout.strip() == "schema up to date"


def test_misnamed_or_duplicate_migrations_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0001_b.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match="used twice"):
        migrations.discover(tmp_path)
    (tmp_path / "0001_b.sql").unlink()
    (tmp_path / "2_c.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match=r"not named NNNN_name\.sql"):
        migrations.discover(tmp_path)


async def test_a_running_worker_carries_on_after_flushall_and_rebuild(
    redis: Redis, inventory: Inventory, pg: asyncpg.Connection, pg_url: str
) -> None:
    seats = await make_event(inventory, "show-1", 100)
    await book(inventory, "show-1", pairs(seats[:20]))
    async with running_worker(redis, pg_url, **FAST):

        async def synced(expected: int) -> bool:
            n = await pg.fetchval("SELECT count(*) FROM booked_seats WHERE state = 'active'")
            return int(n) == expected

        await wait_for(lambda: synced(20))
        await redis.flushall()
        await asyncio.sleep(0.3)  # the worker finds its groups gone meanwhile
        report = await recovery.rebuild(inventory, pg, "show-1")
        assert (report.created, report.restored) == (True, 20)
        await book(inventory, "show-1", pairs(seats[20:40]))
        await wait_for(lambda: synced(40))

        await wait_for(lambda: drained(redis, ["show-1"]))
    restored = await pg.fetchval("SELECT count(*) FROM seat_audit WHERE reason = 'restored'")
    assert restored == 20
    assert await booked_in_redis(redis, "show-1") == {
        r["seat_id"]: r["booking_id"] for r in await pg.fetch("SELECT * FROM booked_seats")
    }


async def test_rebuild_keeps_ranks_accessibility_and_sold_places(
    redis: Redis,
    redis_server: RedisServer,
    inventory: Inventory,
    pg: asyncpg.Connection,
    pg_url: str,
) -> None:
    request = pb.CreateEventRequest(
        event_id="gig-1",
        seats=[
            pb.Seat(seat_id="A1", section="s", row="A", number="1", rank=2, wheelchair=True),
            pb.Seat(seat_id="A2", section="s", row="A", number="2", rank=1, companion=True),
            pb.Seat(seat_id="A3", section="s", row="A", number="3", category="B"),
        ],
        areas=[pb.GeneralAdmissionArea(area_id="floor", capacity=6, category="GA")],
    )
    await inventory.create_event(request)
    wanted = pb.GeneralAdmission(area_id="floor", quantity=4)
    held = await inventory.hold(
        pb.HoldRequest(event_id="gig-1", holder_id="h", general_admission=wanted)
    )
    ref = {"event_id": "gig-1", "hold_id": held.hold.hold_id, "holder_id": "h"}
    await inventory.confirm(pb.ConfirmRequest(**ref))
    described = await inventory.get_event(pb.GetEventRequest(event_id="gig-1", include_seats=True))
    async with running_worker(redis, pg_url, **FAST):
        await wait_for(lambda: drained(redis, ["gig-1"]))
    assert int(await pg.fetchval("SELECT count(*) FROM booked_seats")) == 4

    await redis.flushall()
    rebuilt = cli(redis_server.url, pg_url, "rebuild", "--event", "gig-1")
    assert "4 seats booked again" in rebuilt.stdout, rebuilt.stdout + rebuilt.stderr
    again = await inventory.get_event(pb.GetEventRequest(event_id="gig-1", include_seats=True))
    assert list(again.seats) == list(described.seats)
    assert list(again.event.areas) == list(described.event.areas)
    snapshot = await inventory.availability(pb.GetAvailabilityRequest(event_id="gig-1"))
    assert [(a.area_id, a.available) for a in snapshot.areas] == [("floor", 2)]
    assert cli(redis_server.url, pg_url, "reconcile", "--event", "gig-1").returncode == 0


async def test_rebuild_leaves_a_booking_cancelled_in_redis_cancelled(
    redis: Redis, inventory: Inventory, pg: asyncpg.Connection, pg_url: str
) -> None:
    seats = await make_event(inventory, "show-1", 10)
    kept, cancelled = await book(inventory, "show-1", [seats[:2], seats[2:4]])
    async with running_worker(redis, pg_url, **FAST):

        async def synced() -> bool:
            return int(await pg.fetchval("SELECT count(*) FROM booked_seats")) == 4

        await wait_for(synced)
    # Cancelled while the worker is down: Postgres still holds the booking active.
    await inventory.cancel_booking(pb.CancelBookingRequest(event_id="show-1", booking_id=cancelled))
    report = await recovery.rebuild(inventory, pg, "show-1")
    assert (report.restored, report.already_booked, report.cancelled) == (0, 2, 2)
    states = await seat_states(redis, "show-1")
    assert [states[s] for s in seats[:4]] == [f"B:{kept}"] * 2 + ["A"] * 2

    # Redis lost the seats but kept the cancellation: the rebuild still leaves them available.
    await redis.delete(keys.event_keys("show-1").meta, keys.event_keys("show-1").seats)
    report = await recovery.rebuild(inventory, pg, "show-1")
    assert (report.created, report.restored, report.cancelled) == (True, 2, 2)
    async with running_worker(redis, pg_url, **FAST):

        async def cancel_synced() -> bool:
            n = await pg.fetchval("SELECT count(*) FROM booked_seats WHERE state = 'active'")
            return int(n) == 2

        await wait_for(cancel_synced)
    assert await booked_in_redis(redis, "show-1") == dict.fromkeys(seats[:2], kept)


async def test_versions_after_a_rebuild_are_above_any_a_watcher_saw(
    redis: Redis, inventory: Inventory, pg: asyncpg.Connection, pg_url: str
) -> None:
    seats = await make_event(inventory, "show-1", 100)
    await book(inventory, "show-1", pairs(seats[:10]))
    async with running_worker(redis, pg_url, **FAST):

        async def audited() -> bool:
            return int(await pg.fetchval("SELECT count(*) FROM seat_audit")) == 20

        await wait_for(audited)
    # Changes Postgres never hears of, but a watcher did: versions up to `seen`.
    await hold(inventory, "show-1", pairs(seats[10:50]))
    seen = int(await redis.hget(keys.event_keys("show-1").meta, "version") or 0)
    assert seen > await store.last_version(pg, "show-1")
    await redis.flushall()
    report = await recovery.rebuild(inventory, pg, "show-1")
    assert report.restored == 10
    log: Any = await redis.xrange(keys.event_keys("show-1").changes)
    assert all(int(entry_id.split("-")[1]) > seen for entry_id, _ in log)
