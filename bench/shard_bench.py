"""Events spread over several Redis processes: the cost on each shard as shards are added.

One event per shard, each shard its own redis-server (1, 2, 3 of them), then the three
primaries of a Redis Cluster, each driven with the ceiling's hold + release mix by its own
load processes at once. The claim checked: a shard's Redis time per call does not grow with
the number of shards, so capacity is per-shard cost x shards where each shard has a core.
"""

import asyncio
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from redis.asyncio import Redis
from redis.asyncio import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from bench.ceiling_mixes import ClientSpec, ProjectCalls, named_release
from bench.pipelined_load import LoadResult, ShardCost, Stream, run_streams
from bench.report import Report
from bench.stack import redis_server
from bench.workload import create_events
from inventory import keys
from inventory.local_cluster import RedisClusterNodes


@dataclass(frozen=True)
class ShardSettings:
    counts: list[int]  # numbers of independent redis-servers to measure
    cluster: bool  # also a 3-primary Redis Cluster
    clients_per_shard: int
    seats: int
    calls: int  # per client and measure
    pipeline: int
    rounds: int


@contextmanager
def _independent(count: int, tmp: Path) -> Iterator[dict[int, str]]:
    """`count` redis-servers; yields port -> the event id it holds."""
    with ExitStack() as servers:
        ports = [
            servers.enter_context(redis_server(tmp / f"shard{index}")).port
            for index in range(count)
        ]
        yield {port: f"shard{index}" for index, port in enumerate(ports)}


def _cluster_event_ids(seed_port: int, primaries: int) -> dict[int, str]:
    """An event id whose keys live on each primary (port -> event id)."""
    found: dict[int, str] = {}
    with RedisCluster(host="127.0.0.1", port=seed_port) as cluster:
        for index in range(10_000):
            event_id = f"shard{index}"
            node = cluster.get_node_from_key(keys.event_keys(event_id).meta)
            found.setdefault(int(node.port), event_id)
            if len(found) == primaries:
                break
    return found


@contextmanager
def _cluster(tmp: Path) -> Iterator[dict[int, str]]:
    nodes = RedisClusterNodes(tmp / "cluster", masters=3)
    nodes.start()
    try:
        yield _cluster_event_ids(nodes.ports[0], 3)
    finally:
        nodes.stop()


async def _create(port: int, event_id: str, seats: int, cluster: bool) -> None:
    """Through a cluster client when the shard is a cluster node (the engine adds the event to
    the set of events, which lives on whichever node owns its slot)."""
    client = (
        cast(Redis, AsyncRedisCluster(host="127.0.0.1", port=port, decode_responses=True))
        if cluster
        else Redis(host="127.0.0.1", port=port, decode_responses=True)
    )
    try:
        await create_events(client, [event_id], seats)
    finally:
        await client.aclose()


def _measure(events: dict[int, str], settings: ShardSettings, seed: int) -> LoadResult:
    calls = ProjectCalls()
    streams = []
    for port, event_id in events.items():
        for client in range(settings.clients_per_shard):
            spec = ClientSpec(
                event_id,
                client,
                settings.clients_per_shard,
                settings.seats,
                settings.calls,
                settings.pipeline,
                seed + client,
            )
            streams.append(Stream(port, named_release(calls, spec)))
    return run_streams(streams)


def _runs(
    events: dict[int, str], settings: ShardSettings, cluster: bool = False
) -> list[LoadResult]:
    for port, event_id in events.items():
        ProjectCalls.load(port)
        asyncio.run(_create(port, event_id, settings.seats, cluster))
    return [_measure(events, settings, index * 100) for index in range(settings.rounds)]


def _row(name: str, results: list[LoadResult], base: float | None) -> list[object]:
    shards: list[ShardCost] = [shard for result in results for shard in result.shards]
    cpu_usec = statistics.median(shard.cpu_usec_per_call for shard in shards)
    return [
        name,
        len(results[0].shards),
        statistics.median(shard.per_second for shard in shards),
        f"{statistics.median(shard.cpu_share for shard in shards):.0%}",
        cpu_usec,
        f"x{cpu_usec / base:.2f}" if base else "x1.00",
        statistics.median(shard.commands_per_call for shard in shards),
        statistics.median(shard.usec_per_call for shard in shards),
        max(shard.usec_per_call for shard in shards),
        statistics.median(result.per_second for result in results),
        1e6 / cpu_usec,
    ]


CPU_USEC = 4  # the column of Redis CPU us per call
HEADERS = [
    "setup",
    "shards",
    "calls/s per shard",
    "Redis CPU per shard",
    "Redis CPU us per call",
    "CPU us per call / 1 shard",
    "Redis commands per call",
    "Redis us per call in scripts (median of shards)",
    "same, worst shard",
    "calls/s, all shards",
    "calls/s a shard takes on a core of its own",
]


def shard_section(report: Report, settings: ShardSettings) -> None:
    rows: list[list[object]] = []
    base: float | None = None
    with tempfile.TemporaryDirectory(prefix="lml-bench-") as tmp:
        for count in settings.counts:
            with _independent(count, Path(tmp) / f"{count}") as events:
                row = _row(f"{count} redis-server(s)", _runs(events, settings), base)
            base = base or float(row[CPU_USEC])  # type: ignore[arg-type]
            rows.append(row)
        if settings.cluster:
            with _cluster(Path(tmp)) as events:
                rows.append(
                    _row("Redis Cluster, 3 primaries", _runs(events, settings, cluster=True), base)
                )
    report.text(
        "## Events over several Redis processes",
        f"One event of {settings.seats:,} seats per shard, {settings.clients_per_shard} load "
        f"processes per shard sending the hold + release mix ({settings.calls:,} calls each, "
        f"pipelines of {settings.pipeline}) to all shards at once; medians over shards and "
        f"{settings.rounds} rounds. Redis CPU us per call is INFO cpu over the calls: the "
        "core time a call costs, which adding shards should not change (its ratio to one "
        "shard's is the check); Redis commands per call (commandstats) is the work a call "
        "does, whatever the machine's load; Redis us per call in scripts (commandstats) "
        "also counts time a script spent descheduled while the other shards and the load "
        "held the cores.",
        "**This machine has 2 cores shared by every shard, the load generator and others' "
        "work: the total cannot grow much past one shard's ceiling here.** With a core per "
        "shard (and cores for the load), the total is the last column x the number of shards, "
        "as long as the per-call cost stays flat and events are spread evenly over shards.",
    )
    report.table(HEADERS, rows)
