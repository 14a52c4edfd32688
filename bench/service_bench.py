"""Service harness: the same unary Hold load against the real service and an empty handler.

Both servers run at once, served the same way (grpc.aio, uvloop, SO_REUSEPORT workers); rounds
alternate between them so the machine's noise falls on both alike. The ratio of their
throughputs is what the service adds over the framework's own floor.
"""

import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from bench.driver import DriverConfig, run_driver
from bench.report import Report
from bench.samples import FAILED
from bench.scenarios import EVENT_SEATS, inventory_stack
from bench.stack import empty_command, local_target, server_process

EVENTS_PER_ROUND = 2


def service(workers: int, processes: int, duration: float, concurrency: int, rounds: int) -> Report:
    events = {f"svc{index}": EVENT_SEATS for index in range(rounds * EVENTS_PER_ROUND)}
    base = DriverConfig(
        "", [], EVENT_SEATS, duration, processes, streams=2, unary=True,
        concurrency=concurrency, hot_share=0.0,
    )
    rows: list[list[object]] = []
    real_rates: list[float] = []
    empty_rates: list[float] = []
    with inventory_stack(workers, events) as stack, tempfile.TemporaryDirectory() as tmp:
        empty_target = local_target()
        command = empty_command(empty_target, workers)
        with server_process(command, empty_target, Path(tmp) / "empty.log"):
            for index in range(rounds):
                event_ids = [f"svc{index * EVENTS_PER_ROUND + i}" for i in range(EVENTS_PER_ROUND)]
                real = run_driver(replace(base, target=stack.target, event_ids=event_ids))
                empty = run_driver(replace(base, target=empty_target, event_ids=event_ids))
                for name, samples, rates in (("Hold", real, real_rates), ("empty", empty, empty_rates)):
                    part = samples.window(1.0, duration)
                    rates.append(part.rate(duration - 1.0))
                    rows.append([index + 1, name, rates[-1], part.percentile_ms(50),
                                 part.percentile_ms(99), part.outcomes(FAILED)])
    real_rate, empty_rate = statistics.median(real_rates), statistics.median(empty_rates)
    ratio = real_rate / empty_rate
    report = Report("service", "Service: unary Hold vs an empty gRPC handler")
    report.text(
        f"{workers} server process(es) each; load: {processes} processes x {concurrency} unary "
        f"calls in flight (grpc.aio), {duration:.0f} s per round, first second left out, "
        f"{rounds} alternating rounds. Real holds take 1-6 seats from uncontended pools.",
        f"**Median Hold throughput {real_rate:,.0f}/s vs empty handler {empty_rate:,.0f}/s: "
        f"{ratio:.0%}** (target >= 80%: {'met' if ratio >= 0.8 else 'missed'}).",
    )
    report.table(["round", "handler", "calls/s", "p50 ms", "p99 ms", "failed"], rows)
    return report
