"""Ceiling harness: operations per second on ONE event when Redis is the bottleneck.

Redis runs a script at a time and every key of an event shares one hash slot, so the Redis time
per operation bounds what one event can take, whatever the number of service processes. Each
mix is driven straight at Redis (pre-encoded pipelines from several processes, so Redis and not
Python saturates: the ceiling) for the project's scripts and, where it has the operations, for
the minimal reference's, interleaved in the same run; then through the service (the project
with one and two processes, and the reference server, under the closed-loop Execute mix), what
the service reaches. Scaling over shards is in bench/shard_bench.py.
"""

import asyncio
import statistics
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import redis
from redis.asyncio import Redis

from bench.ceiling_mixes import MIXES, Calls, ClientSpec, Mix, ProjectCalls, ReferenceCalls
from bench.driver import DriverConfig, run_driver
from bench.pipelined_load import SCRIPT_STATS, LoadResult, Stream, run_streams
from bench.report import Report
from bench.samples import FAILED
from bench.scenarios import inventory_stack
from bench.stack import redis_server
from bench.workload import create_events


@dataclass(frozen=True)
class Settings:
    seats: int  # per event
    clients: int  # load processes
    calls: int  # script calls per client and measure
    pipeline: int  # calls per pipeline
    rounds: int
    service_duration: float  # 0: no service measures
    service_processes: int  # load processes of the service measures


def _ratio(value: float, reference: float) -> str:
    return f"x{value / reference:.2f}" if reference else "-"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


async def _create(url: str, event_ids: list[str], seats: int) -> None:
    client = Redis.from_url(url, decode_responses=True)
    try:
        await create_events(client, event_ids, seats)
    finally:
        await client.aclose()


def _measure(port: int, calls: Calls, mix: Mix, event_id: str, settings: Settings) -> LoadResult:
    streams = []
    for client in range(settings.clients):
        spec = ClientSpec(
            event_id,
            client,
            settings.clients,
            settings.seats,
            settings.calls,
            settings.pipeline,
            seed=zlib.crc32(f"{event_id}-{client}".encode()),
        )
        streams.append(Stream(port, mix.build(calls, spec)))
    return run_streams(streams)


@dataclass(frozen=True)
class _Runs:
    results: list[LoadResult]

    def median(self, value: Callable[[LoadResult], float]) -> float:
        return float(statistics.median(value(result) for result in self.results))

    @property
    def per_second(self) -> float:
        return self.median(lambda r: r.per_second)

    @property
    def cpu(self) -> float:
        return self.median(lambda r: r.shards[0].cpu_share)

    @property
    def usec(self) -> float:
        return self.median(lambda r: r.shards[0].usec_per_call)

    @property
    def cpu_usec(self) -> float:
        return self.median(lambda r: r.shards[0].cpu_usec_per_call)

    @property
    def commands(self) -> float:
        return self.median(lambda r: r.shards[0].commands_per_call)

    @property
    def ceiling(self) -> float:
        """Calls/s with a core of Redis's own: what the measured CPU time per call allows."""
        return 1e6 / self.cpu_usec

    @property
    def failed(self) -> int:
        return sum(result.failed for result in self.results)


def _direct_runs(url: str, settings: Settings) -> dict[tuple[str, str], _Runs]:
    """Every mix for each server that has it, rounds interleaved; one Redis for all."""
    port = _port(url)
    servers: list[Calls] = [ProjectCalls(), ReferenceCalls()]
    for calls in servers:
        calls.load(port)
    asyncio.run(_create(url, ["hot"], settings.seats))
    found: dict[tuple[str, str], list[LoadResult]] = {}
    for index in range(settings.rounds):
        for mix in MIXES:
            for calls in servers:
                if calls.name == "reference" and not mix.reference:
                    continue
                event_id = "hot"
                if mix.sells:
                    event_id = f"sale-{calls.name}-{index}"
                    if calls.name == "project":
                        asyncio.run(_create(url, [event_id], settings.seats))
                result = _measure(port, calls, mix, event_id, settings)
                found.setdefault((mix.name, calls.name), []).append(result)
    return {key: _Runs(results) for key, results in found.items()}


def _direct_rows(runs: dict[tuple[str, str], _Runs]) -> list[list[object]]:
    rows: list[list[object]] = []
    baseline = runs[(MIXES[0].name, "reference")]
    for mix in MIXES:
        reference = runs.get((mix.name, "reference"), baseline)
        for name in ("project", "reference"):
            measured = runs.get((mix.name, name))
            if measured is None:
                continue
            rows.append(
                [
                    mix.name,
                    name,
                    measured.per_second,
                    f"{measured.cpu:.0%}",
                    measured.cpu_usec,
                    measured.usec,
                    measured.commands,
                    measured.ceiling,
                    measured.failed,
                    _ratio(measured.cpu_usec, reference.cpu_usec),
                    _ratio(measured.usec, reference.usec),
                ]
            )
    return rows


DIRECT_HEADERS = [
    "mix",
    "scripts",
    "calls/s measured",
    "Redis CPU",
    "Redis CPU us per call",
    "Redis us per call (in scripts)",
    "Redis commands per call",
    "ceiling: calls/s on a core of its own",
    "failed calls",
    "CPU us / reference",
    "us in scripts / reference",
]


@dataclass
class _RedisSampler:
    """Redis's CPU time and script time, sampled every second while a load runs elsewhere."""

    port: int
    points: list[tuple[float, float, int, float]]  # time, CPU s, script calls, their usec
    stop: threading.Event

    def run(self) -> None:
        with redis.Redis(port=self.port) as client:
            while not self.stop.wait(1.0):
                cpu = client.info("cpu")
                commandstats = client.info("commandstats")
                stats = {
                    field: sum(
                        float(commandstats.get(name, {}).get(field, 0)) for name in SCRIPT_STATS
                    )
                    for field in ("calls", "usec")
                }
                self.points.append(
                    (
                        time.perf_counter(),
                        float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
                        int(stats.get("calls", 0)),
                        float(stats.get("usec", 0)),
                    )
                )

    def busy_seconds(self) -> tuple[float, float]:
        """Median CPU share and Redis us per call over the seconds of the load (those with at
        least half the busiest second's calls: start-up and wind-down left out)."""
        steps = [
            (b[1] - a[1]) / (b[0] - a[0])
            for a, b in zip(self.points, self.points[1:], strict=False)
        ]
        calls = [b[2] - a[2] for a, b in zip(self.points, self.points[1:], strict=False)]
        usec = [b[3] - a[3] for a, b in zip(self.points, self.points[1:], strict=False)]
        busy = [i for i, count in enumerate(calls) if count and count >= max(calls) / 2]
        if not busy:
            return float("nan"), float("nan")
        share = float(np.median([steps[i] for i in busy]))
        return share, float(np.median([usec[i] / calls[i] for i in busy]))


@contextmanager
def _sampling(port: int) -> Iterator[_RedisSampler]:
    sampler = _RedisSampler(port, [], threading.Event())
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    try:
        yield sampler
    finally:
        sampler.stop.set()
        thread.join()


SERVICES = [("project, 1 process", 1, False), ("project, 2 processes", 2, False)]
SERVICES += [("reference, 1 process", 1, True)]


def _service_round(workers: int, reference: bool, settings: Settings) -> list[float]:
    """ops/s (median of 1 s buckets), Redis CPU share, Redis us per call, failed operations."""
    config = DriverConfig(
        "",
        ["hot"],
        settings.seats,
        settings.service_duration,
        settings.service_processes,
        streams=2,
        batch=50,
        in_flight=2,
    )
    with (
        inventory_stack(workers, {"hot": settings.seats}, reference) as stack,
        _sampling(_port(stack.redis_url)) as sampler,
    ):
        samples = run_driver(replace(config, target=stack.target))
    seconds = int(settings.service_duration)
    per_second = samples.per_second(seconds)
    # The busy seconds only: a fast server may sell the event out before the end.
    per_second = per_second[per_second >= per_second.max() / 2]
    share, usec = sampler.busy_seconds()
    return [float(np.median(per_second)), share, usec, float(samples.outcomes(FAILED))]


def _service_rows(settings: Settings) -> list[list[object]]:
    measured: dict[str, list[list[float]]] = {name: [] for name, _, _ in SERVICES}
    for _ in range(settings.rounds):
        for name, workers, reference in SERVICES:
            measured[name].append(_service_round(workers, reference, settings))
    medians = {
        name: [float(np.median([r[i] for r in runs])) for i in range(4)]
        for name, runs in measured.items()
    }
    baseline = medians[SERVICES[-1][0]]
    return [
        [
            name,
            values[0],
            f"{values[1]:.0%}",
            values[2],
            int(values[3]),
            _ratio(values[0], baseline[0]),
            _ratio(values[2], baseline[2]),
        ]
        for name, values in medians.items()
    ]


SERVICE_HEADERS = [
    "server",
    "ops/s (median of busy 1 s)",
    "Redis CPU",
    "Redis us per call",
    "failed",
    "ops/s / reference",
    "Redis us / reference",
]


def ceiling_sections(report: Report, settings: Settings) -> None:
    """The direct and the service measures of one event, written into `report`."""
    with tempfile.TemporaryDirectory(prefix="lml-bench-") as tmp, redis_server(Path(tmp)) as server:
        runs = _direct_runs(server.url, settings)
    rows = _direct_rows(runs)
    named = runs[(MIXES[0].name, "project")]
    reference = runs[(MIXES[0].name, "reference")]
    report.text(
        "## One event, scripts driven directly",
        f"{settings.clients} load processes, each sending pipelines of {settings.pipeline} "
        f"script calls (FCALL of the project's library functions, EVALSHA of the reference's "
        "scripts) encoded before the clock starts (plain sockets, hiredis replies), "
        f"{settings.calls:,} calls per process and measure, on one event of "
        f"{settings.seats:,} seats in rows of 25; each process holds seats of its own stripe "
        "(no hold is refused) and releases or confirms each hold in the same pipeline. A call "
        "is one script run: a hold + release cycle is two. Best available and the snapshot read "
        "have no counterpart in the minimal reference: their ratios are to the reference's "
        "named hold + release. A snapshot read here is what a GetAvailability costs Redis per "
        "call: availability_version, then one 200-seat availability_chunk. Redis CPU is INFO "
        "cpu (user + sys) over the measure's wall time, and its CPU us per call that time "
        "over the calls (Redis's reading, replying and scripts: the steadier figure on a shared "
        "machine); Redis us per call (in scripts) is the usec / calls of cmdstat_fcall (the "
        "project) or cmdstat_evalsha (the reference), which "
        "also counts time a script was descheduled. The ceiling is 1,000,000 / CPU us per "
        "call: the calls/s of one event once its Redis has a core to itself (Redis CPU "
        f"~100%). Medians of {settings.rounds} interleaved rounds.",
        f"**Ceiling of one event, holds + releases of 1-2 named seats: "
        f"{named.ceiling:,.0f} calls/s ({named.cpu_usec:,.1f} us of Redis CPU per call, "
        f"{_ratio(named.cpu_usec, reference.cpu_usec)} the minimal reference's "
        f"{reference.cpu_usec:,.1f}); measured here {named.per_second:,.0f} calls/s at "
        f"{named.cpu:.0%} Redis CPU.**",
    )
    report.table(DIRECT_HEADERS, rows)
    if not settings.service_duration:
        return
    report.text(
        "## One event through the service",
        f"The closed-loop Execute mix of `steady` (holds of 1-6 seats, extends, confirms, "
        f"releases) on one event of {settings.seats:,} seats: {settings.service_processes} load "
        f"processes x 2 streams, batches of 50, 2 in flight per stream, "
        f"{settings.service_duration:.0f} s per measure, against the project's service with 1 "
        "and 2 processes and the minimal reference server, each on a fresh Redis. Redis CPU "
        "and us per call: medians of the 1 s samples of INFO taken while the load ran. "
        f"Medians of {settings.rounds} rounds.",
    )
    report.table(SERVICE_HEADERS, _service_rows(settings))
