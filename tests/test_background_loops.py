"""The service's background loops end when cancelled, whenever the cancellation comes.

On Python 3.11, asyncio.wait_for returns the awaited result, and drops the cancellation, when the
task is cancelled in the loop iteration in which that result arrives; redis-py sends every
command through wait_for when a socket timeout is set (by default, in redis-py 8). A loop that
lost its cancellation there ran on for good, and the test runner waited forever for it when
closing the test's event loop.
The loops run as the service runs them, against a real Redis, and are cancelled at random
moments, many times: without the fix some of them outlive their cancellation.
"""

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from lml.inventory.v1 import inventory_pb2 as pb

from inventory import keys
from inventory.engine import Inventory
from inventory.local_servers import RedisServer
from inventory.queue import WaitingRoom, admit_forever
from inventory.redis_client import connect
from inventory.sweeper import run_sweeper
from inventory.watch import WatchHub, _Feed

ROUNDS = 150
PATIENCE = 10.0  # seconds a cancelled loop gets to end: a hang, not slowness, fails the test

Loop = Callable[[Inventory], Coroutine[Any, Any, None]]


def _sweeper(inventory: Inventory) -> Coroutine[Any, Any, None]:
    return run_sweeper(inventory.redis, inventory.runner, 0)


def _admissions(inventory: Inventory) -> Coroutine[Any, Any, None]:
    return admit_forever(WaitingRoom(inventory.redis, inventory.admissions), 0)


async def _change_log_reader(inventory: Inventory) -> None:
    """One event's change-log reader, as WatchHub runs it (its own client), reading changes."""
    hub = WatchHub(inventory.redis)
    key = keys.event_keys("show-0").changes
    try:
        await _Feed(key, 0).run(hub._reader(key))
    finally:
        await hub.close()


async def _churn(inventory: Inventory) -> None:
    """Holds and releases a seat of show-0 until cancelled: the change log keeps growing."""
    while True:
        held = await inventory.hold(
            pb.HoldRequest(event_id="show-0", holder_id="churn", seat_ids=["s0"])
        )
        await inventory.release(
            pb.ReleaseRequest(event_id="show-0", hold_id=held.hold.hold_id, holder_id="churn")
        )


@pytest.mark.parametrize(
    "loop",
    [_sweeper, _admissions, _change_log_reader],
    ids=["sweeper", "admissions", "change-log reader"],
)
async def test_a_loop_cancelled_at_any_moment_ends(private_server: RedisServer, loop: Loop) -> None:
    # A Redis of its own: a reader cancelled at some moments leaves its connection open (seen
    # by other tests counting XREAD clients). A socket timeout, as the service sets.
    redis = connect(private_server.url, timeout=5.0)
    try:
        await redis.flushall()
        inventory = Inventory(redis)
        for n in range(3):
            request = pb.CreateEventRequest(event_id=f"show-{n}")
            for i in range(20):
                request.seats.add(seat_id=f"s{i}", section="A", row="1", number=str(i))
            await inventory.create_event(request)
        churn = asyncio.create_task(_churn(inventory))
        rng = random.Random(7)
        for attempt in range(ROUNDS):
            task = asyncio.create_task(loop(inventory))
            await asyncio.sleep(rng.random() * 0.01)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=PATIENCE)
            for _ in range(1000):  # a loop that ran on would hang closing the event loop
                if task.done():
                    break
                task.cancel()
                await asyncio.sleep(0.01)
            assert done, f"attempt {attempt}: the loop outlived its cancellation"
            assert task.cancelled()
        churn.cancel()
        await asyncio.gather(churn, return_exceptions=True)
    finally:
        await redis.aclose()
