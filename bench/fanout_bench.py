"""Live seat maps for many viewers: delivery latency and gateway CPU by viewers x changes/s.

The real service (its own process, private Redis) and one gateway process (uvicorn); viewers
in another process reading raw SSE (bench/sse_viewers.py); holds and releases of 1-2 seats from
this process, open loop at the given changes/s, on an event of `seats` seats. Delivery latency
is the time from a change's commit (its `changed_at` in the change log) to its receipt by a
viewer, over every (viewer, change); nothing lost means every viewer ends at the inventory's
version with no gap in the versions it received (a snapshot starts over), and the viewers that
kept a full seat view hold exactly the inventory's seats. The design the shared fan-out replaced
(one upstream watch per viewer) is measured in the same run at the sizes it can bear.
"""

import asyncio
import contextlib
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil  # type: ignore[import-untyped]
from lml.inventory.v1 import inventory_pb2 as pb

from bench.report import Report
from bench.stack import inventory_command, local_target, redis_server, server_process
from bench.workload import create_events, seat_id
from clients.client import InventoryClient
from clients.errors import InventoryClientError
from clients.gateway.models import status_name
from inventory import keys
from inventory.local_servers import free_port
from inventory.redis_client import connect

OUTSTANDING = 100  # holds kept open: releases pick among them, so the load is steady


@dataclass(frozen=True)
class Setting:
    design: str  # "shared" or "per-viewer"
    viewers: int
    rate: int  # changes per second offered


@dataclass
class Outcome:
    setting: Setting
    round: int
    changes: int
    latencies: np.ndarray  # seconds, one per (viewer, change) received as a change
    cpu_percent: float
    viewers_cpu_percent: float  # the viewers' process: near 100 means the clients limit
    late_snapshots: int  # snapshots after the first: a viewer that fell behind
    at_final: int  # viewers that ended at the inventory's version with no gap
    views_equal: str  # "k/n" of the viewers that kept a full view
    full_gcs: list[float] | None  # seconds of each full GC of the gateway during the load
    viewers_lag: np.ndarray  # seconds late of the viewers process's timer during the load

    def p(self, q: float) -> float:
        """The q-th percentile of the latencies, ms."""
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies.size else np.nan

    @property
    def nothing_lost(self) -> bool:
        full, _, views = self.views_equal.partition("/")
        return self.at_final == self.setting.viewers and full == views != "0"

    def row(self) -> list[object]:
        return [
            self.round,
            self.setting.design,
            self.setting.viewers,
            self.setting.rate,
            self.changes,
            self.p(50),
            self.p(99),
            self.p(100),
            self.cpu_percent,
            self.viewers_cpu_percent,
            self.late_snapshots,
            f"{self.at_final}/{self.setting.viewers}",
            self.views_equal,
            self._full_gcs(),
            self._viewers_lag(),
        ]

    def _viewers_lag(self) -> str:
        if not self.viewers_lag.size:
            return "-"
        lag = self.viewers_lag * 1000
        return f"{np.percentile(lag, 99):.0f} / {lag.max():.0f}"

    def _full_gcs(self) -> str:
        if self.full_gcs is None:
            return "not recorded"  # the gateway did not exit by itself
        return f"{len(self.full_gcs)}: {max(self.full_gcs, default=0) * 1000:,.0f}"


HEADERS = [
    "round",
    "design",
    "viewers",
    "changes/s offered",
    "changes made",
    "p50 ms",
    "p99 ms",
    "max ms",
    "gateway CPU %",
    "viewers process CPU %",
    "late snapshots",
    "viewers at final version, no gap",
    "full views equal to inventory",
    "gateway full GCs in the load: longest ms",
    "viewers process lag p99 / max ms",
]


async def _load(
    client: InventoryClient, event_id: str, seats: int, rate: int, seconds: float
) -> int:
    """Holds and releases at `rate` changes/s for `seconds`; the changes made."""
    rng = random.Random(rate)
    held: list[tuple[str, str]] = []  # (hold id, holder id)
    made = [0]
    tasks: set[asyncio.Task[None]] = set()

    async def hold(number: int) -> None:
        wanted = [seat_id(s) for s in rng.sample(range(seats), rng.randint(1, 2))]
        request = pb.HoldRequest(event_id=event_id, holder_id=f"b{number}", seat_ids=wanted)
        try:
            held.append(((await client.hold_request(request)).hold.hold_id, request.holder_id))
            made[0] += 1
        except InventoryClientError:
            pass  # taken meanwhile

    async def release(hold: tuple[str, str]) -> None:
        try:
            await client.release(event_id, *hold)
            made[0] += 1
        except InventoryClientError:
            pass  # counted as not made

    start = time.monotonic()
    for number in range(int(rate * seconds)):
        delay = start + number / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(held) > OUTSTANDING or (held and rng.random() < 0.5):
            work = release(held.pop(rng.randrange(len(held))))
        else:
            work = hold(number)
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return made[0]


def _wait_for_port(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {seconds} s")


def _latencies(reads: np.ndarray, changed_at: np.ndarray) -> np.ndarray:
    if not reads.size:
        return np.zeros(0)
    firsts, lasts = reads[:, 0].astype(np.int64), reads[:, 1].astype(np.int64)
    counts = lasts - firsts + 1
    starts = np.repeat(firsts - (np.cumsum(counts) - counts), counts)
    versions = starts + np.arange(int(counts.sum()))
    latencies: np.ndarray = np.repeat(reads[:, 2], counts) - changed_at[versions]
    delivered: np.ndarray = latencies[~np.isnan(latencies)]
    return delivered


async def _changed_at(redis_url: str, event_id: str) -> np.ndarray:
    """Commit time (s) of each version in the change log, NaN where absent."""
    redis = connect(redis_url)
    try:
        entries: list[tuple[str, dict[str, str]]] = await redis.xrange(  # type: ignore[assignment]
            keys.event_keys(event_id).changes
        )
    finally:
        await redis.aclose()
    versions = [int(entry_id.partition("-")[2]) for entry_id, _ in entries]
    times = np.full(max(versions, default=0) + 1, np.nan)
    for version, (_, fields) in zip(versions, entries, strict=True):
        times[version] = int(fields["changed_at"]) / 1000
    return times


async def _create(redis_url: str, event_id: str, seats: int) -> None:
    redis = connect(redis_url)
    try:
        await create_events(redis, [event_id], seats)
    finally:
        await redis.aclose()


def _cpu_seconds(processes: list[psutil.Process]) -> list[float]:
    return [sum(process.cpu_times()[:2]) for process in processes]


@dataclass
class Driven:
    changes: int
    cpu: list[float]  # % of a core, of each process measured
    final: pb.GetAvailabilityResponse
    window: tuple[float, float]  # wall time of the load's start and end


async def _drive(
    target: str, event_id: str, setting: Setting, seats: int, seconds: float, pids: list[int]
) -> Driven:
    """The load, then the final inventory."""
    processes = [psutil.Process(pid) for pid in pids]
    before = _cpu_seconds(processes)
    async with InventoryClient(target) as client:
        started = time.time()
        changes = await _load(client, event_id, seats, setting.rate, seconds)
        after, ended = _cpu_seconds(processes), time.time()
        await asyncio.sleep(3.0)  # the last changes reach everyone
        final = await client.availability(event_id)
    cpu = [(end - start) / seconds * 100 for start, end in zip(before, after, strict=True)]
    return Driven(changes, cpu, final, (started, ended))


def _during(samples: list[list[float]], window: tuple[float, float]) -> list[float]:
    """The values of (wall time, value) samples taken within the window."""
    return [value for at, value in samples if window[0] <= at <= window[1]]


def _measure(
    setting: Setting,
    round_number: int,
    target: str,
    redis_url: str,
    seats: int,
    seconds: float,
    work: Path,
) -> Outcome:
    event_id = f"fanout-{setting.design}-{setting.viewers}-{setting.rate}-{round_number}"
    asyncio.run(_create(redis_url, event_id, seats))
    port = free_port()
    gateway = [sys.executable, "-m", "bench.fanout_gateway", "--target", target]
    out = work / f"{event_id}.json"
    pauses = work / f"{event_id}-gc.json"
    gateway += ["--redis-url", redis_url, "--port", str(port), "--pauses", str(pauses)]
    gateway += ["--per-viewer"] if setting.design == "per-viewer" else []
    viewers = [sys.executable, "-m", "bench.sse_viewers", "--port", str(port)]
    viewers += ["--event", event_id, "--count", str(setting.viewers), "--out", str(out)]
    with subprocess.Popen(gateway) as server:
        try:
            _wait_for_port(port)
            with subprocess.Popen(
                viewers, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            ) as watching:
                assert watching.stdin and watching.stdout
                if watching.stdout.readline().strip() != "ready":
                    raise RuntimeError("the viewers did not start")
                pids = [server.pid, watching.pid]
                driven = asyncio.run(_drive(target, event_id, setting, seats, seconds, pids))
                watching.stdin.write("stop\n")
                watching.stdin.flush()
                watching.wait(120)
        finally:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
    summary: dict[str, Any] = json.loads(out.read_text())
    reads = np.load(out.with_suffix(".npy"))
    final = driven.final
    inventory = {seat.seat_id: status_name(seat.status) for seat in final.seats}
    complete = [
        version == final.version and gaps == 0
        for version, gaps in zip(summary["versions"], summary["gaps"], strict=True)
    ]
    equal = sum(view == inventory for view in summary["views"])
    return Outcome(
        setting,
        round_number,
        driven.changes,
        _latencies(reads, asyncio.run(_changed_at(redis_url, event_id))),
        driven.cpu[0],
        driven.cpu[1],
        sum(max(0, count - 1) for count in summary["snapshots"]),
        sum(complete),
        f"{equal}/{len(summary['views'])}",
        _during(json.loads(pauses.read_text()), driven.window) if pauses.exists() else None,
        np.array(_during(summary["lags"], driven.window)),
    )


def fanout(
    viewers: list[int],
    rates: list[int],
    compare: list[Setting],
    seats: int,
    seconds: float,
    rounds: int = 1,
) -> Report:
    """Every setting once per round, the rounds one after the other (the machine is shared:
    what else runs moves single measures, and the medians of the rounds less)."""
    settings = [Setting("shared", n, rate) for n in viewers for rate in rates] + compare
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis:
        target = local_target()
        log = Path(tmp) / "service.log"
        with server_process(inventory_command(target, redis.url, 1), target, log):
            for round_number in range(1, rounds + 1):
                for setting in settings:
                    work = Path(tmp)
                    measured = _measure(
                        setting, round_number, target, redis.url, seats, seconds, work
                    )
                    outcomes.append(measured)
    return _report(outcomes, seats, seconds)


MEDIAN_HEADERS = [
    "design",
    "viewers",
    "changes/s offered",
    "p50 ms (median)",
    "p99 ms (median)",
    "p99 ms of each round",
    "gateway CPU % (median)",
    "rounds with nothing lost",
]


def _medians(outcomes: list[Outcome]) -> list[list[object]]:
    """One row per setting: the medians over its rounds."""
    rows: list[list[object]] = []
    for setting in dict.fromkeys(outcome.setting for outcome in outcomes):
        measured = [outcome for outcome in outcomes if outcome.setting == setting]
        p99s = [outcome.p(99) for outcome in measured]
        rows.append(
            [
                setting.design,
                setting.viewers,
                setting.rate,
                float(np.median([outcome.p(50) for outcome in measured])),
                float(np.median(p99s)),
                " / ".join(f"{p99:,.0f}" for p99 in p99s),
                float(np.median([outcome.cpu_percent for outcome in measured])),
                f"{sum(outcome.nothing_lost for outcome in measured)}/{len(measured)}",
            ]
        )
    return rows


def _report(outcomes: list[Outcome], seats: int, seconds: float) -> Report:
    report = Report("fanout", "Live seat maps: SSE fan-out by viewers and changes/s")
    report.text(
        f"One event of {seats:,} seats; holds and releases of 1-2 seats for {seconds:g} s at "
        "the offered rate; one gateway process. Latency: change commit to receipt, over every "
        "(viewer, change) received as a change. `shared`: one upstream watch per event per "
        "gateway process, each change encoded once; `per-viewer`: the design it replaced (one "
        "WatchEvent stream and one encoding per viewer), in the same run. Gateway CPU: the "
        "gateway process's CPU time over the load, as % of one core. The service, Redis, the "
        "viewers and the load share the same machine.",
        "Target (issue 14): 5,000 viewers at 100 changes/s on one gateway process, p99 < 1 s, "
        "nothing lost.",
        "`shared` sends each batch to every viewer in one pass of the feed's task, one socket "
        "write per viewer carrying everything since its last; the next batch waits until the "
        "passes have taken at most half the time (FanoutSettings.send_share), so the batches "
        "grow with the viewers. `late snapshots`: snapshots sent to viewers that fell behind "
        "(coalescing).",
        "`gateway full GCs in the load`: the gateway's collections of its oldest generation "
        "during the load, and the longest (its event loop stands still meanwhile; their length "
        "grows with the objects each open stream keeps). `viewers process lag`: how late a "
        "10 ms timer of the viewers process fired during the load (its receipt times are only "
        "as prompt as that).",
    )
    if max(outcome.round for outcome in outcomes) > 1:
        report.text("Medians over the rounds:")
        report.table(MEDIAN_HEADERS, _medians(outcomes))
        report.text("Each measure:")
    report.table(HEADERS, [outcome.row() for outcome in outcomes])
    return report
