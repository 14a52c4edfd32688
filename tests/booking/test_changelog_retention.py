"""The change log keeps what a consumer group has not read: trimmed only once every group has
acknowledged it, or beyond the retention, and then counted, logged and reported as lost."""

from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from booking.upkeep import ChangelogUpkeep
from booking.worker import AUDIT_GROUP
from inventory import keys
from inventory.engine import Inventory
from tests.booking.helpers import (
    book,
    count,
    drained,
    make_event,
    pairs,
    running_worker,
    wait_for,
)

FAST = {"claim_idle_ms": 200, "discovery_interval_s": 0.05, "trim_interval_s": 0.1}


async def _versions(redis: Redis, event_id: str) -> tuple[int, int]:
    meta: Any = await redis.hmget(keys.event_keys(event_id).meta, "version", "changelog_lost")
    return int(meta[0]), int(meta[1] or 0)


async def _audited(pg: asyncpg.Connection, event_id: str) -> int:
    return await count(
        pg, "SELECT count(DISTINCT version) FROM seat_audit WHERE event_id = $1", event_id
    )


async def test_unread_entries_are_kept_past_the_watch_window_and_lag_is_reported(
    redis: Redis, inventory: Inventory, pg: asyncpg.Connection, pg_url: str
) -> None:
    seats = await make_event(inventory, "show-1", 700)
    changes = keys.event_keys("show-1").changes
    # Watchers' window of 50 entries, so that a few hundred changes go past it.
    await redis.hset(keys.event_keys("show-1").meta, "changelog_max", 50)
    await book(inventory, "show-1", pairs(seats[:20]))
    async with running_worker(redis, pg_url, **FAST):
        await wait_for(lambda: drained(redis, ["show-1"]))
    # The worker is away: 300 changes, far past the window, none read by the audit group.
    await book(inventory, "show-1", pairs(seats[20:320]))
    version, lost = await _versions(redis, "show-1")
    assert (version, lost) == (320, 0)
    assert await redis.xlen(changes) >= 300
    await ChangelogUpkeep(redis).run({changes: "show-1"})
    lag = REGISTRY.get_sample_value("lml_consumer_group_lag_entries", {"group": AUDIT_GROUP})
    assert lag == 300

    async with running_worker(redis, pg_url, **FAST):
        await wait_for(lambda: drained(redis, ["show-1"]))

        async def acknowledged() -> bool:
            meta = keys.event_keys("show-1").meta
            return await redis.hget(meta, "changelog_acked") == "320"

        await wait_for(acknowledged)
        # Acknowledged now: the next changes trim the log back towards the window.
        await book(inventory, "show-1", pairs(seats[320:400]))
        await wait_for(lambda: drained(redis, ["show-1"]))
    assert await _audited(pg, "show-1") == 400
    assert await redis.xlen(changes) < 300
    assert (await _versions(redis, "show-1"))[1] == 0


async def test_entries_beyond_the_retention_are_trimmed_counted_and_reported(
    redis: Redis,
    inventory: Inventory,
    pg: asyncpg.Connection,
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seats = await make_event(inventory, "show-1", 700)
    changes = keys.event_keys("show-1").changes
    await redis.hset(keys.event_keys("show-1").meta, "changelog_max", 50)
    settings = {**FAST, "changelog_retention": 100}
    async with running_worker(redis, pg_url, **settings):
        await book(inventory, "show-1", pairs(seats[:20]))
        await wait_for(lambda: drained(redis, ["show-1"]))
    await book(inventory, "show-1", pairs(seats[20:420]))  # 400 changes unread, retention 100
    version, lost = await _versions(redis, "show-1")
    assert version == 420 and lost > 0
    assert await redis.xlen(changes) <= 100 + 100  # the retention, and its trim at 100 a call
    async with running_worker(redis, pg_url, **settings):
        await wait_for(lambda: drained(redis, ["show-1"]))

        def reported() -> bool:
            return REGISTRY.get_sample_value("lml_changelog_entries_lost") == lost

        await wait_for(_async(reported))
    assert f"change log of event show-1: {lost} entries trimmed beyond the retention" in caplog.text
    # Every version is audited or counted lost, none both.
    assert await _audited(pg, "show-1") + lost == version


def _async(check: Any) -> Any:
    async def wrapped() -> bool:
        return bool(check())

    return wrapped
