"""Per-key rates (shared by every server process through Redis) and the caps bounding any caller."""

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from prometheus_client import REGISTRY

from clients import InventoryClient, RateLimited
from inventory.auth import KeyRing
from inventory.caps import DEFAULT_CAPS, Caps
from inventory.engine import Inventory
from inventory.local_servers import RedisServer, free_port
from inventory.quotas import Quotas, Rate
from inventory.server import create_server
from tests.api_keys import bearer, write_keys
from tests.grpc_errors import error_info, status_info
from tests.test_serve_process import read, wait_serving

# Three operations per 300 s: nothing refills during a test, however slow the machine.
RATE = {"ops_per_s": 0.01, "burst": 3}
SEATS = [pb.Seat(seat_id=f"S{n}") for n in range(8)]


def retry_delay(status: status_pb2.Status) -> float:
    for detail in status.details:
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(retry):
            return float(retry.retry_delay.ToTimedelta().total_seconds())
    raise AssertionError("no RetryInfo in the status")


def rpc_status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    metadata: Any = error.trailing_metadata() or ()
    return status_pb2.Status.FromString(dict(metadata)["grpc-status-details-bin"])


ServerFactory = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def serve(inventory: Inventory, redis_server: RedisServer) -> ServerFactory:
    @asynccontextmanager
    async def serving(keys: Path | None = None, caps: Caps = DEFAULT_CAPS) -> AsyncIterator[str]:
        target = f"127.0.0.1:{free_port()}"
        quotas = Quotas(redis_server.url, lease_share=0.05) if keys else None
        server, _health = create_server(
            inventory, target, keys=KeyRing(keys) if keys else None, quotas=quotas, caps=caps
        )
        await server.start()
        try:
            yield target
        finally:
            await server.stop(None)
            if quotas is not None:
                await quotas.close()

    return serving


def rate_limited_count(key_id: str) -> float:
    return REGISTRY.get_sample_value("lml_inventory_rate_limited_total", {"key": key_id}) or 0.0


async def test_a_key_over_its_rate_is_refused_with_retry_info_and_others_go_on(
    serve: ServerFactory, tmp_path: Path
) -> None:
    path = tmp_path / "keys.json"
    made = write_keys(
        path,
        {"bot": {"scopes": ["sell"], "rate": RATE}, "other": {"scopes": ["sell"], "rate": RATE}},
    )
    refused_before = rate_limited_count("bot")
    async with serve(path) as target, grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub.GetEvent(pb.GetEventRequest(event_id="x"), metadata=bearer(made["bot"]))
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # served, and counted
        with pytest.raises(grpc.aio.AioRpcError) as limited:
            await stub.GetEvent(pb.GetEventRequest(event_id="x"), metadata=bearer(made["bot"]))
        assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(limited.value).reason == "RATE_LIMITED"
        assert retry_delay(rpc_status_of(limited.value)) > 0
        # Another key has its own budget.
        with pytest.raises(grpc.aio.AioRpcError) as served:
            await stub.GetEvent(pb.GetEventRequest(event_id="x"), metadata=bearer(made["other"]))
        assert served.value.code() == grpc.StatusCode.NOT_FOUND
    assert rate_limited_count("bot") == refused_before + 1  # the metric counts the refusal
    # The SDK says it with an exception carrying the delay.
    async with serve(path) as target, InventoryClient(target, api_key=made["bot"]) as client:
        with pytest.raises(RateLimited) as sdk_limited:
            await client.get_event("x")
        assert sdk_limited.value.retry_after and sdk_limited.value.retry_after > 0


async def test_each_execute_operation_counts_as_one_call(
    serve: ServerFactory, tmp_path: Path, redis: Any
) -> None:
    path = tmp_path / "keys.json"
    made = write_keys(
        path, {"seller": {"scopes": ["sell"], "rate": RATE}, "admin": {"scopes": ["admin"]}}
    )
    async with serve(path) as target, grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        await stub.CreateEvent(
            pb.CreateEventRequest(event_id="q", seats=SEATS), metadata=bearer(made["admin"])
        )

        def batch(*seats: str) -> pb.ExecuteRequest:
            return pb.ExecuteRequest(
                operations=[
                    pb.Operation(id=s, hold=pb.HoldRequest(event_id="q", holder_id=s, seat_ids=[s]))
                    for s in seats
                ]
            )

        stream: Any = stub.Execute(metadata=bearer(made["seller"]))  # type: ignore[call-arg]
        await stream.write(batch("S0", "S1"))
        assert all(r.HasField("hold") for r in (await read(stream)).results)
        await stream.write(batch("S2", "S3"))  # 2 more: over the 3 of the budget
        refused = (await read(stream)).results
        assert [r.id for r in refused] == ["S2", "S3"]
        for result in refused:
            assert result.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            assert status_info(result.error).reason == "RATE_LIMITED"
            assert retry_delay(result.error) > 0
        await stream.done_writing()
        # Nothing of the refused batch was applied.
        response = await stub.GetAvailability(
            pb.GetAvailabilityRequest(event_id="q"), metadata=bearer(made["admin"])
        )
        held = {s.seat_id for s in response.seats if s.status != pb.SEAT_STATUS_AVAILABLE}
        assert held == {"S0", "S1"}


@pytest.fixture
def two_servers(
    redis_server: RedisServer, redis: Any, tmp_path: Path
) -> Iterator[tuple[list[str], dict[str, str]]]:
    path = tmp_path / "keys.json"
    made = write_keys(
        path, {"shared": {"scopes": ["read"], "rate": {"ops_per_s": 0.01, "burst": 4}}}
    )
    targets = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    processes = [
        subprocess.Popen(
            [
                *(sys.executable, "-c", "from inventory.cli import main; main()", "serve"),
                *("--listen", target, "--redis-url", redis_server.url, "--api-keys", str(path)),
            ]
        )
        for target in targets
    ]
    yield targets, made
    for process in processes:
        process.terminate()
        process.wait(20)


async def test_two_server_processes_share_one_budget(
    two_servers: tuple[list[str], dict[str, str]],
) -> None:
    targets, made = two_servers
    codes: list[grpc.StatusCode] = []
    for target in targets:
        await wait_serving(target)
    for target in [targets[0], targets[1], targets[0], targets[1], targets[0], targets[1]]:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.InventoryServiceStub(channel)
            try:
                await stub.GetEvent(
                    pb.GetEventRequest(event_id="x"), metadata=bearer(made["shared"])
                )
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())
    not_found, exhausted = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED
    assert codes == [not_found] * 4 + [exhausted] * 2


async def test_a_batch_over_the_cap_is_refused_whole(serve: ServerFactory, stub: Any) -> None:
    async with (
        serve(caps=Caps(batch_operations=2)) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        capped = pb_grpc.InventoryServiceStub(channel)
        await capped.CreateEvent(pb.CreateEventRequest(event_id="c", seats=SEATS))
        operations = [
            pb.Operation(id=s, hold=pb.HoldRequest(event_id="c", holder_id=s, seat_ids=[s]))
            for s in ("S0", "S1", "S2")
        ]
        stream: Any = capped.Execute()  # type: ignore[call-arg]
        await stream.write(pb.ExecuteRequest(operations=operations))
        refused = (await read(stream)).results
        assert len(refused) == 3
        for result in refused:
            assert result.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            info = status_info(result.error)
            assert (info.reason, info.metadata["limit"]) == (
                "LIMIT_EXCEEDED",
                "max_batch_operations",
            )
        await stream.write(pb.ExecuteRequest(operations=operations[:2]))
        assert all(r.HasField("hold") for r in (await read(stream)).results)
        await stream.done_writing()


async def test_batches_beyond_those_in_flight_wait_and_are_all_answered(
    serve: ServerFactory,
) -> None:
    async with (
        serve(caps=Caps(batches_in_flight=1)) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        capped = pb_grpc.InventoryServiceStub(channel)
        await capped.CreateEvent(pb.CreateEventRequest(event_id="f", seats=SEATS))
        batches = [
            pb.ExecuteRequest(
                operations=[
                    pb.Operation(id=s, hold=pb.HoldRequest(event_id="f", holder_id=s, seat_ids=[s]))
                ]
            )
            for s in (seat.seat_id for seat in SEATS)
        ]
        answered = [
            r.id async for response in capped.Execute(iter(batches)) for r in response.results
        ]
        assert sorted(answered) == sorted(seat.seat_id for seat in SEATS)


async def open_watch(stub: Any, event_id: str) -> Any:
    """A WatchEvent call that the server is serving (its first change has arrived)."""
    call = stub.WatchEvent(pb.WatchEventRequest(event_id=event_id, from_version=0))
    response = await call.read()
    assert isinstance(response, pb.WatchEventResponse), response
    return call


async def refused_watch(stub: Any, event_id: str) -> error_details_pb2.ErrorInfo:
    call = stub.WatchEvent(pb.WatchEventRequest(event_id=event_id, from_version=0))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()
        await call.read()
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    return error_info(refused.value)


async def test_streams_per_connection_and_watches_per_process_are_capped(
    serve: ServerFactory,
) -> None:
    caps = Caps(streams_per_connection=2, watch_streams=3)
    async with (
        serve(caps=caps) as target,
        grpc.aio.insecure_channel(target) as first,
        grpc.aio.insecure_channel(
            target, options=[("grpc.use_local_subchannel_pool", 1)]
        ) as second,
    ):
        one, two = pb_grpc.InventoryServiceStub(first), pb_grpc.InventoryServiceStub(second)
        await one.CreateEvent(pb.CreateEventRequest(event_id="w", seats=SEATS))
        await one.Hold(pb.HoldRequest(event_id="w", holder_id="h", seat_ids=["S0"]))
        watches = [await open_watch(one, "w"), await open_watch(one, "w")]
        info = await refused_watch(one, "w")
        assert info.metadata["limit"] == "max_streams_per_connection"
        # Another connection has its own streams, but the process serves 3 watches at most.
        watches.append(await open_watch(two, "w"))
        info = await refused_watch(two, "w")
        assert info.metadata["limit"] == "max_watch_streams"
        # A watch that ends frees its place.
        watches.pop(0).cancel()
        for _ in range(50):
            try:
                watches.append(await open_watch(two, "w"))
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("an ended watch never freed its place")
        for call in watches:
            call.cancel()


async def test_leases_taken_by_two_processes_never_exceed_the_budget(
    redis_server: RedisServer, redis: Any
) -> None:
    """Each process takes a tenth of the budget from Redis at a time; together they admit
    exactly the budget, however their calls interleave, and the Redis calls are ~1 per lease."""
    rate = Rate(ops_per_s=1, burst=300)  # 300 per 300 s: no refill during the test
    processes = [Quotas(redis_server.url, lease_share=0.1) for _ in range(2)]
    calls_before = int(
        (await redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
    )
    admitted = 0
    try:
        for turn in range(400):
            if await processes[turn % 3 % 2].charge("key", rate, 1) is None:
                admitted += 1
    finally:
        for quotas in processes:
            await quotas.close()
    assert admitted == 300
    calls = int((await redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0))
    assert calls - calls_before < 60  # 10 leases of 30, plus the refusals' checks
