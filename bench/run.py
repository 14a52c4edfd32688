"""`python -m bench.run SCENARIO`: runs one benchmark on private servers and writes its report.

Each scenario starts what it needs (a private redis-server on a free port, the inventory service
with --workers processes, a throwaway Postgres database), runs for a fixed time, stops it all and
writes bench/results/<timestamp>-<scenario>.md with PNG charts beside it.
"""

from dataclasses import dataclass

import click

from bench import scenarios
from bench.admin_stall_bench import admin_stall as admin_stall_harness
from bench.auth_bench import auth as auth_harness
from bench.availability_bench import availability as availability_harness
from bench.ceiling_bench import Settings, ceiling_sections
from bench.driver import DriverConfig
from bench.durability_bench import durability as durability_harness
from bench.engine_bench import engine as engine_harness
from bench.fanout_bench import Setting
from bench.fanout_bench import fanout as fanout_harness
from bench.instructions_bench import instructions as instructions_harness
from bench.payload_bench import payload_sizes as payload_sizes_harness
from bench.peers import peers as peers_harness
from bench.queue_bench import queue as queue_harness
from bench.redis_cost_bench import redis_cost as redis_cost_harness
from bench.report import Report
from bench.service_bench import service as service_harness
from bench.shard_bench import ShardSettings, shard_section


@dataclass
class Options:
    workers: int
    processes: int


def _done(report: Report) -> None:
    click.echo(f"wrote {report.write()}")


@click.group()
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Inventory service processes.",
)
@click.option(
    "--processes",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Load-generator processes.",
)
@click.pass_context
def main(context: click.Context, workers: int, processes: int) -> None:
    """Benchmarks of the seat inventory (reports go to bench/results/)."""
    context.obj = Options(workers, processes)


@main.command()
@click.option("--duration", default=20.0, show_default=True)
@click.option("--warmup", default=3.0, show_default=True)
@click.option("--streams", default=1, show_default=True, help="Execute streams per process.")
@click.option("--batch", default=30, show_default=True, help="Operations per batch.")
@click.option("--in-flight", default=1, show_default=True, help="Batches in flight per stream.")
@click.pass_obj
def steady(
    options: Options, duration: float, warmup: float, streams: int, batch: int, in_flight: int
) -> None:
    """Closed-loop mixed load over Execute streams."""
    config = DriverConfig(
        "", [], scenarios.EVENT_SEATS, duration, options.processes, streams, batch, in_flight
    )
    _done(scenarios.steady(config, options.workers, warmup, expected_rate=25_000))


@main.command("flash-sale")
@click.option("--seats", default=10_000, show_default=True)
@click.option("--buyers", default=20_000, show_default=True)
@click.option("--batch", default=50, show_default=True)
@click.option("--time-limit", default=60.0, show_default=True, help="Seconds at most.")
@click.pass_obj
def flash_sale(options: Options, seats: int, buyers: int, batch: int, time_limit: float) -> None:
    """A flash sale: every buyer at once; time to sell out and zero double-booking checked."""
    config = DriverConfig("", [], seats, time_limit, options.processes, 1, batch, 2)
    _done(scenarios.flash_sale(config, options.workers, seats, buyers))


@main.command()
@click.option(
    "--rates", default="2000,4000,6000,8000,10000,12000,14000,16000,20000", show_default=True
)
@click.option("--step-duration", default=8.0, show_default=True)
@click.option("--warmup", default=2.0, show_default=True)
@click.pass_obj
def sweep(options: Options, rates: str, step_duration: float, warmup: float) -> None:
    """Open-loop rate sweep: the highest rate with p99 < 10 ms."""
    config = DriverConfig("", [], scenarios.EVENT_SEATS, step_duration, options.processes, 1)
    report, _best = scenarios.rate_sweep(
        config, options.workers, [int(rate) for rate in rates.split(",")], warmup
    )
    _done(report)


@main.command()
@click.option("--sizes", default="1000,10000,100000", show_default=True)
@click.option("--holds", default=10_000, show_default=True, help="Holds per size and round.")
@click.option("--pipeline", default=100, show_default=True, help="Calls per round trip.")
@click.option("--rounds", default=3, show_default=True, help="Interleaved rounds of every size.")
def engine(sizes: str, holds: int, pipeline: int, rounds: int) -> None:
    """Lua scripts driven directly: ops/s and Redis CPU per call by event size."""
    _done(engine_harness([int(size) for size in sizes.split(",")], holds, pipeline, rounds))


@main.command("redis-cost")
@click.option("--seats", default=100_000, show_default=True, help="Seats per event.")
@click.option(
    "--rows", default="25,100,500", show_default=True, help="Seats per row, one event each."
)
@click.option(
    "--holds", default=1_000, show_default=True, help="Holds per phase, row length and round."
)
@click.option("--pipeline", default=100, show_default=True, help="Calls per round trip.")
@click.option("--rounds", default=3, show_default=True, help="Interleaved rounds.")
@click.option("--latency-seconds", default=3.0, show_default=True, help="Per p99 measure.")
def redis_cost(
    seats: int, rows: str, holds: int, pipeline: int, rounds: int, latency_seconds: float
) -> None:
    """Redis µs per hold + release cycle, the project against the minimal reference."""
    row_lengths = [int(length) for length in rows.split(",")]
    _done(redis_cost_harness(seats, row_lengths, holds, pipeline, rounds, latency_seconds))


@main.command()
@click.option("--duration", default=10.0, show_default=True)
@click.option("--concurrency", default=64, show_default=True, help="Calls in flight per process.")
@click.option("--rounds", default=3, show_default=True, help="Alternating rounds of each.")
@click.pass_obj
def service(options: Options, duration: float, concurrency: int, rounds: int) -> None:
    """Unary Hold against the real service and against an empty handler: the ratio."""
    _done(service_harness(options.workers, options.processes, duration, concurrency, rounds))


@main.command("durability")
@click.option("--duration", default=10.0, show_default=True)
@click.option(
    "--concurrency", default="1,32", show_default=True, help="Callers at once, one measure each."
)
@click.option("--rounds", default=3, show_default=True, help="Alternating rounds of each.")
@click.pass_obj
def durability_command(options: Options, duration: float, concurrency: str, rounds: int) -> None:
    """Confirm with --confirm-durability none / replica (/ aof): confirms/s and p99, ratios."""
    levels = [int(level) for level in concurrency.split(",")]
    _done(durability_harness(duration, levels, rounds, options.workers))


@main.command()
@click.option("--duration", default=8.0, show_default=True)
@click.option("--rounds", default=3, show_default=True, help="Rounds of every load and mode.")
@click.pass_obj
def auth(options: Options, duration: float, rounds: int) -> None:
    """Unary Hold and Execute with API keys and quotas on vs off: the cost of the checks."""
    _done(auth_harness(options.workers, options.processes, duration, rounds))


@main.command()
@click.option("--duration", default=10.0, show_default=True)
@click.option("--concurrency", default=32, show_default=True)
@click.option("--seats", default=2_000, show_default=True, help="Seats in the contended event.")
@click.option("--rounds", default=3, show_default=True, help="Alternating rounds of each.")
def peers(duration: float, concurrency: int, seats: int, rounds: int) -> None:
    """The engine beside per-seat SET NX EX and Postgres SELECT ... FOR UPDATE."""
    _done(peers_harness(duration, concurrency, seats, rounds))


@main.command()
@click.option("--sizes", default="1000,20000,100000", show_default=True)
@click.option("--readers", default=16, show_default=True, help="Concurrent callers per measure.")
@click.option("--duration", default=5.0, show_default=True, help="Seconds per measure.")
@click.option("--rounds", default=2, show_default=True, help="Alternating rounds of each.")
def availability(sizes: str, readers: int, duration: float, rounds: int) -> None:
    """GetAvailability chunked and cached vs the one-script read; holds beside 100 readers."""
    _done(availability_harness([int(size) for size in sizes.split(",")], readers, duration, rounds))


@main.command()
@click.option("--buyers", default=100_000, show_default=True, help="Buyers in the burst.")
@click.option("--concurrency", default=128, show_default=True, help="Calls in flight.")
@click.option("--per-minute", default=6_000, show_default=True, help="Admission rate.")
@click.option("--window", default=20.0, show_default=True, help="Seconds of admission measured.")
@click.option("--watchers", default=10_000, show_default=True, help="WatchQueue streams.")
def queue(buyers: int, concurrency: int, per_minute: int, window: float, watchers: int) -> None:
    """Waiting room: a join burst, admission accuracy, watch fan-out; the burst straight to Hold."""
    _done(queue_harness(buyers, concurrency, per_minute, window, watchers))


@main.command("admin-stall")
@click.option("--sizes", default="1000,20000,100000", show_default=True)
@click.option("--row-lengths", default="25,100,500", show_default=True)
@click.option("--rate", default=500.0, show_default=True, help="Holds per second meanwhile.")
@click.option("--rounds", default=2, show_default=True, help="Alternating rounds of each.")
@click.option("--quiet", default=1.0, show_default=True, help="Seconds of holds alone before each.")
def admin_stall(sizes: str, row_lengths: str, rate: float, rounds: int, quiet: float) -> None:
    """Creating and rebuilding events, chunked and in one call, beside a sale's holds."""
    _done(
        admin_stall_harness(
            [int(size) for size in sizes.split(",")],
            [int(length) for length in row_lengths.split(",")],
            rate,
            rounds,
            quiet,
        )
    )


@main.command()
@click.option("--viewers", default="200,1000,5000", show_default=True, help="Viewers per measure.")
@click.option("--rates", default="50,100", show_default=True, help="Changes/s offered.")
@click.option(
    "--compare",
    default="200x50",
    show_default=True,
    help="VIEWERSxRATE measures of the old per-viewer design (empty: none).",
)
@click.option("--seats", default=5_000, show_default=True)
@click.option("--duration", default=15.0, show_default=True, help="Seconds of load per measure.")
@click.option("--rounds", default=1, show_default=True, help="Interleaved rounds of every setting.")
def fanout(
    viewers: str, rates: str, compare: str, seats: int, duration: float, rounds: int
) -> None:
    """SSE fan-out of the gateway: delivery latency and gateway CPU by viewers x changes/s."""
    old = [
        Setting("per-viewer", int(n), int(rate))
        for n, rate in (item.split("x") for item in compare.split(",") if item)
    ]
    _done(
        fanout_harness(
            [int(n) for n in viewers.split(",")],
            [int(r) for r in rates.split(",")],
            old,
            seats,
            duration,
            rounds,
        )
    )


@main.command()
@click.option("--seats", default=100_000, show_default=True, help="Seats of each event.")
@click.option("--clients", default=4, show_default=True, help="Load processes on the one event.")
@click.option("--calls", default=10_000, show_default=True, help="Script calls per process.")
@click.option("--pipeline", default=200, show_default=True, help="Calls per round trip.")
@click.option("--rounds", default=3, show_default=True, help="Interleaved rounds of each.")
@click.option("--service-duration", default=6.0, show_default=True, help="0: not measured.")
@click.option("--shards", default="1,2,3", show_default=True, help="Independent redis-servers.")
@click.option("--cluster/--no-cluster", default=True, show_default=True)
@click.pass_obj
def ceiling(
    options: Options,
    seats: int,
    clients: int,
    calls: int,
    pipeline: int,
    rounds: int,
    service_duration: float,
    shards: str,
    cluster: bool,
) -> None:
    """One event with Redis as the bottleneck, by mix, beside the reference; then over shards."""
    report = Report("ceiling", "Ceiling: one event with Redis saturated, and events over shards")
    settings = Settings(
        seats, clients, calls, pipeline, rounds, service_duration, options.processes
    )
    ceiling_sections(report, settings)
    counts = [int(count) for count in shards.split(",") if count]
    if counts or cluster:
        shard_settings = ShardSettings(counts, cluster, 2, seats, calls, pipeline, rounds)
        shard_section(report, shard_settings)
    _done(report)


@main.command("payload-sizes")
def payload_sizes() -> None:
    """Bytes of the opera house's availability and seat-map answers, full and compact forms."""
    _done(payload_sizes_harness())


@main.command()
@click.option("--seats", default=20_000, show_default=True, help="Seats per event.")
@click.option("--rows", default="25,100,500", show_default=True, help="Seats per row, per event.")
@click.option("--holds", default=300, show_default=True, help="Calls per measured pipeline.")
def instructions(seats: int, rows: str, holds: int) -> None:
    """Redis instructions per hold + release (callgrind), the project against the reference."""
    row_lengths = [int(length) for length in rows.split(",")]
    _done(instructions_harness(seats, row_lengths, holds))


if __name__ == "__main__":
    main()
