"""One pipelined Redis connection per process for the script hot path, on asyncio's Protocol.

Concurrent calls share the connection: each writes its commands (packed by hiredis) and waits
for its replies, which Redis sends back in the order the commands came, so a FIFO of waiters
matches them. There is no pool or lock: that is the server CPU per call it saves against
redis-py's asyncio client (measured in bench/results/20261124-unary-profile.md).

Faults: a lost connection fails the calls waiting on it with redis-py's ConnectionError (a script
may have run: only the caller can tell whether a retry is safe); the next call connects again.
Every call has a deadline (`timeout`, or its own `max_wait` for a long command): past it the
call fails alone with TimeoutError, and its replies are read and dropped when they come. A
Redis that stops answering without closing the connection (a frozen host, a partition) is
caught when the oldest call is past its deadline and Redis has sent nothing for `timeout`
seconds: every call waiting on the connection fails and the connection is dropped (its replies
could no longer be matched). Silence, not age alone, drops the connection: under overload
replies keep coming, late, and dropping the connection then would fail every call in flight
and turn a slowdown into an outage. Without a `timeout` (the worker, tools: a rebuild's large
script) calls wait as long as Redis takes, unless they bring a `max_wait`. TCP keepalive finds a
dead peer on an idle connection. Commands waiting for replies are bounded: beyond
`max_outstanding` a call fails at once with PipeOverloaded.
Error replies are redis-py's exception classes (ReadOnlyError, ResponseError, ...); the message
keeps the code ("ERR Function not found": redis-py's parser drops it, scripts.py reads both).
"""

import asyncio
import math
import socket
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis import exceptions as rx

from inventory import metrics

Command = Sequence[str | int | bytes]

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_OUTSTANDING = 50_000  # commands sent and not answered yet, per process
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES = 10, 5, 3

# hiredis returns this object when the buffer holds no whole reply: False and None are replies.
_NOT_ENOUGH_DATA = object()

# The error codes redis-py gives a class of their own (as its parsers do); others: ResponseError.
_ERROR_CLASSES: dict[str, type[rx.RedisError]] = {
    "NOSCRIPT": rx.NoScriptError,
    "LOADING": rx.BusyLoadingError,
    "READONLY": rx.ReadOnlyError,
    "MASTERDOWN": rx.MasterDownError,
    "CLUSTERDOWN": rx.ClusterDownError,
    "TRYAGAIN": rx.TryAgainError,
    "OOM": rx.OutOfMemoryError,
    "EXECABORT": rx.ExecAbortError,
    "NOPERM": rx.NoPermissionError,
    "WRONGPASS": rx.AuthenticationError,
    "NOAUTH": rx.AuthenticationError,
}


class PipeOverloaded(rx.ConnectionError):
    """More commands wait for Redis than the pipe takes: the call was not sent."""


def parse_error(reply: str) -> rx.RedisError:
    """An error reply as redis-py's exception for its code; the message keeps the code."""
    code = reply.split(" ", 1)[0]
    return _ERROR_CLASSES.get(code, rx.ResponseError)(reply)


def _keepalive(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the system's defaults apply
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


def _timed_out() -> rx.TimeoutError:
    return rx.TimeoutError("no reply from Redis before the call's deadline")


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout: float | None, max_outstanding: int) -> None:
        # Kept: asyncio.get_running_loop() costs a getpid() system call per call on Python 3.11.
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        # How often deadlines are checked while calls wait, and how long a silence is one.
        self._tick = timeout / 4 if timeout else 1.0
        self._silence = timeout or 4 * self._tick
        self._max_outstanding = max_outstanding
        self.transport: asyncio.Transport | None = None
        self.lost: rx.ConnectionError | None = None
        self._reader = hiredis.Reader(
            replyError=parse_error, encoding="utf-8", notEnoughData=_NOT_ENOUGH_DATA
        )
        # One entry per send: its future, how many replies it waits for, its deadline.
        self._waiting: deque[tuple[asyncio.Future[list[Any]], int, float]] = deque()
        # When Redis last sent something, or an idle connection was given a call.
        self._heard_at = self._loop.time()
        self._replies: list[Any] = []
        self._outstanding = 0  # commands of the waiting entries
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        _keepalive(transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        self._heard_at = self._loop.time()
        while (reply := self._reader.gets()) is not _NOT_ENOUGH_DATA:
            self._replies.append(reply)
            future, count, _deadline = self._waiting[0]
            if len(self._replies) == count:
                self._waiting.popleft()
                self._outstanding -= count
                if not future.done():  # a cancelled caller's replies are read and dropped
                    future.set_result(self._replies)
                self._replies = []

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            self._fail(rx.ConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def send(
        self, commands: Sequence[Command], max_wait: float | None = None
    ) -> asyncio.Future[list[Any]]:
        assert self.transport is not None
        if self.lost is not None:
            raise self.lost
        if self._outstanding + len(commands) > self._max_outstanding:
            raise PipeOverloaded(
                f"{self._outstanding} Redis commands are waiting for replies (at most "
                f"{self._max_outstanding}): Redis is slow or overloaded, try again"
            )
        future = self._loop.create_future()
        # hiredis's stub types pack_command's argument as a tuple of one element.
        packed = [hiredis.pack_command(tuple(c)) for c in commands]  # type: ignore[arg-type]
        self.transport.write(b"".join(packed))
        now = self._loop.time()
        if not self._waiting:
            self._heard_at = now
        deadline = now + (max_wait or self._timeout or math.inf)
        self._waiting.append((future, len(commands), deadline))
        self._outstanding += len(commands)
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self._tick, self._check_deadline)
        return future

    def _check_deadline(self) -> None:
        """Drops the connection when the oldest call is past its deadline and Redis has been
        silent as long; else fails alone each call past its deadline.

        One timer per connection rather than one per call. After the loop was blocked, asyncio
        runs the socket's reads before due timers, so replies already received count as heard.
        """
        self._watchdog = None
        if not self._waiting or self.lost is not None:
            return
        now = self._loop.time()
        if now >= self._waiting[0][2] and now - self._heard_at >= self._silence:
            assert self.transport is not None
            self._fail(_timed_out())
            self.transport.abort()
            return
        for future, _count, deadline in self._waiting:
            if deadline <= now and not future.done():
                # Its replies are still read off the connection and dropped.
                future.set_exception(_timed_out())
        self._watchdog = self._loop.call_later(self._tick, self._check_deadline)

    def _fail(self, error: rx.ConnectionError | rx.TimeoutError) -> None:
        # A timeout marks the connection lost too, so that the next call opens a new one.
        self.lost = (
            error
            if isinstance(error, rx.ConnectionError)
            else rx.ConnectionError(f"connection to Redis dropped: {error}")
        )
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            future, _count, _deadline = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)
        self._outstanding = 0


class RedisPipe:
    """Sends commands over one shared connection to a plain (TCP, non-TLS) Redis."""

    def __init__(
        self,
        host: str,
        port: int,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
    ) -> None:
        self._address = (host, port)
        self._setup: list[Command] = []
        if password is not None:
            self._setup.append(("AUTH", *([username] if username else []), password))
        if db:
            self._setup.append(("SELECT", db))
        self.timeout = timeout
        self._max_outstanding = max_outstanding
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self.connects = 0  # connections opened: more than one means reconnects

    async def send(self, commands: Sequence[Command], max_wait: float | None = None) -> list[Any]:
        """The replies to `commands` in order, error replies as exception objects in place.

        `max_wait` (seconds) replaces the pipe's timeout for these commands (a large script)."""
        if not commands:
            return []
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connected()
        return await protocol.send(commands, max_wait)

    async def execute(self, *command: str | int | bytes, max_wait: float | None = None) -> Any:
        """The reply to one command; an error reply is raised."""
        reply = (await self.send((command,), max_wait))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None

    async def _connected(self) -> _Protocol:
        # Calls arriving while disconnected share one attempt; a failed attempt fails them all.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connect_done)
        return await asyncio.shield(self._connecting)

    def _connect_done(self, attempt: asyncio.Future[_Protocol]) -> None:
        self._connecting = None
        if not attempt.cancelled() and attempt.exception() is None:
            self._protocol = attempt.result()
            self.connects += 1
            metrics.REDIS_CONNECTS.inc()

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        host, port = self._address
        try:
            async with asyncio.timeout(self.timeout or DEFAULT_TIMEOUT):
                _transport, protocol = await loop.create_connection(
                    lambda: _Protocol(self.timeout, self._max_outstanding), host, port
                )
                if self._setup:
                    for reply in await protocol.send(self._setup):
                        if isinstance(reply, Exception):
                            protocol.transport.close()  # type: ignore[union-attr]
                            raise reply
        except (OSError, TimeoutError) as error:
            raise rx.ConnectionError(
                f"cannot connect to Redis at {host}:{port}: {error or 'timed out'}"
            ) from error
        return protocol
