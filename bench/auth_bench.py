"""Auth harness: unary Hold and Execute throughput with API keys and quotas on vs off.

Three servers run at once over one Redis, served the same way (`lml-inventory serve`): without
keys; with a key file whose key has a rate (checked on every call, never reached), leasing
quota from Redis as deployed; and the same asking Redis on every call (`--quota-lease 0`), which
is what the `limits` library costs used directly. Rounds alternate between them so the
machine's noise falls on all alike; the ratio of median throughputs is the cost of the checks.
"""

import asyncio
import math
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from bench.driver import DriverConfig, run_driver
from bench.report import Report
from bench.samples import FAILED
from bench.scenarios import SEATS_PER_OP
from bench.stack import ServerProcess, inventory_command, local_target, redis_server, server_process
from bench.workload import create_events
from inventory.auth import hash_secret

SECRET = "bench-secret-not-for-production"  # this run's private key, for its private servers
MODES = {
    "off": [],
    "keys+quotas": ["--api-keys", "{keys}"],
    "keys+quotas, Redis per call": ["--api-keys", "{keys}", "--quota-lease", "0"],
}
# A rate the load never reaches: every call is counted, none refused.
KEY_FILE = (
    '{"keys": [{"id": "bench", "sha256": "%s", "scopes": ["sell"], '
    '"rate": {"ops_per_s": 10000000, "burst": 10000000}}]}'
)
EVENT_SEATS = 20_000  # many small events: each is one script, short enough for a busy machine
COLUMNS = ["round", "load", "mode", "ops/s", "p50 ms", "p99 ms", "failed", "server CPU us/op"]


@contextmanager
def _servers(workers: int, workdir: Path, redis_url: str) -> Iterator[dict[str, ServerProcess]]:
    keys = workdir / "keys.json"
    keys.write_text(KEY_FILE % hash_secret(SECRET))
    with ExitStack() as stack:
        servers = {}
        for index, (mode, extra) in enumerate(MODES.items()):
            target = local_target()
            command = inventory_command(target, redis_url, workers)
            command += [arg.format(keys=keys) for arg in extra]
            log = workdir / f"server-{index}.log"
            servers[mode] = stack.enter_context(server_process(command, target, log))
        yield servers


def _round(
    config: DriverConfig, server: ServerProcess, mode: str, duration: float
) -> tuple[float, float, float, int, float]:
    config = replace(config, target=server.target, api_key="" if mode == "off" else SECRET)
    cpu = server.cpu_seconds()
    samples = run_driver(config)
    cpu = server.cpu_seconds() - cpu
    part = samples.window(1.0, duration - 1.0)
    return (
        part.rate(duration - 2.0),
        part.percentile_ms(50),
        part.percentile_ms(99),
        samples.outcomes(FAILED),
        cpu / max(1, samples.count) * 1e6,
    )


async def _create(redis_url: str, event_ids: list[str]) -> None:
    # No read timeout: on a busy machine one event's creation may outlast redis-py's 5 s.
    redis = AsyncRedis.from_url(redis_url, decode_responses=True, socket_timeout=None)
    try:
        await create_events(redis, event_ids, EVENT_SEATS)
    finally:
        await redis.aclose()


def _events(prefix: str, operations: float) -> list[str]:
    count = max(1, math.ceil(operations * SEATS_PER_OP / EVENT_SEATS))
    return [f"{prefix}-{index}" for index in range(count)]


def auth(workers: int, processes: int, duration: float, rounds: int) -> Report:
    loads = {
        "unary Hold": DriverConfig(
            "",
            [],
            EVENT_SEATS,
            duration,
            processes,
            streams=2,
            unary=True,
            concurrency=64,
        ),
        "Execute": DriverConfig(
            "",
            [],
            EVENT_SEATS,
            duration,
            processes,
            streams=1,
            batch=30,
            in_flight=1,
        ),
    }
    expected = {"unary Hold": 4_000.0, "Execute": 15_000.0}  # ops/s, to size the events
    plan = [
        (index, load, mode, _events(f"{load[0]}{index}{position}", expected[load] * duration))
        for index in range(rounds)
        for load in loads
        for position, mode in enumerate(MODES)
    ]
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="lml-bench-") as tmp:
        workdir = Path(tmp)
        with (
            redis_server(workdir / "redis") as redis,
            _servers(workers, workdir, redis.url) as servers,
        ):
            for index, load, mode, event_ids in plan:
                # Fresh events per run, and only those: Redis stays small.
                with Redis.from_url(redis.url) as client:
                    client.flushall()
                asyncio.run(_create(redis.url, event_ids))
                config = replace(loads[load], event_ids=event_ids)
                measured = _round(config, servers[mode], mode, duration)
                rows.append([index + 1, load, mode, *measured])
    report = Report("auth", "API keys and quotas: throughput on vs off")
    report.text(
        f"{workers} server process(es) per mode, {processes} load processes; unary Hold: 64 "
        f"calls in flight per process; Execute: batches of 30, closed loop. {duration:.0f} s "
        f"per round (first and last second left out), {rounds} rounds, modes alternating "
        "within each round. 'keys+quotas': every call carries a key that the server looks up "
        "and charges to a rate in Redis (leases of 5% of the budget); 'Redis per call': the "
        "same with --quota-lease 0 (the limits library called for every call).",
        *_summary(rows),
    )
    report.table(COLUMNS, rows)
    return report


def _summary(rows: list[list[object]]) -> list[str]:
    """Per load, the medians of each mode against off: throughput, and server CPU per operation.

    Rounds whose load never got going (no operation measured: the machine was too busy for the
    load processes to start in time) are left out of the medians, and counted.
    """
    ops, cpu = COLUMNS.index("ops/s"), COLUMNS.index("server CPU us/op")
    valid = [row for row in rows if float(row[ops]) > 0]  # type: ignore[arg-type]
    lines = []
    if len(valid) < len(rows):
        lines.append(f"{len(rows) - len(valid)} of {len(rows)} runs measured nothing, left out.")
    for load in ("unary Hold", "Execute"):

        def median(mode: str, column: int, load: str = load) -> float:
            values = [float(r[column]) for r in valid if r[1] == load and r[2] == mode]  # type: ignore[arg-type]
            return statistics.median(values) if values else float("nan")

        off, off_cpu = median("off", ops), median("off", cpu)
        parts = [f"off {off:,.0f}/s, {off_cpu:,.0f} us server CPU per operation"]
        for mode in list(MODES)[1:]:
            on, on_cpu = median(mode, ops), median(mode, cpu)
            parts.append(
                f"{mode} {on:,.0f}/s (**{on / off:.1%}** of off), {on_cpu:,.0f} us "
                f"(**{on_cpu / off_cpu - 1:+.1%}** server CPU per operation)"
            )
        lines.append(f"{load}, medians: " + "; ".join(parts) + ".")
    return lines
