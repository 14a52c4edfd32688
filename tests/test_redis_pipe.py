"""RedisPipe against a real redis-server: replies matched to their calls, errors in their place,
a lost connection failing only the calls waiting on it, and reconnecting after a restart."""

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import uvloop
from redis.asyncio import Redis
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoScriptError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeout

from inventory.local_servers import RedisServer
from inventory.redis_client import PipedRedis, connect
from inventory.redis_pipe import PipeOverloaded, RedisPipe
from inventory.scripts import function_missing
from tests.redis_replica import frozen


@pytest.fixture
async def client(redis: Redis) -> PipedRedis:
    assert isinstance(redis, PipedRedis)
    return redis


@pytest.fixture
async def private_pipe(private_server: RedisServer) -> AsyncIterator[RedisPipe]:
    pipe = RedisPipe("127.0.0.1", private_server.port, timeout=0.5)
    yield pipe
    pipe.close()


async def _concurrent_calls(pipe: RedisPipe, count: int) -> None:
    """Many calls at once, each a different command and key: every one gets its own reply."""

    async def call(index: int) -> None:
        if index % 3 == 0:
            assert await pipe.execute("SET", f"k{index}", f"v{index}") == "OK"
            assert await pipe.execute("GET", f"k{index}") == f"v{index}"
        elif index % 3 == 1:
            assert await pipe.execute("INCRBY", f"n{index}", index) == index
        else:
            replies = await pipe.send(
                [("RPUSH", f"l{index}", "a", "b"), ("LRANGE", f"l{index}", 0, -1)]
            )
            assert replies == [2, ["a", "b"]]

    await asyncio.gather(*(call(index) for index in range(count)))


async def test_concurrent_calls_each_get_their_own_reply(client: PipedRedis) -> None:
    await _concurrent_calls(client.pipe, 300)
    assert await client.get("k3") == "v3"  # the same server and database as redis-py's client


def test_concurrent_calls_on_uvloop(redis_server: RedisServer) -> None:
    """The service runs on uvloop, whose transports are not asyncio's classes."""

    async def run() -> None:
        pipe = RedisPipe("127.0.0.1", redis_server.port)
        try:
            await pipe.execute("FLUSHALL")
            await _concurrent_calls(pipe, 300)
        finally:
            pipe.close()

    uvloop.run(run())


async def test_error_replies_come_back_in_place_as_redis_py_exceptions(
    client: PipedRedis,
) -> None:
    replies = await client.pipe.send(
        [
            ("SET", "s", "1"),
            ("LPUSH", "s", "x"),  # WRONGTYPE
            ("FCALL", "no_such_function", 0),  # ERR Function not found
            ("EVALSHA", "0" * 40, 0),  # NOSCRIPT
            ("INCR", "s"),
        ]
    )
    assert replies[0] == "OK" and replies[4] == 2
    assert isinstance(replies[1], ResponseError) and "WRONGTYPE" in str(replies[1])
    assert type(replies[2]) is ResponseError and function_missing(replies[2])
    assert isinstance(replies[3], NoScriptError)
    with pytest.raises(ResponseError, match=r"^ERR Function not found$"):
        await client.pipe.execute("FCALL", "no_such_function", 0)
    with pytest.raises(ResponseError, match="unknown command"):
        await client.pipe.execute("NO-SUCH-COMMAND")
    assert await client.pipe.execute("GET", "s") == "2"  # the connection goes on after errors


async def test_a_cancelled_call_does_not_shift_the_replies_of_later_ones(
    client: PipedRedis,
) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await client.pipe.execute("BLPOP", "empty-list", "0.3")
    # Its reply (nil, when the BLPOP times out) still arrives first and must be dropped.
    assert await client.pipe.execute("SET", "after", "1") == "OK"
    assert await client.pipe.execute("GET", "after") == "1"


async def test_a_restart_fails_the_calls_in_flight_and_the_next_call_reconnects(
    private_server: RedisServer, private_pipe: RedisPipe
) -> None:
    assert await private_pipe.execute("PING") == "PONG"
    waiting = asyncio.ensure_future(private_pipe.execute("BLPOP", "never", 0))
    await asyncio.sleep(0.05)
    await asyncio.to_thread(private_server.restart)
    with pytest.raises(ConnectionError, match="lost"):
        await waiting
    assert await private_pipe.execute("PING") == "PONG"


async def test_calls_fail_while_redis_is_down_and_work_once_it_is_back(
    private_server: RedisServer, private_pipe: RedisPipe
) -> None:
    assert await private_pipe.execute("SET", "k", "1") == "OK"
    private_server.stop()
    calls = [private_pipe.execute("GET", "k") for _ in range(5)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    private_server.start()  # a new port is not taken: RedisServer keeps its port
    assert await private_pipe.execute("GET", "k") is None  # no persistence: the data is gone


async def test_the_url_credentials_and_database_are_used(private_server: RedisServer) -> None:
    base = f"redis://127.0.0.1:{private_server.port}"
    admin, in_db_3 = connect(f"{base}/0"), connect(f"{base}/3")
    client = connect(f"redis://app:secret@127.0.0.1:{private_server.port}/3")
    assert isinstance(client, PipedRedis)
    try:
        await admin.acl_setuser(
            "app", enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all"]
        )
        assert await client.pipe.execute("SET", "key", "in db 3") == "OK"
        assert await client.pipe.execute("ACL", "WHOAMI") == "app"
        assert await in_db_3.get("key") == "in db 3"
        assert await admin.get("key") is None
        wrong = RedisPipe("127.0.0.1", private_server.port, username="app", password="wrong")
        with pytest.raises(AuthenticationError):
            await wrong.execute("PING")
        wrong.close()
    finally:
        for each in (admin, in_db_3, client):
            await each.aclose()


def test_only_a_plain_tcp_url_gets_a_pipe() -> None:
    assert isinstance(connect("redis://127.0.0.1:1/0"), PipedRedis)
    assert not isinstance(connect("unix:///tmp/redis.sock"), PipedRedis)
    assert not isinstance(connect("rediss://127.0.0.1:1/0"), PipedRedis)


async def test_calls_to_a_frozen_redis_fail_at_their_deadline_and_the_pipe_reconnects(
    private_server: RedisServer, private_pipe: RedisPipe
) -> None:
    assert await private_pipe.execute("SET", "k", "1") == "OK"
    with frozen(private_server):
        async with asyncio.timeout(20):  # a bound on the test, far above the 0.5 s deadline
            results = await asyncio.gather(
                *(private_pipe.execute("GET", "k") for _ in range(5)), return_exceptions=True
            )
        assert all(isinstance(result, RedisTimeout) for result in results), results
        # The connection was dropped: the next call opens another, which waits in its turn.
        with pytest.raises((RedisTimeout, ConnectionError)):
            async with asyncio.timeout(20):
                await private_pipe.execute("GET", "k")
    async with asyncio.timeout(20):
        assert await private_pipe.execute("GET", "k") == "1"
    assert private_pipe.connects >= 2


async def test_commands_beyond_the_bound_fail_at_once_with_a_clear_error(
    private_server: RedisServer,
) -> None:
    pipe = RedisPipe("127.0.0.1", private_server.port, timeout=30, max_outstanding=10)
    try:
        assert await pipe.execute("PING") == "PONG"
        with frozen(private_server):
            waiting = [asyncio.ensure_future(pipe.execute("PING")) for _ in range(10)]
            await asyncio.sleep(0)
            with pytest.raises(PipeOverloaded, match="at most 10"):
                await pipe.send([("PING",)])
        # Redis answers the ten once it runs again; then there is room again.
        assert await asyncio.gather(*waiting) == ["PONG"] * 10
        assert await pipe.send([("PING",)] * 10) == ["PONG"] * 10
    finally:
        pipe.close()


async def test_an_empty_send_returns_at_once_and_leaves_the_fifo_alone(
    client: PipedRedis,
) -> None:
    async with asyncio.timeout(5):
        assert await client.pipe.send([]) == []
        assert await client.pipe.execute("SET", "after-empty", "1") == "OK"
        assert await client.pipe.execute("GET", "after-empty") == "1"


async def test_a_false_reply_is_a_reply_not_missing_data(private_pipe: RedisPipe) -> None:
    """RESP3 has booleans: Lua's false comes back as False, which must not stall the FIFO."""
    hello, false, after = await private_pipe.send(
        [
            ("HELLO", 3),
            ("EVAL", "redis.setresp(3) return false", 0),
            ("EVAL", "redis.setresp(3) return true", 0),
        ]
    )
    assert hello["proto"] == 3
    assert false is False and after is True
    assert await private_pipe.execute("PING") == "PONG"


async def test_the_connection_has_tcp_keepalive(private_pipe: RedisPipe) -> None:
    assert await private_pipe.execute("PING") == "PONG"
    protocol = private_pipe._protocol
    assert protocol is not None and protocol.transport is not None
    sock = protocol.transport.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10


async def test_a_long_call_keeps_its_own_deadline_and_the_calls_behind_it_fail_alone(
    private_pipe: RedisPipe,
) -> None:
    """A large script (CreateEvent of a big event) may take seconds: the calls queued behind it
    fail at their own deadline, the connection and the long call go on."""
    assert await private_pipe.execute("PING") == "PONG"
    spin = "local start = redis.call('TIME')[1] "
    spin += "while redis.call('TIME')[1] - start < 5 do end return 'done'"
    long_call = asyncio.ensure_future(private_pipe.execute("EVAL", spin, 0, max_wait=30))
    await asyncio.sleep(0.05)
    with pytest.raises(RedisTimeout):
        await private_pipe.execute("PING")  # 0.5 s deadline, behind a 4-5 s script
    assert await long_call == "done"
    assert await private_pipe.execute("PING") == "PONG"
    assert private_pipe.connects == 1
