"""The waiting room under a flash-sale burst, beside the same burst going straight to Hold.

Against the real service (its own process, private Redis): `buyers` buyers join the queue of an
event that opens as the burst starts, as fast as one load process can send (`concurrency` calls in
flight); then the service admits them at `per_minute` for `window` seconds. The same buyers then
hold one seat each of another event with no queue, the same way. The WatchQueue fan-out is measured
in this process (the service's own QueueWatchHub over the same Redis, `watchers` watchers): Redis
commands and CPU per update as admission moves the line.
"""

import asyncio
import random
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np
from google.protobuf.message import Message
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import Redis

from bench.report import Report
from bench.stack import inventory_command, local_target, redis_server, server_process
from bench.workload import create_events, seat_id
from inventory import keys
from inventory.admission import AdmissionSigner
from inventory.queue import WaitingRoom
from inventory.queue_watch import QueueWatchHub
from inventory.redis_client import connect

SEATS = 100_000
Request = TypeVar("Request", bound=Message)


@dataclass
class Burst:
    calls: int
    seconds: float
    latencies: np.ndarray
    failed: int
    redis_usec: int  # Redis's CPU for every command during the burst (INFO commandstats)
    redis_calls: int

    def row(self, name: str) -> list[object]:
        return [
            name,
            self.calls,
            round(self.calls / self.seconds),
            round(float(np.percentile(self.latencies, 50)) * 1000, 2),
            round(float(np.percentile(self.latencies, 99)) * 1000, 2),
            round(self.redis_usec / self.calls, 1),
            round(self.redis_calls / self.calls, 2),
            self.failed,
        ]


def _ratios(joined: Burst, held: Burst) -> str:
    def figures(burst: Burst) -> list[float]:
        p99 = float(np.percentile(burst.latencies, 99))
        return [burst.calls / burst.seconds, p99, burst.redis_usec / burst.calls]

    names = ("calls/s", "p99", "Redis µs per call")
    pairs = zip(names, figures(joined), figures(held), strict=True)
    return ", ".join(f"{name} x{mine / theirs:.2f}" for name, mine, theirs in pairs if theirs)


async def _commandstats(redis: Redis) -> tuple[int, int]:
    stats = await redis.info("commandstats")
    usec = sum(int(v["usec"]) for k, v in stats.items() if k != "cmdstat_info")
    calls = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
    return usec, calls


async def _burst(
    redis: Redis,
    method: Callable[[Request], Awaitable[object]],
    requests: Sequence[Request],
    concurrency: int,
) -> Burst:
    latencies = np.zeros(len(requests))
    failed = 0
    todo = iter(enumerate(requests))

    async def worker() -> None:
        nonlocal failed
        for index, request in todo:
            started = time.perf_counter()
            try:
                await method(request)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.FAILED_PRECONDITION:  # seat taken: expected
                    failed += 1
            latencies[index] = time.perf_counter() - started

    usec, count = await _commandstats(redis)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    usec_after, count_after = await _commandstats(redis)
    return Burst(len(requests), seconds, latencies, failed, usec_after - usec, count_after - count)


async def _redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _admission(redis: Redis, event_id: str, window: float) -> tuple[int, float, list[int]]:
    """Admissions over `window` seconds by Redis's clock: count, ms elapsed, per second."""
    queue = keys.queue_keys(event_id).queue
    start_ms, start = await _redis_ms(redis), int(await redis.hget(queue, "admitted") or 0)
    per_second, last = [], start
    end_ms = start_ms
    while end_ms - start_ms < window * 1000:
        await asyncio.sleep(1.0)
        admitted = int(await redis.hget(queue, "admitted") or 0)
        end_ms = await _redis_ms(redis)
        per_second.append(admitted - last)
        last = admitted
    return last - start, end_ms - start_ms, per_second


async def _fan_out(
    redis: Redis, redis_url: str, event_id: str, watchers: int, seconds: float
) -> dict[str, float]:
    """`watchers` WatchQueue streams of tickets still waiting, in this process, for `seconds`."""
    # As the service connects: a bounded pool that makes callers wait (plus the pipelined link).
    service_redis = connect(redis_url, 64)
    room = WaitingRoom(service_redis, AdmissionSigner())
    hub = QueueWatchHub(room, 0.25)
    line = await redis.zrange(keys.queue_keys(event_id).line, -watchers, -1)
    updates = 0
    ticks = seconds / hub.interval
    usec, calls = await _commandstats(redis)  # the service's admission tick alone, as a baseline
    await asyncio.sleep(seconds)
    usec_after, calls_after = await _commandstats(redis)
    alone = (calls_after - calls) / ticks, (usec_after - usec) / ticks

    all_started = asyncio.Event()

    async def watch(ticket_id: str) -> None:
        nonlocal updates
        async for _ in hub.watch(event_id, ticket_id):
            updates += 1
            if updates >= len(line):
                all_started.set()

    tasks = [asyncio.create_task(watch(str(ticket))) for ticket in line]
    started = time.monotonic()
    await asyncio.wait_for(all_started.wait(), 120)
    setup_s = time.monotonic() - started
    await asyncio.sleep(1.0)
    first_updates = updates
    # A stream that ended did so with its admission, or failed.
    failed = sum(1 for task in tasks if task.done() and task.exception() is not None)
    usec, calls = await _commandstats(redis)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(seconds)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    usec_after, calls_after = await _commandstats(redis)
    delivered = updates - first_updates
    for task in tasks:
        task.cancel()
    await hub.close()
    await service_redis.aclose()
    cpu_s = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)
    return {
        "watchers": len(tasks),
        "watchers failed": failed,
        "seconds to start them (until as many updates as watchers)": round(setup_s, 1),
        "updates delivered": delivered,
        "Redis commands per 0.25 s tick, admission tick alone": round(alone[0], 1),
        "Redis commands per 0.25 s tick, with the watchers": round(
            (calls_after - calls) / ticks, 1
        ),
        "Redis µs per tick, admission tick alone": round(alone[1], 1),
        "Redis µs per tick, with the watchers": round((usec_after - usec) / ticks, 1),
        "CPU µs per update delivered (fan-out, no gRPC)": round(cpu_s * 1e6 / max(1, delivered), 1),
    }


async def _run(
    redis_url: str,
    target: str,
    buyers: int,
    concurrency: int,
    per_minute: int,
    window: float,
    watchers: int,
    seats: int,
    fan_out_seconds: float,
) -> tuple[Burst, Burst, tuple[int, float, list[int]], dict[str, float]]:
    redis = Redis.from_url(redis_url, decode_responses=True)
    channel = grpc.aio.insecure_channel(target)
    stub = pb_grpc.InventoryServiceStub(channel)
    try:
        configure = pb.ConfigureQueueRequest(
            event_id="queued", admit_per_minute=per_minute, max_active=buyers, enabled=True
        )
        configure.opens_at.FromDatetime(datetime.now(UTC))
        configure.admission_ttl.FromSeconds(600)
        await stub.ConfigureQueue(configure)
        joins = [pb.JoinQueueRequest(event_id="queued", buyer_id=f"b{i}") for i in range(buyers)]
        joined = await _burst(redis, stub.JoinQueue, joins, concurrency)
        admission = await _admission(redis, "queued", window)
        fan_out = await _fan_out(redis, redis_url, "queued", watchers, fan_out_seconds)
        rng = random.Random(1)
        holds = [
            pb.HoldRequest(
                event_id="open", holder_id=f"b{i}", seat_ids=[seat_id(rng.randrange(seats))]
            )
            for i in range(buyers)
        ]
        held = await _burst(redis, stub.Hold, holds, concurrency)
        return joined, held, admission, fan_out
    finally:
        await channel.close(None)
        await redis.aclose()


def queue(
    buyers: int,
    concurrency: int,
    per_minute: int,
    window: float,
    watchers: int,
    seats: int = SEATS,
    fan_out_seconds: float = 5.0,
) -> Report:
    with tempfile.TemporaryDirectory(prefix="lml-bench-") as tmp:
        workdir = Path(tmp)
        with redis_server(workdir / "redis") as redis_process:

            async def create() -> None:
                redis = Redis.from_url(redis_process.url, decode_responses=True)
                await create_events(redis, ["queued", "open"], seats)
                await redis.aclose()

            asyncio.run(create())
            target = local_target()
            command = inventory_command(target, redis_process.url, 1)
            with server_process(command, target, workdir / "server.log"):
                joined, held, admission, fan_out = asyncio.run(
                    _run(
                        redis_process.url,
                        target,
                        buyers,
                        concurrency,
                        per_minute,
                        window,
                        watchers,
                        seats,
                        fan_out_seconds,
                    )
                )
    admitted, elapsed_ms, per_second = admission
    rate = admitted / elapsed_ms * 60_000
    report = Report(
        "queue", f"Waiting room: {buyers:,} buyers in a burst, admitted at {per_minute:,}/min"
    )
    report.text(
        f"One service process (its admission tick every 0.25 s), private Redis; one load process "
        f"with {concurrency} unary calls in flight. The burst: every buyer joins the queue of an "
        f"event that opened as it started; then the same number of buyers hold one random seat "
        f"each of a {seats:,}-seat event without a queue (what the inventory takes at the peak "
        f"without the waiting room). Redis µs: Redis's own CPU for every command during the "
        f"burst (INFO commandstats), per call."
    )
    report.table(
        [
            "burst",
            "calls",
            "calls/s",
            "p50 (ms)",
            "p99 (ms)",
            "Redis µs per call",
            "Redis commands per call",
            "failed",
        ],
        [joined.row("JoinQueue"), held.row("Hold, no queue")],
    )
    report.text(
        f"JoinQueue against the same burst straight to Hold, same run: {_ratios(joined, held)}."
    )
    report.text(
        f"With the queue, the inventory sees holds at the admission rate ({per_minute / 60:,.0f}/s "
        f"at most), not the burst's {held.calls / held.seconds:,.0f}/s."
    )
    report.table(
        ["admission", "value"],
        [
            ["configured (per minute)", per_minute],
            ["measured over the window (per minute, Redis clock)", round(rate)],
            ["error", f"{(rate - per_minute) / per_minute:+.2%}"],
            ["window (s)", round(elapsed_ms / 1000, 2)],
            ["admissions per second, min / max", f"{min(per_second)} / {max(per_second)}"],
        ],
    )
    report.table(["WatchQueue fan-out", "value"], [[k, v] for k, v in fan_out.items()])
    return report
