"""Service harness: the same unary Hold load against the real service and an empty handler.

Both servers run at once, served the same way (grpc.aio, uvloop, SO_REUSEPORT workers); rounds
alternate between them so the machine's noise falls on both alike. The ratio of their
throughputs is what the service adds over the framework's own floor.
"""

import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

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


def _run(
    config: DriverConfig, server: ServerProcess, redis_url: str
) -> tuple[Samples, float, float]:
    """The load on one server; returns its samples and server and Redis CPU us per call."""
    server_cpu, redis_cpu = server.cpu_seconds(), _redis_cpu(redis_url)
    samples = run_driver(replace(config, target=server.target))
    calls = max(1, samples.count)
    server_us = (server.cpu_seconds() - server_cpu) / calls * 1e6
    return samples, server_us, (_redis_cpu(redis_url) - redis_cpu) / calls * 1e6


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
    rates: dict[str, list[float]] = {"Hold": [], "empty": []}
    with inventory_stack(workers, events) as stack, tempfile.TemporaryDirectory() as tmp:
        empty_target = local_target()
        command = empty_command(empty_target, workers)
        with server_process(command, empty_target, Path(tmp) / "empty.log") as empty_server:
            for index in range(rounds):
                event_ids = [f"svc{index * EVENTS_PER_ROUND + i}" for i in range(EVENTS_PER_ROUND)]
                config = replace(base, event_ids=event_ids)
                for name, server in (("Hold", stack.server), ("empty", empty_server)):
                    samples, server_us, redis_us = _run(config, server, stack.redis_url)
                    part = samples.window(1.0, duration)
                    rates[name].append(part.rate(duration - 1.0))
                    rows.append(
                        [
                            index + 1,
                            name,
                            rates[name][-1],
                            part.percentile_ms(50),
                            part.percentile_ms(99),
                            part.outcomes(FAILED),
                            server_us,
                            redis_us if name == "Hold" else float("nan"),
                        ]
                    )
    real_rate, empty_rate = statistics.median(rates["Hold"]), statistics.median(rates["empty"])
    ratio = real_rate / empty_rate if empty_rate else float("nan")
    report = Report("service", "Service: unary Hold vs an empty gRPC handler")
    report.text(
        f"{workers} server process(es) each; load: {processes} processes x {concurrency} unary "
        f"calls in flight (grpc.aio), {duration:.0f} s per round, first second left out, "
        f"{rounds} alternating rounds. Real holds take 1-6 seats from uncontended pools. "
        "Server CPU per call: user+system time of the server's processes over the round "
        "(psutil), divided by the calls; Redis CPU the same from INFO cpu.",
        f"**Median Hold throughput {real_rate:,.0f}/s vs empty handler {empty_rate:,.0f}/s: "
        f"{ratio:.0%}** (target >= 80%: {'met' if ratio >= 0.8 else 'missed'}).",
    )
    report.table(
        [
            "round",
            "handler",
            "calls/s",
            "p50 ms",
            "p99 ms",
            "failed",
            "server CPU us/call",
            "Redis CPU us/call",
        ],
        rows,
    )
    return report
