"""Making events and bookings through the real engine, and running the worker."""

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import cast

import asyncpg
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from booking.worker import AUDIT_GROUP, OUTBOX_GROUP, Worker, WorkerSettings
from inventory import keys
from inventory.engine import Inventory

BATCH = 500


def seat_ids(count: int) -> list[str]:
    return [f"s{i:05d}" for i in range(count)]


async def make_event(inventory: Inventory, event_id: str, seats: int) -> list[str]:
    ids = seat_ids(seats)
    request = pb.CreateEventRequest(
        event_id=event_id, limits=pb.EventLimits(max_seats_per_holder=1000)
    )
    for i, seat_id in enumerate(ids):
        request.seats.add(seat_id=seat_id, section="stalls", row=str(i // 50), number=str(i % 50))
    await inventory.create_event(request)
    return ids


async def hold(inventory: Inventory, event_id: str, groups: Sequence[Sequence[str]]) -> list[str]:
    """Holds each group of seats for its own holder; returns the hold ids."""
    hold_ids: list[str] = []
    for start in range(0, len(groups), BATCH):
        operations = [
            pb.Operation(
                hold=pb.HoldRequest(event_id=event_id, holder_id=f"h{start + i}", seat_ids=group)
            )
            for i, group in enumerate(groups[start : start + BATCH])
        ]
        results = await inventory.execute(operations)
        assert all(r.WhichOneof("result") == "hold" for r in results), results[:1]
        hold_ids += [r.hold.hold.hold_id for r in results]
    return hold_ids


async def book(inventory: Inventory, event_id: str, groups: Sequence[Sequence[str]]) -> list[str]:
    """Holds then confirms each group of seats; returns the booking ids."""
    return await confirm(inventory, event_id, await hold(inventory, event_id, groups))


async def confirm(inventory: Inventory, event_id: str, hold_ids: Sequence[str]) -> list[str]:
    """Confirms the holds made by `hold` (in one call of it); returns the booking ids."""
    booking_ids: list[str] = []
    for start in range(0, len(hold_ids), BATCH):
        operations = [
            pb.Operation(
                confirm=pb.ConfirmRequest(
                    event_id=event_id, hold_id=hold_id, holder_id=f"h{start + i}"
                )
            )
            for i, hold_id in enumerate(hold_ids[start : start + BATCH])
        ]
        results = await inventory.execute(operations)
        assert all(r.WhichOneof("result") == "confirm" for r in results), results[:1]
        booking_ids += [r.confirm.booking.booking_id for r in results]
    return booking_ids


def pairs(ids: Sequence[str]) -> list[list[str]]:
    return [list(ids[i : i + 2]) for i in range(0, len(ids) - 1, 2)]


async def wait_for(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {within} s: {check.__name__}")
        await asyncio.sleep(0.05)


async def drained(redis: Redis, event_ids: Iterable[str]) -> bool:
    """Both consumer groups have read everything of every event and have nothing pending."""
    for event_id in event_ids:
        event_keys = keys.event_keys(event_id)
        for stream, group in ((event_keys.outbox, OUTBOX_GROUP), (event_keys.changes, AUDIT_GROUP)):
            if not await redis.exists(stream):
                continue
            # Not XINFO's "lag": Redis counts entries trimmed unread as never read.
            last = (await redis.xinfo_stream(stream))["last-generated-id"]
            info = {g["name"]: g for g in await redis.xinfo_groups(stream)}
            if group not in info or info[group]["pending"] != 0:
                return False
            if info[group]["last-delivered-id"] != last:
                return False
    return True


async def seat_states(redis: Redis, event_id: str) -> dict[str, str]:
    return cast(dict[str, str], await redis.hgetall(keys.event_keys(event_id).seats))


async def booked_in_redis(redis: Redis, event_id: str) -> dict[str, str]:
    """seat id -> booking id of every booked seat."""
    states = await seat_states(redis, event_id)
    return {seat: value[2:] for seat, value in states.items() if value.startswith("B:")}


async def entries(redis: Redis, stream: str) -> list[tuple[str, dict[str, str]]]:
    return cast(list[tuple[str, dict[str, str]]], await redis.xrange(stream))


async def count(pg: asyncpg.Connection, query: str, *args: object) -> int:
    return int(await pg.fetchval(query, *args))


@contextlib.asynccontextmanager
async def running_worker(
    redis: Redis, pg_url: str, **settings: int | float
) -> AsyncIterator["asyncio.Task[None]"]:
    """The worker in this process, as `lml-worker run` runs it; yields its task (done only if
    it stopped on its own)."""
    pool = await asyncpg.create_pool(pg_url, min_size=0, max_size=4)
    stop = asyncio.Event()
    worker = Worker(redis, pool, WorkerSettings(consumer="in-test", **settings))  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await pool.close()


def worker_command() -> list[str]:
    script = shutil.which("lml-worker")
    return [script] if script else [sys.executable, "-c", "from booking.cli import main; main()"]


class WorkerProcess:
    """`lml-worker run` in a process of its own."""

    def __init__(self, redis_url: str, pg_url: str, *options: str) -> None:
        self.args = [
            *worker_command(),
            "run",
            "--redis-url",
            redis_url,
            "--postgres-url",
            pg_url,
            "--claim-idle-ms",
            "1000",
            "--discovery-interval",
            "0.1",
            *options,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(15)
