"""The waiting room: a fair order, admission at a set rate, holds that need an admission.

Real Redis, real scripts; the service tests run the gRPC server and the admission tick as
`lml-inventory serve` does, with a short tick. Rates are read from the admission times Redis
recorded, never from the test's own clock.
"""

import asyncio
import itertools
import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from lml.inventory.v1 import inventory_pb2 as pb
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from clients import (
    AdmissionInvalid,
    AdmissionRequired,
    EventNotFound,
    InvalidArgument,
    InventoryClient,
    QueueClosed,
    QueueNotFound,
)
from inventory import keys
from inventory.admission import AdmissionSigner
from inventory.engine import Inventory
from inventory.local_servers import RedisServer, free_port
from inventory.queue import RANK_BITS, WaitingRoom, admit_forever
from inventory.queue_watch import QueueWatchHub
from inventory.redis_client import connect
from inventory.server import create_server

TICK = 0.05
SEATS = [f"s{i}" for i in range(40)]


def _now() -> datetime:
    return datetime.now(UTC)


async def _create_event(inventory: Inventory, event_id: str) -> None:
    request = pb.CreateEventRequest(event_id=event_id)
    for number, seat_id in enumerate(SEATS):
        request.seats.add(seat_id=seat_id, section="S", row="1", number=str(number))
    await inventory.create_event(request)


def _configure(
    event_id: str,
    opens_at: datetime,
    per_minute: int = 6000,
    max_active: int = 10_000,
    ttl_s: int = 60,
    enabled: bool = True,
) -> pb.ConfigureQueueRequest:
    request = pb.ConfigureQueueRequest(
        event_id=event_id, admit_per_minute=per_minute, max_active=max_active, enabled=enabled
    )
    request.opens_at.FromDatetime(opens_at)
    request.admission_ttl.FromSeconds(ttl_s)
    return request


async def _records(redis: Redis, event_id: str) -> list[dict[str, int | str]]:
    return [
        json.loads(raw) for raw in (await redis.hgetall(keys.queue_keys(event_id).tickets)).values()
    ]


async def _until(predicate_call: object, limit: float = 30.0) -> None:
    """Polls an async predicate; the limit only keeps a broken run from hanging."""
    deadline = time.monotonic() + limit
    while not await predicate_call():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(TICK)


@pytest.fixture
async def room(inventory: Inventory) -> WaitingRoom:
    return WaitingRoom(inventory.redis, inventory.admissions)


@pytest.fixture
async def service(inventory: Inventory, room: WaitingRoom) -> AsyncIterator[InventoryClient]:
    """The gRPC service with its admission tick; yields an SDK client of it."""
    hub = QueueWatchHub(room, TICK)
    target = f"127.0.0.1:{free_port()}"
    server, _health = create_server(inventory, target, queue_hub=hub)
    await server.start()
    ticker = asyncio.create_task(admit_forever(room, TICK))
    async with InventoryClient(target, watch_timeout=60) as client:
        yield client
    ticker.cancel()
    await asyncio.gather(ticker, return_exceptions=True)
    await hub.close()
    await server.stop(None)


# -- fairness ---------------------------------------------------------------------------------


async def test_buyers_before_the_opening_are_shuffled_uniformly_and_later_ones_queue_in_order(
    inventory: Inventory, room: WaitingRoom, redis: Redis
) -> None:
    n = 10_000
    await _create_event(inventory, "fair")
    await room.configure(_configure("fair", _now() + timedelta(hours=1)))
    tickets: list[str] = []
    for start in range(0, n, 500):  # in join order: buyer i joins i-th
        batch = [
            room.join(pb.JoinQueueRequest(event_id="fair", buyer_id=f"b{i}"))
            for i in range(start, start + 500)
        ]
        tickets += [response.ticket.ticket_id for response in await asyncio.gather(*batch)]
    await room.configure(_configure("fair", _now()))  # the opening, before anyone is admitted
    line = await redis.zrange(keys.queue_keys("fair").line, 0, -1)
    position = {ticket: index for index, ticket in enumerate(line)}
    places = [position[ticket] for ticket in tickets]
    assert sorted(places) == list(range(n))

    # The first tenth to join sit, on average, in the middle: within 4 standard errors.
    early = places[: n // 10]
    standard_error = math.sqrt((n * n - 1) / 12 / len(early))
    assert abs(sum(early) / len(early) - (n - 1) / 2) < 4 * standard_error
    # No rank correlation between joining order and place (|rho| < 4 / sqrt(n - 1)).
    mean = (n - 1) / 2
    rho = sum((i - mean) * (p - mean) for i, p in enumerate(places)) / (n * (n * n - 1) / 12)
    assert abs(rho) < 4 / math.sqrt(n - 1)
    # Pre-queue places are ranks below 2^RANK_BITS, drawn by the service.
    highest = await redis.zrange(keys.queue_keys("fair").line, -1, -1, withscores=True)
    assert highest[0][1] < 2**RANK_BITS

    later = [
        (await room.join(pb.JoinQueueRequest(event_id="fair", buyer_id=f"late{i}"))).ticket
        for i in range(50)
    ]
    assert [ticket.position for ticket in later] == list(range(n + 1, n + 51))


# -- rate ---------------------------------------------------------------------------------------


async def test_admissions_follow_the_rate_evenly(
    service: InventoryClient, inventory: Inventory, redis: Redis, redis_server: RedisServer
) -> None:
    """600/min over 60 s, scaled by 10 (6,000/min over 6 s): the bucket holds one second of the
    rate in both, so the schedule is the same one, ten times faster. A second ticker with its own
    connection stands for a second service process: the rate is still the configured one.

    Checked on the schedule Redis recorded (each tick stamps its admissions with Redis's clock),
    never on this test's timing: each tick admits what the bucket earned since the previous one
    (one per 10 ms, at most one second's worth), so a tick delayed by a loaded machine admits
    more at once but never beyond the bucket, and the rate over the time ticks ran is exact.
    The same rate over a minute of wall-clock time is the queue bench's (bench/queue_bench.py).
    """
    per_minute, capacity = 6000, 100  # the bucket: one second of the rate
    second_redis = connect(redis_server.url)
    second = asyncio.create_task(
        admit_forever(WaitingRoom(second_redis, AdmissionSigner()), TICK * 1.3)
    )
    await _create_event(inventory, "rate")

    async def configure(opens_at: datetime, rate: int = per_minute) -> None:
        await service.configure_queue(
            "rate", opens_at=opens_at, admit_per_minute=rate, max_active=10_000, admission_ttl=60
        )

    await configure(_now() + timedelta(hours=1))
    for start in range(0, 1000, 100):
        await asyncio.gather(
            *(service.join_queue("rate", f"b{i}") for i in range(start, start + 100))
        )
    # Opened once everyone is in line: every tick has more buyers waiting than it may admit.
    opens_at = _now() + timedelta(seconds=0.2)
    await configure(opens_at)
    opens_ms = int(opens_at.timestamp() * 1000)

    async def admitted_times() -> list[int]:
        records = await _records(redis, "rate")
        return sorted(int(r["admitted_at_ms"]) for r in records if "admitted_at_ms" in r)

    async def past_window() -> bool:
        return any(t > opens_ms + 6000 for t in await admitted_times())

    await _until(past_window)
    second.cancel()
    await second_redis.aclose()
    times = await admitted_times()
    assert times[0] >= opens_ms
    # One tick, one Redis timestamp (a tick in the same millisecond as another earns nothing).
    ticks = sorted(Counter(t for t in times if t <= opens_ms + 6000).items())
    assert len(ticks) > 10 and max(n for _, n in ticks) <= capacity
    earned_ms = 0  # the time the bucket filled: gaps between ticks, each capped at one second
    admitted = 0
    for (before, _), (at, count) in itertools.pairwise(ticks):
        gap = at - before
        # At least the whole tokens earned in the gap, fewer than those plus the one carried.
        assert min(capacity, gap * per_minute // 60_000) <= count, (before, at, count)
        assert count * 60_000 < (gap + 1_000 * 60 // per_minute) * per_minute, (gap, count)
        earned_ms += min(gap, 1000 * capacity * 60 // per_minute)
        admitted += count
    rate = admitted / earned_ms * 60_000
    assert abs(rate - per_minute) <= 0.02 * per_minute, (admitted, earned_ms)
    # Smooth: no second of Redis's clock sees more than the bucket plus a second of the rate.
    per_second = Counter((t - opens_ms) // 1000 for t in times)
    assert max(per_second.values()) <= 2 * capacity


async def test_never_more_admissions_live_than_max_active(
    service: InventoryClient, inventory: Inventory, redis: Redis
) -> None:
    await _create_event(inventory, "active")
    await service.configure_queue(
        "active", opens_at=_now(), admit_per_minute=6000, max_active=30, admission_ttl=1
    )
    await asyncio.gather(*(service.join_queue("active", f"b{i}") for i in range(150)))

    async def enough() -> bool:
        return int(await redis.hget(keys.queue_keys("active").queue, "admitted") or 0) >= 90

    await _until(enough)
    times = sorted(
        int(r["admitted_at_ms"]) for r in await _records(redis, "active") if "admitted_at_ms" in r
    )
    # An admission is live over [admitted_at, admitted_at + ttl).
    for t in times:
        assert sum(1 for other in times if t - 1000 < other <= t) <= 30

    # The metrics the tick keeps (this process's registry: the ticker runs here).
    def sample(name: str) -> float:
        value = REGISTRY.get_sample_value(name, {"event": "active"})
        assert value is not None, name
        return value

    admissions = sample("lml_inventory_queue_admissions_total")
    assert admissions >= 90 and sample("lml_inventory_queue_wait_seconds_count") == admissions
    assert 0 < sample("lml_inventory_queue_active") <= 30
    assert sample("lml_inventory_queue_admitted") + sample("lml_inventory_queue_waiting") == 150


# -- holds and admissions --------------------------------------------------------------------------


async def _admitted(client: InventoryClient, event_id: str, buyer: str) -> pb.QueueTicket:
    ticket = await client.join_queue(event_id, buyer)
    async for update in client.watch_queue(event_id, ticket.ticket_id):
        ticket = update
    assert ticket.admitted and ticket.admission_token
    return ticket


async def test_a_hold_on_a_queued_event_needs_the_holders_live_admission(
    service: InventoryClient, inventory: Inventory, redis: Redis
) -> None:
    await _create_event(inventory, "gate")
    await service.configure_queue(
        "gate", opens_at=_now(), admit_per_minute=6000, max_active=100, admission_ttl=60
    )
    with pytest.raises(AdmissionRequired) as required:
        await service.hold("gate", "ann", ["s1"])
    assert required.value.code.name == "FAILED_PRECONDITION"

    ann = await _admitted(service, "gate", "ann")
    held = await service.hold("gate", "ann", ["s1"], admission_token=ann.admission_token)
    assert list(held.seat_ids) == ["s1"]

    with pytest.raises(AdmissionInvalid) as stolen:  # bob shows ann's admission
        await service.hold("gate", "bob", ["s2"], admission_token=ann.admission_token)
    assert stolen.value.code.name == "PERMISSION_DENIED"
    version, expires, _mac = ann.admission_token.split(".")
    forged = f"{version}.{int(expires) + 3_600_000}.{_mac}"
    with pytest.raises(AdmissionInvalid):
        await service.hold("gate", "ann", ["s2"], admission_token=forged)
    with pytest.raises(AdmissionInvalid):
        await service.hold("gate", "ann", ["s2"], admission_token="not-a-token")

    # Signed and unexpired, but no longer live in Redis: the script refuses, atomically.
    await redis.zrem(keys.queue_keys("gate").admissions, "ann")
    with pytest.raises(AdmissionInvalid):
        await service.hold("gate", "ann", ["s2"], admission_token=ann.admission_token)
    assert (await service.availability("gate")).seats[2].status == pb.SEAT_STATUS_AVAILABLE

    # A trusted backend's re-hold (a checkout paid late) skips the check.
    request = pb.HoldRequest(event_id="gate", holder_id="cy", seat_ids=["s3"], skip_admission=True)
    assert list((await service.hold_request(request)).hold.seat_ids) == ["s3"]

    # Turned off, the queue asks for nothing.
    await service.configure_queue(
        "gate",
        opens_at=ann.opens_at.ToDatetime(UTC),
        admit_per_minute=6000,
        max_active=100,
        admission_ttl=60,
        enabled=False,
    )
    assert list((await service.hold("gate", "dee", ["s4"])).seat_ids) == ["s4"]


async def _until_lapsed(ticket: pb.QueueTicket) -> None:
    """Sleeps past the ticket's admission (Redis's clock and this one agree: same machine)."""
    lapses = ticket.admission_expires_at.ToMilliseconds() / 1000
    await asyncio.sleep(max(0.0, lapses - time.time()) + 0.1)


async def test_an_expired_admission_stops_new_holds_but_not_the_holds_made(
    service: InventoryClient, inventory: Inventory
) -> None:
    await _create_event(inventory, "lapse")
    await service.configure_queue(
        "lapse", opens_at=_now(), admit_per_minute=6000, max_active=100, admission_ttl=1
    )
    ann = await _admitted(service, "lapse", "ann")
    held = await service.hold("lapse", "ann", ["s1"], admission_token=ann.admission_token, ttl=60)
    await _until_lapsed(ann)
    with pytest.raises(AdmissionInvalid):
        await service.hold("lapse", "ann", ["s2"], admission_token=ann.admission_token)
    booking = await service.confirm("lapse", held.hold_id, "ann", payment_ref="p")
    assert list(booking.seat_ids) == ["s1"]


async def test_a_buyer_whose_admission_lapsed_joins_again_at_the_back_and_is_admitted_again(
    service: InventoryClient, inventory: Inventory
) -> None:
    await _create_event(inventory, "again")
    await service.configure_queue(
        "again", opens_at=_now(), admit_per_minute=6000, max_active=100, admission_ttl=1
    )
    ann = await _admitted(service, "again", "ann")
    live = await service.join_queue("again", "ann")  # still admitted: the same ticket, live
    assert live.ticket_id == ann.ticket_id and live.admitted and live.admission_token
    await service.pause_queue("again")
    bob = await service.join_queue("again", "bob")
    cy = await service.join_queue("again", "cy")
    await _until_lapsed(ann)

    again = await service.join_queue("again", "ann")
    assert again.ticket_id not in {ann.ticket_id, bob.ticket_id, cy.ticket_id}
    assert not again.admitted and not again.admission_token
    assert (bob.position, cy.position, again.position) == (1, 2, 3)  # behind those waiting
    assert (await service.join_queue("again", "ann")).ticket_id == again.ticket_id
    status = await service.pause_queue("again")
    assert (status.joined, status.admitted, status.active) == (4, 1, 0)  # places, admissions
    with pytest.raises(AdmissionInvalid):
        await service.hold("again", "ann", ["s1"], admission_token=ann.admission_token)

    await service.resume_queue("again")
    readmitted = await _admitted(service, "again", "ann")
    assert readmitted.ticket_id == again.ticket_id
    held = await service.hold("again", "ann", ["s1"], admission_token=readmitted.admission_token)
    assert list(held.seat_ids) == ["s1"]
    status = await service.close_queue("again")
    assert (status.joined, status.admitted) == (4, 4)

    # Closed: no new place, even for a buyer who had one (nobody is admitted any more).
    await _until_lapsed(readmitted)
    with pytest.raises(QueueClosed):
        await service.join_queue("again", "ann")


async def test_a_lapsed_admission_not_yet_pruned_by_a_tick_still_gives_a_new_place(
    inventory: Inventory, room: WaitingRoom, redis: Redis
) -> None:
    """No ticker here: the lapsed admission is still in the sorted set when the buyer joins."""
    await _create_event(inventory, "stale")
    await room.configure(_configure("stale", _now(), ttl_s=1))
    join = pb.JoinQueueRequest(event_id="stale", buyer_id="ann")
    first = (await room.join(join)).ticket
    await _until(lambda: room.admit("stale"))
    admitted = (await room.join(join)).ticket
    assert admitted.ticket_id == first.ticket_id and admitted.admission_token
    await _until_lapsed(admitted)
    assert await redis.zscore(keys.queue_keys("stale").admissions, "ann") is not None

    again = (await room.join(join)).ticket
    assert again.ticket_id != first.ticket_id and again.position == 1 and not again.admitted
    assert (await room.status("stale")).joined == 2
    await _until(lambda: room.admit("stale"))
    readmitted = (await room.join(join)).ticket
    assert readmitted.ticket_id == again.ticket_id and readmitted.admission_token


# -- joining and watching ---------------------------------------------------------------------


async def test_fifty_concurrent_joins_of_one_buyer_get_one_place(
    service: InventoryClient, inventory: Inventory
) -> None:
    await _create_event(inventory, "idem")
    await service.configure_queue(
        "idem",
        opens_at=_now() + timedelta(hours=1),
        admit_per_minute=60,
        max_active=10,
        admission_ttl=60,
    )
    tickets = await asyncio.gather(*(service.join_queue("idem", "ann") for _ in range(50)))
    assert len({ticket.ticket_id for ticket in tickets}) == 1
    assert len({ticket.position for ticket in tickets}) == 1
    await service.join_queue("idem", "bob")
    status = await service.pause_queue("idem")
    assert status.joined == 2


async def test_a_watcher_sees_its_place_fall_then_its_admission(
    service: InventoryClient, inventory: Inventory
) -> None:
    await _create_event(inventory, "watch")
    await service.configure_queue(
        "watch", opens_at=_now(), admit_per_minute=600, max_active=100, admission_ttl=60
    )
    await service.pause_queue("watch")
    for i in range(8):
        await service.join_queue("watch", f"b{i}")
    last = await service.join_queue("watch", "last")
    assert last.position == 9 and not last.admitted
    updates: list[pb.QueueTicket] = []

    async def watch() -> None:
        async for update in service.watch_queue("watch", last.ticket_id):
            updates.append(update)

    watcher = asyncio.create_task(watch())
    await _until(lambda: asyncio.sleep(0, bool(updates)))
    await service.resume_queue("watch")
    await asyncio.wait_for(watcher, 30)
    positions = [update.position for update in updates]
    assert positions[0] == 9
    assert positions == sorted(positions, reverse=True) and len(set(positions)) > 2
    assert updates[-1].admitted and updates[-1].position == 0 and updates[-1].admission_token
    assert all(u.estimated_wait.ToMilliseconds() > 0 for u in updates[:-1]), updates


async def test_pause_close_and_bad_settings(service: InventoryClient, inventory: Inventory) -> None:
    await _create_event(inventory, "ops")
    with pytest.raises(QueueNotFound):
        await service.join_queue("ops", "ann")
    with pytest.raises(EventNotFound):
        await service.configure_queue(
            "nope", opens_at=_now(), admit_per_minute=60, max_active=1, admission_ttl=60
        )
    with pytest.raises(InvalidArgument):
        await service.configure_queue(
            "ops", opens_at=_now(), admit_per_minute=0, max_active=1, admission_ttl=60
        )
    opened = _now() - timedelta(seconds=1)
    await service.configure_queue(
        "ops", opens_at=opened, admit_per_minute=6000, max_active=100, admission_ttl=60
    )
    with pytest.raises(InvalidArgument):  # the line's order is settled once open
        await service.configure_queue(
            "ops",
            opens_at=_now() + timedelta(hours=1),
            admit_per_minute=6000,
            max_active=100,
            admission_ttl=60,
        )
    paused = await service.pause_queue("ops")
    assert paused.state == pb.QUEUE_STATE_PAUSED
    ann = await service.join_queue("ops", "ann")
    await asyncio.sleep(10 * TICK)
    assert not (await service.join_queue("ops", "ann")).admitted
    closed = await service.close_queue("ops")
    assert closed.state == pb.QUEUE_STATE_CLOSED and closed.joined == 1
    with pytest.raises(QueueClosed):
        await service.join_queue("ops", "bob")
    assert (await service.join_queue("ops", "ann")).ticket_id == ann.ticket_id
    with pytest.raises(QueueClosed):
        await service.resume_queue("ops")
    with pytest.raises(QueueClosed):
        async for _ in service.watch_queue("ops", ann.ticket_id):
            pass


async def test_a_watcher_from_the_pre_queue_gets_its_drawn_place_after_the_opening(
    service: InventoryClient, inventory: Inventory, redis: Redis
) -> None:
    await _create_event(inventory, "pre")
    opens_at = _now() + timedelta(seconds=3)
    await service.configure_queue(
        "pre", opens_at=opens_at, admit_per_minute=600, max_active=100, admission_ttl=60
    )
    await service.pause_queue("pre")  # the line stays still while we look at it
    watched = await service.join_queue("pre", "first")
    assert watched.position == 1
    updates: list[pb.QueueTicket] = []

    async def watch() -> None:
        async for update in service.watch_queue("pre", watched.ticket_id):
            updates.append(update)

    watcher = asyncio.create_task(watch())
    await _until(lambda: asyncio.sleep(0, bool(updates)))
    # Joins after the watch started, still before the opening, draw ranks around the watched one.
    await asyncio.gather(*(service.join_queue("pre", f"b{i}") for i in range(40)))
    assert _now() < opens_at, "the joins took longer than the time left before the opening"

    async def settled() -> bool:
        index = await redis.zrank(keys.queue_keys("pre").line, watched.ticket_id)
        opened = _now() > opens_at + timedelta(seconds=2)
        return opened and isinstance(index, int) and updates[-1].position == index + 1

    await _until(settled)
    await service.resume_queue("pre")
    await asyncio.wait_for(watcher, 30)
    assert updates[-1].admitted and updates[-1].admission_token


async def test_execute_batches_check_admissions_too(
    service: InventoryClient, inventory: Inventory
) -> None:
    await _create_event(inventory, "batch")
    await service.configure_queue(
        "batch", opens_at=_now(), admit_per_minute=6000, max_active=100, admission_ttl=60
    )
    ann = await _admitted(service, "batch", "ann")
    async with InventoryClient(service.target, multiplex=True) as batched:
        with pytest.raises(AdmissionRequired):
            await batched.hold("batch", "ann", ["s1"])
        with pytest.raises(AdmissionInvalid):
            await batched.hold("batch", "bob", ["s1"], admission_token=ann.admission_token)
        held = await batched.hold("batch", "ann", ["s1"], admission_token=ann.admission_token)
    assert list(held.seat_ids) == ["s1"]
