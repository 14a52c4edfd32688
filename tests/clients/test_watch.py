"""WatchEvent and InventoryClient.watch against a real server and Redis: nothing missed or
repeated under concurrent changes, OUT_OF_RANGE and re-snapshot, expiries, one reader per event."""

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import pytest
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from clients import (
    ChangesOutOfRange,
    EventNotFound,
    HoldConfirmed,
    HoldExpired,
    InventoryClient,
    SeatsUnavailable,
    Snapshot,
    SyncInventoryClient,
    Update,
)
from inventory import keys, watch
from tests.clients.conftest import SEATS, Service, seats, until

State = dict[str, "pb.SeatStatus.ValueType"]


def apply(state: State, update: Update) -> int:
    """Folds an update into `state`; returns the version it brings the state to."""
    if isinstance(update, Snapshot):
        state.clear()
        state.update(update.seats)
    else:
        state.update(dict.fromkeys(update.seat_ids, update.status))
    return update.version


async def follow_until(updates: AsyncIterator[Update], state: State, version: int) -> list[Update]:
    seen: list[Update] = []
    async with asyncio.timeout(20):
        async for update in updates:
            seen.append(update)
            if apply(state, update) >= version:
                return seen
    raise AssertionError("the watch ended")


async def churn(client: InventoryClient, holder: str, rounds: int) -> None:
    """Holds random seats, then releases, confirms or lets the hold expire."""
    rng = random.Random(holder)
    for _ in range(rounds):
        try:
            ttl = rng.choice([0.05, 0.3])
            hold = await client.hold("show", holder, rng.sample(SEATS, 2), ttl=ttl)
            action = rng.random()
            if action < 0.5:
                await client.release("show", hold.hold_id, holder)
            elif action < 0.6:
                await client.confirm("show", hold.hold_id, holder)
            else:
                await client.extend("show", hold.hold_id, holder, ttl=0.1)
        except (SeatsUnavailable, HoldExpired, HoldConfirmed):
            pass


async def test_snapshot_then_watch_misses_nothing_under_concurrent_changes(
    client: InventoryClient,
) -> None:
    await client.create_event("show", seats())
    early: State = {}
    early_updates = client.watch("show")
    first = await anext(early_updates)
    assert isinstance(first, Snapshot) and first.version == 0
    apply(early, first)
    workers = [asyncio.create_task(churn(client, f"buyer{n}", 25)) for n in range(4)]
    await asyncio.sleep(0.2)
    late: State = {}  # joins while changes are flowing
    late_updates = client.watch("show")
    late_seen = await follow_until(late_updates, late, 0)
    await asyncio.gather(*workers)
    await asyncio.sleep(1.0)  # every hold left (ttl <= 0.3 s) has expired: the log is still
    final = await client.availability("show")
    expected = {seat.seat_id: seat.status for seat in final.seats}
    early_seen = await follow_until(early_updates, early, final.version)
    late_seen += await follow_until(late_updates, late, final.version)
    assert early == expected
    assert late == expected
    for seen in (early_seen, late_seen):
        versions = [update.version for update in seen if not isinstance(update, Snapshot)]
        assert versions == list(range(versions[0], versions[0] + len(versions)))  # no gap, no twice
    assert final.version > 40


async def test_out_of_range_then_watch_resnapshots(client: InventoryClient, redis: Redis) -> None:
    await client.create_event("show", seats())
    for seat in SEATS[:10]:
        await client.hold("show", "buyer", [seat])
    await redis.xtrim(keys.event_keys("show").changes, maxlen=3, approximate=False)  # 8..10

    with pytest.raises(ChangesOutOfRange):
        async for _ in client.watch_changes("show", 6):
            pass
    async with contextlib.aclosing(client.watch_changes("show", 7)) as resumed:
        caught_up = await anext(resumed)
    assert [change.version for change in caught_up.changes] == [8, 9, 10]

    updates = client.watch("show", from_version=2)
    snapshot = await anext(updates)
    assert isinstance(snapshot, Snapshot) and snapshot.version == 10
    assert sum(s == pb.SEAT_STATUS_HELD for s in snapshot.seats.values()) == 10
    await client.hold("show", "buyer", ["A20"])
    change = await anext(updates)
    assert not isinstance(change, Snapshot)
    assert (change.version, list(change.seat_ids)) == (11, ["A20"])
    assert change.reason == pb.CHANGE_REASON_HELD and change.status == pb.SEAT_STATUS_HELD
    await updates.aclose()


async def test_version_ahead_of_the_log_is_out_of_range(client: InventoryClient) -> None:
    await client.create_event("show", seats())
    with pytest.raises(ChangesOutOfRange):
        async for _ in client.watch_changes("show", 5):
            pass
    with pytest.raises(EventNotFound):
        async for _ in client.watch_changes("nope", 0):
            pass


async def test_expiry_appears_without_anyone_touching_the_seats(client: InventoryClient) -> None:
    await client.create_event("show", seats())
    hold = await client.hold("show", "buyer", ["A1", "A2"], ttl=0.2)
    updates = client.watch("show")
    snapshot = await anext(updates)
    assert isinstance(snapshot, Snapshot)
    assert snapshot.seats["A1"] == pb.SEAT_STATUS_HELD
    async with asyncio.timeout(5):
        change = await anext(updates)
    assert not isinstance(change, Snapshot)
    assert change.reason == pb.CHANGE_REASON_EXPIRED
    assert change.status == pb.SEAT_STATUS_AVAILABLE
    assert sorted(change.seat_ids) == ["A1", "A2"]
    assert change.hold_id == hold.hold_id
    await updates.aclose()


async def test_many_watchers_share_one_redis_reader(
    client: InventoryClient, service: Service, redis: Redis
) -> None:
    await client.create_event("show", seats())
    await client.create_event("other", seats())
    watchers = [client.watch("show") for _ in range(50)] + [client.watch("other")]
    for updates in watchers:
        assert isinstance(await anext(updates), Snapshot)
    await client.hold("show", "buyer", ["A1"])
    await client.hold("other", "buyer", ["A1"])
    for updates in watchers:
        change = await anext(updates)
        assert not isinstance(change, Snapshot) and list(change.seat_ids) == ["A1"]

    async def readers() -> int:
        return sum(client["cmd"] == "xread" for client in await redis.client_list())

    # A reader that has just started may not have sent its first XREAD yet.
    async def two_readers() -> bool:
        return await readers() == 2

    await until(two_readers)
    assert await readers() == 2  # one per watched event, not one per watcher
    assert len(service.hub._feeds) == 2
    for updates in watchers:
        await updates.aclose()
    await until(lambda: not service.hub._feeds)  # the last watcher of an event stops its reader


async def test_slow_watcher_is_ended_and_resumes(
    client: InventoryClient, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "MAX_QUEUED", 2)
    await client.create_event("show", seats())
    slow = service.hub.watch("show", 0)
    fast = client.watch("show")
    assert isinstance(await anext(fast), Snapshot)
    reader_started = asyncio.ensure_future(anext(slow))
    await asyncio.sleep(0.05)
    for seat in SEATS[:6]:
        await client.hold("show", "buyer", [seat])
        await anext(fast)  # the reader has handed the change out before the next one is made
    assert [c.version for c in await reader_started] == [1]
    with pytest.raises(watch.WatchEnded) as ended:
        while True:
            await anext(slow)
    assert ended.value.reason == "WATCHER_TOO_SLOW"
    await fast.aclose()


async def test_sync_client_watches_and_holds(client: InventoryClient, service: Service) -> None:
    await client.create_event("show", seats())

    def use_sync() -> list[Update]:
        with SyncInventoryClient(service.target) as sync:
            updates = sync.watch("show")
            first = next(updates)
            hold = sync.hold("show", "buyer", ["A1"])
            change = next(updates)
            updates.close()
            assert sync.release("show", hold.hold_id, "buyer") == ["A1"]
            with pytest.raises(SeatsUnavailable):
                sync.hold("show", "other", ["A2"])
                sync.hold("show", "third", ["A2"])
            return [first, change]

    first, change = await asyncio.to_thread(use_sync)
    assert isinstance(first, Snapshot) and first.version == 0
    assert not isinstance(change, Snapshot) and change.version == 1
