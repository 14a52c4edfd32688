"""Service harness: the same unary Hold load against the real service and an empty handler.

Both servers run at once, served the same way (grpc.aio, uvloop, SO_REUSEPORT workers); rounds
alternate between them so the machine's noise falls on both alike. The ratio of their
throughputs is what the service adds over the framework's own floor.
"""

import resource
import statistics
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import redis

from bench.driver import DriverConfig, run_driver
from bench.report import Report
from bench.samples import FAILED, Samples
from bench.scenarios import EVENT_SEATS, inventory_stack
from bench.stack import ServerProcess, empty_command, local_target, server_process

EVENTS_PER_ROUND = 2


def _redis_cpu(redis_url: str) -> float:
    with redis.Redis.from_url(redis_url) as client:
        info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@dataclass(frozen=True)
class _Round:
    """One handler's round: what the load saw, and the machine's CPU time per call by whom."""

    samples: Samples
    server_us: float
    redis_us: float
    generator_us: float
    other_us: float  # every other process on the machine (other people's work included)
    idle: float  # share of the machine's CPU time left idle


def _generator_cpu() -> float:
    # The load generator's processes are this process's children, joined when a round ends.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _machine_cpu() -> tuple[float, float]:
    """Busy and idle CPU seconds of the whole machine so far."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle, idle


def _run(config: DriverConfig, server: ServerProcess, redis_url: str) -> _Round:
    """The load on one server, with the CPU time every party spent on it."""
    server_cpu, redis_cpu, generator_cpu = (
        server.cpu_seconds(),
        _redis_cpu(redis_url),
        _generator_cpu(),
    )
    busy, idle = _machine_cpu()
    samples = run_driver(replace(config, target=server.target))
    calls = max(1, samples.count)
    server_s = server.cpu_seconds() - server_cpu
    redis_s = _redis_cpu(redis_url) - redis_cpu
    generator_s = _generator_cpu() - generator_cpu
    busy_after, idle_after = _machine_cpu()
    busy_s, idle_s = busy_after - busy, idle_after - idle
    other_s = max(0.0, busy_s - server_s - redis_s - generator_s)
    return _Round(
        samples,
        server_s / calls * 1e6,
        redis_s / calls * 1e6,
        generator_s / calls * 1e6,
        other_s / calls * 1e6,
        idle_s / (busy_s + idle_s),
    )


HANDLERS = ("Hold", "empty")
COLUMNS = [
    "round",
    "handler",
    "calls/s",
    "p50 ms",
    "p99 ms",
    "failed",
    "server CPU us/call",
    "Redis CPU us/call",
    "load generator CPU us/call",
    "other CPU us/call",
    "machine idle",
]


def _row(index: int, name: str, result: _Round, duration: float) -> list[object]:
    part = result.samples.window(1.0, duration)
    return [
        index + 1,
        name,
        part.rate(duration - 1.0),
        part.percentile_ms(50),
        part.percentile_ms(99),
        part.outcomes(FAILED),
        result.server_us,
        result.redis_us if name == "Hold" else float("nan"),
        result.generator_us,
        result.other_us,
        f"{result.idle:.0%}",
    ]


def service(workers: int, processes: int, duration: float, concurrency: int, rounds: int) -> Report:
    events = {f"svc{index}": EVENT_SEATS for index in range(rounds * EVENTS_PER_ROUND)}
    base = DriverConfig(
        "",
        [],
        EVENT_SEATS,
        duration,
        processes,
        streams=2,
        unary=True,
        concurrency=concurrency,
        hot_share=0.0,
    )
    rows: list[list[object]] = []
    with inventory_stack(workers, events) as stack, tempfile.TemporaryDirectory() as tmp:
        empty_target = local_target()
        command = empty_command(empty_target, workers)
        with server_process(command, empty_target, Path(tmp) / "empty.log") as empty_server:
            for index in range(rounds):
                event_ids = [f"svc{index * EVENTS_PER_ROUND + i}" for i in range(EVENTS_PER_ROUND)]
                config = replace(base, event_ids=event_ids)
                for name, server in zip(HANDLERS, (stack.server, empty_server), strict=True):
                    rows.append(_row(index, name, _run(config, server, stack.redis_url), duration))
    report = Report("service", "Service: unary Hold vs an empty gRPC handler")
    report.text(
        f"{workers} server process(es) each; load: {processes} processes x {concurrency} unary "
        f"calls in flight (grpc.aio), {duration:.0f} s per round, first second left out, "
        f"{rounds} alternating rounds. Real holds take 1-6 seats from uncontended pools. "
        "CPU per call over each round, divided by its calls: the server's processes (psutil), "
        "Redis (INFO cpu), the load generator's processes (getrusage of the joined children), "
        "and every other process on the machine (its busy time less those three).",
        *_summary(rows),
    )
    report.table(COLUMNS, rows)
    return report


def _summary(rows: list[list[object]]) -> list[str]:
    """The ratio of median throughputs, and median CPU per call of each party, side by side."""

    def median(name: str, column: str) -> float:
        values = [float(row[COLUMNS.index(column)]) for row in rows if row[1] == name]  # type: ignore[arg-type]
        return statistics.median(values)

    real, empty = median("Hold", "calls/s"), median("empty", "calls/s")
    ratio = real / empty if empty else float("nan")
    parts = ["server", "load generator", "other"]
    costs = ", ".join(
        f"{part} {median('Hold', f'{part} CPU us/call'):,.0f} vs "
        f"{median('empty', f'{part} CPU us/call'):,.0f}"
        for part in parts
    )
    return [
        f"**Median Hold throughput {real:,.0f}/s vs empty handler {empty:,.0f}/s: {ratio:.0%}** "
        f"(target >= 80%: {'met' if ratio >= 0.8 else f'missed by {0.8 - ratio:.0%} points'}).",
        f"Median CPU us per call, Hold vs empty: {costs}; Redis "
        f"{median('Hold', 'Redis CPU us/call'):,.0f} for Hold.",
    ]
