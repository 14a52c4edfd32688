"""`lml-inventory serve --metrics-port --log-format json` as deployed: two worker processes, the
metrics of both on one port, and JSON log lines carrying the call's request id."""

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis as sync_redis
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from inventory.local_servers import RedisServer, free_port
from tests.test_serve_process import wait_serving


@pytest.fixture
def serving(private_server: RedisServer, tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    target, metrics_port = f"127.0.0.1:{free_port()}", free_port()
    log = tmp_path / "server.log"
    command = [sys.executable, "-m", "inventory.cli", "serve", "--listen", target]
    command += ["--redis-url", private_server.url, "--workers", "2", "--grace", "1"]
    command += ["--metrics-port", str(metrics_port), "--log-format", "json"]
    command += ["--sweep-interval", "0.1"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stderr=out)
    yield target, metrics_port, log
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_of_every_worker_and_json_logs_with_request_ids(
    serving: tuple[str, int, Path], private_server: RedisServer
) -> None:
    target, metrics_port, log = serving
    await wait_serving(target)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        seats = [pb.Seat(seat_id=f"s{i}") for i in range(40)]
        await stub.CreateEvent(pb.CreateEventRequest(event_id="ev", seats=seats))
        holds = []
        for i in range(20):  # new connections spread over both processes
            async with grpc.aio.insecure_channel(target) as own:
                request = pb.HoldRequest(event_id="ev", holder_id=f"h{i}", seat_ids=[f"s{i}"])
                holds.append((await pb_grpc.InventoryServiceStub(own).Hold(request)).hold)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Hold(pb.HoldRequest(event_id="ev", holder_id="x", seat_ids=["s0"]))
        await stub.Confirm(
            pb.ConfirmRequest(event_id="ev", hold_id=holds[0].hold_id, holder_id="h0")
        )
        batch = pb.ExecuteRequest(
            operations=[
                pb.Operation(
                    id="r",
                    release=pb.ReleaseRequest(
                        event_id="ev", hold_id=holds[1].hold_id, holder_id="h1"
                    ),
                )
            ]
        )
        responses = [r async for r in stub.Execute(iter([batch]))]
        assert responses[0].results[0].HasField("release")
        # A Redis that refuses writes: the failed call is logged with its request id.
        admin = sync_redis.Redis(port=private_server.port)
        admin.config_set("maxmemory", 1)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await stub.Hold(
                    pb.HoldRequest(
                        event_id="ev", holder_id="y", seat_ids=["s30"], request_id="req-oom-1"
                    )
                )
            assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            admin.config_set("maxmemory", 0)
            admin.close()

    samples = _scrape(metrics_port)
    calls = "lml_inventory_calls_total"
    assert _value(samples, calls, rpc="Hold", code="OK") == 20
    assert _value(samples, calls, rpc="Hold", code="FAILED_PRECONDITION") == 1
    assert _value(samples, calls, rpc="Hold", code="RESOURCE_EXHAUSTED") == 1
    assert _value(samples, calls, rpc="Confirm", code="OK") == 1
    assert _value(samples, calls, rpc="Execute", code="OK") == 1
    assert _value(samples, "lml_inventory_operations_total", op="release", code="OK") == 1
    assert _value(samples, "lml_inventory_call_seconds_count", rpc="Hold") == 22
    assert _value(samples, "lml_inventory_script_seconds_count", script="hold") >= 22
    assert _value(samples, "lml_inventory_script_seconds_count", script="confirm") == 1
    assert _value(samples, "lml_inventory_redis_errors_total", kind="OutOfMemoryError") >= 1
    # Both processes connect their pipe (each sweeps every 0.1 s) and their figures are summed;
    # the second may still be starting when the calls above are done (1 run in 8 here).
    connects = "lml_inventory_redis_connects_total"
    deadline = time.monotonic() + 15
    while _value(samples, connects) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        samples = _scrape(metrics_port)
    assert _value(samples, connects) >= 2
    assert ("lml_inventory_sweeper_lag_seconds", ()) in samples
    assert ("lml_inventory_watchers", ()) in samples

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    about_the_call = [line for line in lines if line.get("request_id") == "req-oom-1"]
    assert about_the_call and "OOM" in about_the_call[0]["message"]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)


def test_the_dashboard_names_only_metrics_that_exist() -> None:
    import booking.metrics
    import inventory.metrics

    assert booking.metrics and inventory.metrics  # imported for their metrics
    exposed = {family.name for family in REGISTRY.collect()}
    dashboard = (Path(__file__).parents[1] / "bench" / "grafana-dashboard.json").read_text()
    named = {re.sub(r"_(total|bucket)$", "", name) for name in re.findall(r"\blml_\w+", dashboard)}
    assert named and named <= exposed, named - exposed
    json.loads(dashboard)
