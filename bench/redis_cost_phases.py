"""The phases of the Redis-cost benchmark (bench/redis_cost_bench.py): pipelines of holds and
their releases on one event, each measured by Redis itself.

Redis µs per call is `usec` / `calls` of `cmdstat_fcall` (the project's library functions) or
`cmdstat_evalsha` (the minimal reference's scripts) from INFO commandstats, reset before each
pipeline (a pipeline runs one or the other); the longest single call comes from SLOWLOG, which
logs only calls of SLOW_USEC and more (logging every command, those the scripts run included,
would slow the scripts it times).
"""

import asyncio
import math
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from statistics import median
from typing import Any, TypeVar

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from bench import reference_server
from bench.pipelined_load import SCRIPT_STATS
from inventory import script_calls
from inventory.engine import Inventory
from inventory.scripts import Call
from inventory.sweeper import sweep_event

T = TypeVar("T")
SLOW_USEC = 500  # calls at least this long are logged one by one (SLOWLOG): the bound
SLOWLOG_LENGTH = 100_000
CYCLE_PHASES = 5  # phases whose holds and releases change the index before the sweeper's


def event_id(row_length: int) -> str:
    return f"cost-rows{row_length}"


def seat_id(index: int) -> str:
    return f"s{index}"


def event_request(row_length: int, seats: int) -> pb.CreateEventRequest:
    request = pb.CreateEventRequest(event_id=event_id(row_length))
    request.limits.max_seats_per_holder = 1_000
    add = request.seats.add
    for index in range(seats):
        row, number = divmod(index, row_length)
        add(seat_id=seat_id(index), section="hall", row=str(row), number=str(number + 1))
    return request


@dataclass
class Ledger:
    """Redis time of each (row length, operation): µs per call of every measured pipeline, the
    calls SLOWLOG caught (SLOW_USEC and more) and the longest of them."""

    samples: dict[tuple[int, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    usec: dict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))
    slow: dict[tuple[int, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    counting: bool = False  # the warm-up round is not booked

    def book(self, key: tuple[int, str], usec: float, calls: int, slow: list[float]) -> None:
        if not self.counting or not calls:
            return
        self.samples[key].append(usec / calls)
        self.usec[key] += usec
        self.calls[key] += calls
        self.slow[key] += slow

    def per_call(self, row_length: int, operation: str) -> float:
        """The median over pipelines of Redis µs per call (NaN when never measured): the
        machine's hiccups, which stretch a few pipelines, weigh less than in a mean."""
        values = self.samples.get((row_length, operation))
        return median(values) if values else math.nan


class Meter:
    """Runs pipelines of script calls and books the Redis time they took."""

    def __init__(self, redis: Redis, inventory: Inventory, ledger: Ledger) -> None:
        self.redis, self.inventory, self.ledger = redis, inventory, ledger

    async def measure(self, row_length: int, operation: str, run: Awaitable[T]) -> T:
        await self.redis.config_resetstat()
        await self.redis.slowlog_reset()
        result = await run
        stats = await self.redis.info("commandstats")
        usec = sum(float(stats.get(name, {}).get("usec", 0)) for name in SCRIPT_STATS)
        calls = sum(int(stats.get(name, {}).get("calls", 0)) for name in SCRIPT_STATS)
        slow = [
            float(entry["duration"])
            for entry in await self.redis.slowlog_get(SLOWLOG_LENGTH)
            if entry["command"].upper().startswith((b"FCALL", b"EVALSHA"))
        ]
        self.ledger.book((row_length, operation), usec, calls, slow)
        return result

    async def project(self, row_length: int, operation: str, calls: list[Call]) -> list[Any]:
        return await self.measure(row_length, operation, self.inventory.runner.run_batch(calls))

    async def reference(self, row_length: int, operation: str, calls: list[list[Any]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command("EVALSHA", *call)
        replies: list[Any] = await self.measure(row_length, operation, pipe.execute())
        if any(isinstance(reply, Exception) or int(reply[0]) < 0 for reply in replies):
            raise RuntimeError(f"the reference's {operation} failed: {replies[:3]}")


def _held(requests: list[pb.HoldRequest], replies: list[Any], what: str) -> list[pb.Hold]:
    try:
        return [
            script_calls.hold_response(r, reply).hold
            for r, reply in zip(requests, replies, strict=True)
        ]
    except Exception as error:
        raise RuntimeError(f"{what} failed in the Redis-cost harness: {error}") from error


def _releases(holds: list[pb.Hold]) -> list[Call]:
    return [
        script_calls.release_call(
            pb.ReleaseRequest(event_id=h.event_id, hold_id=h.hold_id, holder_id=h.holder_id)
        )
        for h in holds
    ]


@dataclass
class Cycles:
    """The phases of one row length, each a pipeline of holds then one of their releases."""

    meter: Meter
    row_length: int
    seats: int
    pipeline: int
    rng: random.Random
    shas: tuple[str, str]  # the reference's HOLD and CHANGE scripts
    made: int = 0

    def seat_sets(self) -> list[list[str]]:
        wanted = [self.rng.randint(1, 2) for _ in range(self.pipeline)]
        chosen = iter(self.rng.sample(range(self.seats), sum(wanted)))
        return [[seat_id(next(chosen)) for _ in range(n)] for n in wanted]

    def holder(self) -> str:
        self.made += 1
        return f"h{self.made}"

    async def hold_release(
        self, operation: str, requests: list[pb.HoldRequest], admission: str = "none"
    ) -> None:
        calls = [script_calls.hold_call(r, admission) for r in requests]
        held = _held(
            requests, await self.meter.project(self.row_length, operation, calls), operation
        )
        await self.meter.project(self.row_length, f"release after {operation}", _releases(held))

    async def plain(self) -> None:
        """The goal's cycle, then the reference's on the same seats."""
        seat_sets = self.seat_sets()
        event = event_id(self.row_length)
        requests = [
            pb.HoldRequest(event_id=event, holder_id=self.holder(), seat_ids=seats)
            for seats in seat_sets
        ]
        await self.hold_release("hold", requests)
        ref_keys = [reference_server.seats_key(event)]
        hold_ids = [f"r{self.holder()}" for _ in seat_sets]
        await self.meter.reference(
            self.row_length,
            "reference hold",
            [
                [
                    self.shas[0],
                    2,
                    *ref_keys,
                    reference_server.hold_key(event, hold_id),
                    hold_id,
                    reference_server.HOLD_MS,
                    *seats,
                ]
                for hold_id, seats in zip(hold_ids, seat_sets, strict=True)
            ],
        )
        await self.meter.reference(
            self.row_length,
            "reference release",
            [
                [
                    self.shas[1],
                    2,
                    *ref_keys,
                    reference_server.hold_key(event, hold_id),
                    "release",
                    reference_server.HOLD_MS,
                    hold_id,
                ]
                for hold_id in hold_ids
            ],
        )

    async def with_request_ids(self) -> None:
        event = event_id(self.row_length)
        requests = []
        for seats in self.seat_sets():
            holder = self.holder()
            requests.append(
                pb.HoldRequest(event_id=event, holder_id=holder, seat_ids=seats, request_id=holder)
            )
        await self.hold_release("hold, request id", requests)

    async def in_waiting_room(self) -> None:
        """The event's waiting room on, every holder admitted; off again after."""
        runner, event = self.meter.inventory.runner, event_id(self.row_length)
        await _configure_queue(runner, event, enabled=True)
        holders = [self.holder() for _ in range(self.pipeline)]
        joins = [script_calls.queue_join_call(event, h, f"t-{h}", 0) for h in holders]
        for reply in await runner.run_batch(joins):
            script_calls.queue_join_place(reply)
        await asyncio.sleep(0.01)  # the admission bucket fills (BIG per minute)
        admitted = 0
        while admitted < len(holders):
            tick = script_calls.queue_admit_tick(
                await runner.run(script_calls.queue_admit_call(event, len(holders)))
            )
            admitted += tick.admitted_now
        requests = [
            pb.HoldRequest(event_id=event, holder_id=holder, seat_ids=seats)
            for holder, seats in zip(holders, self.seat_sets(), strict=True)
        ]
        await self.hold_release("hold, waiting room", requests, admission="token")
        await _configure_queue(runner, event, enabled=False)

    async def best(self, quantity: int) -> None:
        event = event_id(self.row_length)
        wanted = pb.BestAvailable(quantity=quantity)
        requests = [
            pb.HoldRequest(event_id=event, holder_id=self.holder(), best_available=wanted)
            for _ in range(self.pipeline)
        ]
        await self.hold_release(f"best available, {quantity}", requests)

    async def sweeps(self) -> None:
        """The sweeper after the churn above (its index work), then after holds that ran out."""
        event, runner = event_id(self.row_length), self.meter.inventory.runner
        await self.meter.measure(self.row_length, "sweep after churn", sweep_event(runner, event))
        requests = [
            pb.HoldRequest(
                event_id=event, holder_id=self.holder(), seat_ids=seats, ttl=Duration(nanos=10**6)
            )
            for seats in self.seat_sets()
        ]
        _held(requests, await runner.run_batch([script_calls.hold_call(r) for r in requests]), "x")
        await asyncio.sleep(0.005)
        expired = await self.meter.measure(
            self.row_length, "sweep of expired holds", sweep_event(runner, event)
        )
        if expired != len(requests):
            raise RuntimeError(f"the sweeper expired {expired} of {len(requests)} holds")


async def _configure_queue(runner: Any, event: str, enabled: bool) -> None:
    request = pb.ConfigureQueueRequest(
        event_id=event,
        opens_at=Timestamp(seconds=1),
        admit_per_minute=1_000_000,
        max_active=1_000_000,
        admission_ttl=Duration(seconds=3600),
        enabled=enabled,
    )
    script_calls.queue_configure_done(await runner.run(script_calls.queue_configure_call(request)))


PHASES: list[tuple[str, Callable[[Cycles], Awaitable[None]]]] = [
    ("plain", Cycles.plain),
    ("request id", Cycles.with_request_ids),
    ("waiting room", Cycles.in_waiting_room),
    ("best 2", lambda c: c.best(2)),
    ("best 4", lambda c: c.best(4)),
    ("sweeps", Cycles.sweeps),
]
