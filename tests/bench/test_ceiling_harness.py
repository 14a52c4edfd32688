"""The ceiling harness on tiny settings: every mix measured for each server that has it, the
calls it counts are the calls Redis ran, every hold it makes is released, and script errors
are counted as failures."""

import asyncio
from pathlib import Path

import redis
from redis.asyncio import Redis

from bench.ceiling_bench import Settings, ceiling_sections
from bench.ceiling_mixes import MIXES, ClientSpec, ProjectCalls, ReferenceCalls, named_release
from bench.pipelined_load import Stream, run_streams
from bench.report import Report
from bench.shard_bench import ShardSettings, shard_section
from bench.stack import redis_server
from bench.workload import create_events
from inventory import keys
from tests.bench.test_harnesses import tables, written

SEATS = 2_000


async def _create(url: str, event_id: str) -> None:
    client = Redis.from_url(url, decode_responses=True)
    try:
        await create_events(client, [event_id], SEATS)
    finally:
        await client.aclose()


def _streams(port: int, event_id: str, clients: int) -> list[Stream]:
    calls = ProjectCalls()
    return [
        Stream(port, named_release(calls, ClientSpec(event_id, c, clients, SEATS, 400, 40, c)))
        for c in range(clients)
    ]


def test_pipelined_load_counts_what_redis_ran_and_releases_every_hold(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as server:
        ProjectCalls.load(server.port)
        asyncio.run(_create(server.url, "e"))
        result = run_streams(_streams(server.port, "e", clients=2))
        assert result.failed == 0
        [shard] = result.shards
        assert result.calls == shard.calls == 2 * 400
        assert shard.cpu_seconds > 0 and shard.redis_usec > 0
        with redis.Redis(port=server.port, decode_responses=True) as client:
            states = client.hvals(keys.event_keys("e").seats)
        assert len(states) == SEATS and set(states) == {"A"}
        # Calls on an event that does not exist: every one is counted as failed.
        missing = run_streams(_streams(server.port, "missing", clients=1))
        assert missing.failed == missing.calls == 400


def test_reference_calls_run_on_the_reference_scripts(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as server:
        ReferenceCalls.load(server.port)
        spec = ClientSpec("r", 0, 1, SEATS, 400, 40, 1)
        result = run_streams([Stream(server.port, named_release(ReferenceCalls(), spec))])
        assert result.failed == 0 and result.calls == 400
        with redis.Redis(port=server.port) as client:
            assert client.hlen("ref:{r}:seats") == 0  # every hold released


def test_ceiling_report_has_every_mix_service_and_shard(results_dir: Path) -> None:
    report = Report("ceiling", "ceiling smoke")
    ceiling_sections(report, Settings(SEATS, 2, 200, 40, 1, 2.0, 1))
    shard_section(report, ShardSettings([1, 2], True, 1, SEATS, 200, 40, 1))
    _environment, direct, service, shards = tables(written(report, results_dir))
    measured = {(row["mix"], row["scripts"]) for row in direct}
    expected = {(mix.name, "project") for mix in MIXES}
    expected |= {(mix.name, "reference") for mix in MIXES if mix.reference}
    assert measured == expected
    assert {row["failed calls"] for row in direct} == {"0"}
    assert all(row["CPU us / reference"].startswith("x") for row in direct)
    assert [row["server"] for row in service] == [
        "project, 1 process",
        "project, 2 processes",
        "reference, 1 process",
    ]
    assert {row["failed"] for row in service} == {"0"}
    assert [row["shards"] for row in shards] == ["1", "2", "3"]
    # Every shard runs the same calls on the same seats: the same work per call.
    assert len({row["Redis commands per call"] for row in shards}) == 1
    assert float(shards[0]["Redis commands per call"]) > 1
    assert shards[-1]["setup"] == "Redis Cluster, 3 primaries"
