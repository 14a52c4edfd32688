"""Durability harness: what `--confirm-durability replica` costs a confirm, against `none`.

A private primary Redis with one replica; the service is started once per setting over the same
pair, rounds alternating between settings so that the machine's noise falls on each alike. Each
round: unary Hold then Confirm of one seat, by `concurrency` callers at once, for `duration`
seconds; confirms/s and confirm latency are read off the confirms. `aof` needs WAITAOF (Redis
>= 7.2): measured only where the server has it.
"""

import asyncio
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import numpy as np
import redis
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc

from bench.report import Report
from bench.stack import inventory_command, local_target, redis_server, server_process
from bench.workload import create_events, seat_id
from inventory.local_servers import RedisServer
from inventory.redis_client import connect

ROUND_SEATS = 60_000  # more than a round confirms on this machine
WARMUP = 1.0  # seconds of load before measuring: connections opened, scripts loaded


@dataclass(frozen=True)
class _Round:
    setting: str
    callers: int
    confirms: int
    seconds: float
    latencies_ms: list[float]
    failed: int

    @property
    def rate(self) -> float:
        return self.confirms / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def _has_waitaof(server: RedisServer) -> bool:
    with redis.Redis(port=server.port, decode_responses=True) as client:
        return "waitaof" in client.command()


def _replicate(primary: RedisServer, replica: RedisServer) -> None:
    with redis.Redis(port=primary.port) as source, redis.Redis(port=replica.port) as client:
        source.config_set("repl-diskless-sync-delay", 0)
        client.replicaof("127.0.0.1", primary.port)
        deadline = time.monotonic() + 60
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica never got in sync")
            time.sleep(0.05)


async def _load(target: str, event_id: str, concurrency: int, duration: float) -> _Round:
    """Confirms measured for `duration` seconds after a warm-up of WARMUP seconds."""
    latencies: list[float] = []
    failed = 0
    seats = iter(range(ROUND_SEATS))
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        measured_from = time.monotonic() + WARMUP
        end = measured_from + duration

        async def caller(index: int) -> None:
            nonlocal failed
            while time.monotonic() < end:
                seat = seat_id(next(seats))
                holder = f"h{index}-{seat}"
                request = pb.HoldRequest(event_id=event_id, holder_id=holder, seat_ids=[seat])
                hold = (await stub.Hold(request, timeout=10)).hold
                confirm = pb.ConfirmRequest(
                    event_id=event_id, hold_id=hold.hold_id, holder_id=holder, payment_ref="p"
                )
                started = time.perf_counter()
                measured = time.monotonic() >= measured_from
                try:
                    await stub.Confirm(confirm, timeout=10)
                except grpc.aio.AioRpcError:
                    failed += measured
                    continue
                if measured:
                    latencies.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(caller(index) for index in range(concurrency)))
        seconds = time.monotonic() - measured_from
    return _Round("", concurrency, len(latencies), seconds, latencies, failed)


async def _create(redis_url: str, event_id: str) -> None:
    client = connect(redis_url)
    try:
        await create_events(client, [event_id], ROUND_SEATS)
    finally:
        await client.aclose()


def durability(duration: float, concurrency: list[int], rounds: int, workers: int) -> Report:
    rows: list[_Round] = []
    with tempfile.TemporaryDirectory(prefix="lml-bench-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        primary = stack.enter_context(redis_server(workdir / "primary"))
        replica = stack.enter_context(redis_server(workdir / "replica"))
        _replicate(primary, replica)
        settings = ["none", "replica"] + (["aof"] if _has_waitaof(primary) else [])
        for index in range(rounds):
            for setting in settings:
                target = local_target()
                command = inventory_command(target, primary.url, workers)
                command += ["--confirm-durability", setting]
                with server_process(command, target, workdir / f"{setting}.log"):
                    for callers in concurrency:
                        event_id = f"durability-{index}-{setting}-{callers}"
                        asyncio.run(_create(primary.url, event_id))
                        measured = asyncio.run(_load(target, event_id, callers, duration))
                        rows.append(replace(measured, setting=setting))
    return _report(rows, settings, duration, concurrency, rounds, workers)


def _row(round_number: int, measured: _Round) -> list[object]:
    return [
        round_number,
        measured.setting,
        measured.callers,
        measured.rate,
        measured.percentile(50),
        measured.percentile(99),
        measured.failed,
    ]


def _report(
    rows: list[_Round],
    settings: list[str],
    duration: float,
    concurrency: list[int],
    rounds: int,
    workers: int,
) -> Report:
    report = Report("durability", "Confirm durability: what waiting for a replica costs")
    report.text(
        f"A primary Redis and one replica (both private, on this machine); the service with "
        f"{workers} process(es), `--confirm-durability` as the row says; callers each doing "
        f"unary Hold then Confirm of one seat ({' and '.join(map(str, concurrency))} callers "
        f"at once), {duration:.0f} s per measure after {WARMUP:.0f} s of unmeasured load, "
        f"{rounds} rounds alternating between settings. Latency is the Confirm call's, as the "
        "caller sees it. `aof` (WAITAOF) needs Redis >= 7.2"
        + ("." if "aof" in settings else ": this Redis lacks it, so it is not measured.")
    )
    report.table(
        ["round", "setting", "callers", "confirms/s", "p50 ms", "p99 ms", "failed"],
        [_row(index // (len(settings) * len(concurrency)) + 1, r) for index, r in enumerate(rows)],
    )

    def median(setting: str, callers: int, value: str) -> float:
        picked = [r for r in rows if r.setting == setting and r.callers == callers]
        if value == "rate":
            return statistics.median(r.rate for r in picked)
        return statistics.median(r.percentile(99) for r in picked)

    summary: list[list[object]] = []
    for callers in concurrency:
        base_rate, base_p99 = median("none", callers, "rate"), median("none", callers, "p99")
        for setting in settings:
            rate, p99 = median(setting, callers, "rate"), median(setting, callers, "p99")
            summary.append(
                [setting, callers, rate, p99, f"x{rate / base_rate:.2f}", f"x{p99 / base_p99:.2f}"]
            )
    report.text("Medians over the rounds, ratios against `none` at the same load in the same run:")
    report.table(
        ["setting", "callers", "confirms/s", "p99 ms", "confirms/s vs none", "p99 vs none"],
        summary,
    )
    return report
