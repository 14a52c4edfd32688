"""Redis refusing a command for a while (a script running too long: BUSY) answers UNAVAILABLE,
which clients retry; a script that cannot be loaded fails only the operations that did not run."""

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import grpc
import pytest
import redis as sync_redis
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from inventory import keys, script_calls
from inventory.engine import Inventory
from inventory.errors import is_transient
from inventory.local_servers import RedisServer, free_port
from inventory.redis_client import connect
from inventory.scripts import Call, ScriptRunner, load_library
from inventory.server import create_server

SEATS = [pb.Seat(seat_id=f"s{i}") for i in range(6)]


@pytest.fixture
async def stub(private_server: RedisServer) -> AsyncIterator["pb_grpc.InventoryServiceAsyncStub"]:
    redis = connect(private_server.url, timeout=5)
    address = f"127.0.0.1:{free_port()}"
    server, _health = create_server(Inventory(redis), address)
    await server.start()
    async with grpc.aio.insecure_channel(address) as channel:
        yield pb_grpc.InventoryServiceStub(channel)
    await server.stop(None)
    await redis.aclose()


@contextmanager
def busy(server: RedisServer) -> Iterator[None]:
    """A script looping on another connection past Redis's busy threshold; killed after."""
    admin = sync_redis.Redis(port=server.port)
    admin.config_set("busy-reply-threshold", 50)
    looping = threading.Thread(target=_loop_forever, args=(server.port,))
    looping.start()
    try:
        _until_ping_says(admin, "BUSY")
        yield
    finally:
        for _ in range(500):
            try:
                admin.script_kill()
                break
            except ResponseError:  # NOTBUSY: the loop has not started yet
                time.sleep(0.01)
        looping.join(10)
        admin.close()


def _until_ping_says(admin: sync_redis.Redis, code: str) -> None:
    for _ in range(1000):
        try:
            admin.ping()
        except ResponseError as error:
            if str(error).startswith(code):
                return
        time.sleep(0.01)
    raise AssertionError(f"Redis never answered {code}")


def _loop_forever(port: int) -> None:
    client = sync_redis.Redis(port=port)
    try:
        client.eval("while true do end", 0)
    except RedisError:  # ended by SCRIPT KILL
        pass
    finally:
        client.close()


def _hold(seat: str, request_id: str = "") -> pb.HoldRequest:
    return pb.HoldRequest(event_id="ev", holder_id="h", seat_ids=[seat], request_id=request_id)


async def test_busy_redis_answers_unavailable_and_the_retry_succeeds(
    stub: "pb_grpc.InventoryServiceAsyncStub", private_server: RedisServer
) -> None:
    await stub.CreateEvent(pb.CreateEventRequest(event_id="ev", seats=SEATS))
    with busy(private_server):
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.GetAvailability(pb.GetAvailabilityRequest(event_id="ev"), timeout=10)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "BUSY" in (failure.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.Hold(_hold("s0", "r1"), timeout=10)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        batch = pb.ExecuteRequest(operations=[pb.Operation(id="1", hold=_hold("s1"))])
        responses = [response async for response in stub.Execute(iter([batch]), timeout=10)]
        assert responses[0].results[0].error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    held = await stub.Hold(_hold("s0", "r1"), timeout=10)
    assert list(held.hold.seat_ids) == ["s0"]


def test_failover_and_busy_replies_are_transient() -> None:
    for reply in (
        "BUSY Redis is busy",
        "READONLY You can't write against a read only replica.",
        "MASTERDOWN Link with MASTER is down",
        "CLUSTERDOWN The cluster is down",
        "TRYAGAIN Multiple keys request during rehashing",
        "LOADING Redis is loading",
    ):
        assert is_transient(ResponseError(reply)), reply
    assert not is_transient(ResponseError("ERR Error running script"))


async def test_a_library_that_cannot_be_loaded_fails_only_the_calls_that_did_not_run(
    private_server: RedisServer,
) -> None:
    """A locked-down user may call functions but not load them. Redis has the project's library
    but not another one (the release command built under another name): in one batch, the hold
    runs and the release, which did not run, carries the error. Then Redis lost the project's
    library too: every operation of a batch carries the error, nothing raises."""
    admin: Redis = connect(private_server.url)
    await admin.acl_setuser(
        "app", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-function|load"]
    )
    owner = Inventory(admin)
    await owner.create_event(pb.CreateEventRequest(event_id="ev", seats=SEATS))
    first = (await owner.hold(_hold("s0"))).hold
    other_release = load_library(["release"], prefix="other")["release"]
    release = script_calls.release_call(
        pb.ReleaseRequest(event_id="ev", hold_id=first.hold_id, holder_id="h")
    )
    hold = _hold("s1")
    app = connect(f"redis://app:pw@127.0.0.1:{private_server.port}/0")
    try:
        held, released = await ScriptRunner(app).run_batch(
            [
                script_calls.hold_call(hold),
                Call(other_release, release.keys, release.args),
            ]
        )
        # The hold ran: it is reported as done, and its seat is held.
        hold_id = script_calls.hold_response(hold, held).hold.hold_id
        assert isinstance(released, ResponseError) and "NOPERM" in str(released)
        seats = await admin.hgetall(keys.event_keys("ev").seats)
        assert seats["s1"] == f"H:{hold_id}"
        assert seats["s0"] == f"H:{first.hold_id}"  # the release did not run

        await admin.function_flush()
        results = await Inventory(app).execute(
            [
                pb.Operation(id="hold", hold=_hold("s2")),
                pb.Operation(
                    id="release",
                    release=pb.ReleaseRequest(event_id="ev", hold_id=first.hold_id, holder_id="h"),
                ),
            ]
        )
        assert all("NOPERM" in result.error.message for result in results), results
        assert await admin.hgetall(keys.event_keys("ev").seats) == seats
    finally:
        await app.aclose()
        await admin.aclose()
