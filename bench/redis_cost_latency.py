"""The client-side latency of plain holds on one event, alone and while another process runs
best-available traffic, holds that run out, and the sweeper on the same event: what a buyer
holding named seats feels of the work the others make Redis do."""

import asyncio
import math
import multiprocessing
import random
import time
from multiprocessing.synchronize import Event
from statistics import quantiles

from google.protobuf.duration_pb2 import Duration
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from inventory import script_calls
from inventory.errors import InventoryError
from inventory.scripts import ScriptRunner
from inventory.sweeper import sweep_event

CALLERS = 4  # plain holds in flight, each released when it comes back
TICK = 0.01  # seconds between the background's pipelines
BEST_PER_TICK = 10  # best-available holds (quantity 2 and 4), released after: 1,000/s
EXPIRING_PER_TICK = 2  # holds left to run out (200 ms TTL): 200/s for the sweeper to end
SWEEP_INTERVAL = 0.1  # the service's default is 0.5 s: more often, to see more sweeps


def _seats(rng: random.Random, seats: int) -> list[str]:
    return [f"s{index}" for index in rng.sample(range(seats), rng.randint(1, 2))]


async def _plain_holds(
    runner: ScriptRunner, event_id: str, seats: int, seconds: float
) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def caller(number: int) -> None:
        rng = random.Random(number)
        while time.perf_counter() < deadline:
            request = pb.HoldRequest(
                event_id=event_id, holder_id=f"plain{number}", seat_ids=_seats(rng, seats)
            )
            started = time.perf_counter()
            reply = await runner.run(script_calls.hold_call(request))
            latencies.append((time.perf_counter() - started) * 1000)
            try:
                hold = script_calls.hold_response(request, reply).hold
            except InventoryError:  # seats the background holds at this moment
                continue
            release = pb.ReleaseRequest(
                event_id=event_id, hold_id=hold.hold_id, holder_id=hold.holder_id
            )
            script_calls.release_response(
                release, await runner.run(script_calls.release_call(release))
            )

    await asyncio.gather(*(caller(number) for number in range(CALLERS)))
    return latencies


async def _background(url: str, event_id: str, seats: int, ready: Event, stop: Event) -> None:
    redis = Redis.from_url(url, decode_responses=True)
    runner = ScriptRunner(redis)
    rng = random.Random(7)

    async def best_available() -> None:
        ticks = 0
        while not stop.is_set():
            ticks += 1
            requests = [
                pb.HoldRequest(
                    event_id=event_id,
                    holder_id=f"best{ticks}-{n}",
                    best_available=pb.BestAvailable(quantity=2 + 2 * (n % 2)),
                )
                for n in range(BEST_PER_TICK)
            ] + [
                pb.HoldRequest(
                    event_id=event_id,
                    holder_id=f"gone{ticks}-{n}",
                    seat_ids=_seats(rng, seats),
                    ttl=Duration(nanos=200_000_000),
                )
                for n in range(EXPIRING_PER_TICK)
            ]
            replies = await runner.run_batch([script_calls.hold_call(r) for r in requests])
            releases = []
            for request, reply in zip(requests[:BEST_PER_TICK], replies, strict=False):
                try:
                    hold = script_calls.hold_response(request, reply).hold
                except InventoryError:
                    continue
                releases.append(
                    script_calls.release_call(
                        pb.ReleaseRequest(
                            event_id=event_id, hold_id=hold.hold_id, holder_id=hold.holder_id
                        )
                    )
                )
            await runner.run_batch(releases)
            await asyncio.sleep(TICK)

    async def sweeper() -> None:
        while not stop.is_set():
            await sweep_event(runner, event_id)
            await asyncio.sleep(SWEEP_INTERVAL)

    tasks = [asyncio.create_task(best_available()), asyncio.create_task(sweeper())]
    ready.set()
    await asyncio.gather(*tasks)
    await redis.aclose()


def _background_process(url: str, event_id: str, seats: int, ready: Event, stop: Event) -> None:
    asyncio.run(_background(url, event_id, seats, ready, stop))


def p99(values: list[float]) -> float:
    return quantiles(values, n=100)[98] if len(values) > 1 else math.nan


async def hold_p99s(
    redis: Redis, url: str, event_id: str, seats: int, seconds: float
) -> tuple[float, float, int]:
    """(p99 ms of plain holds alone, p99 ms beside the background, holds measured in all)."""
    runner = ScriptRunner(redis)
    alone = await _plain_holds(runner, event_id, seats, seconds)
    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Event(), spawn.Event()
    process = spawn.Process(target=_background_process, args=(url, event_id, seats, ready, stop))
    process.start()
    try:
        if not await asyncio.to_thread(ready.wait, 60):
            raise RuntimeError("the background load did not start")
        await asyncio.sleep(0.5)  # its first sweeps and picks under way
        busy = await _plain_holds(runner, event_id, seats, seconds)
    finally:
        stop.set()
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    return p99(alone), p99(busy), len(alone) + len(busy)
