"""One pipelined Redis connection per process for the script hot path, on asyncio's Protocol.

Concurrent calls share the connection: each writes its commands (packed by hiredis) and waits
for its replies, which Redis sends back in the order the commands came, so a FIFO of waiters
matches them. There is no pool, lock or per-call timeout: that is the server CPU per call it
saves against redis-py's asyncio client (measured in bench/results/20261124-unary-profile.md).

A lost connection fails the calls waiting on it with redis-py's ConnectionError (a script may
have run: only the caller can tell whether a retry is safe); the next call connects again.
Error replies are redis-py's exception classes (NoScriptError, ResponseError, ...).
"""

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis._parsers import BaseParser
from redis.exceptions import ConnectionError

Command = Sequence[str | int | bytes]


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        # Kept: asyncio.get_running_loop() costs a getpid() system call per call on Python 3.11.
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.lost: ConnectionError | None = None
        self._reader = hiredis.Reader(replyError=BaseParser.parse_error, encoding="utf-8")
        # One entry per send: its future and how many replies it waits for.
        self._waiting: deque[tuple[asyncio.Future[list[Any]], int]] = deque()
        self._replies: list[Any] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            self._replies.append(reply)
            future, count = self._waiting[0]
            if len(self._replies) == count:
                self._waiting.popleft()
                if not future.done():  # a cancelled caller's replies are read and dropped
                    future.set_result(self._replies)
                self._replies = []

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = ConnectionError(f"connection to Redis lost: {exc or 'closed by the server'}")
        while self._waiting:
            future, _count = self._waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)

    def send(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        assert self.transport is not None
        if self.lost is not None:
            raise self.lost
        future = self._loop.create_future()
        # hiredis's stub types pack_command's argument as a tuple of one element.
        packed = [hiredis.pack_command(tuple(c)) for c in commands]  # type: ignore[arg-type]
        self.transport.write(b"".join(packed))
        self._waiting.append((future, len(commands)))
        return future


class RedisPipe:
    """Sends commands over one shared connection to a plain (TCP, non-TLS) Redis."""

    def __init__(
        self,
        host: str,
        port: int,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self._address = (host, port)
        self._setup: list[Command] = []
        if password is not None:
            self._setup.append(("AUTH", *([username] if username else []), password))
        if db:
            self._setup.append(("SELECT", db))
        self._connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    async def send(self, commands: Sequence[Command]) -> list[Any]:
        """The replies to `commands` in order, error replies as exception objects in place."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connected()
        return await protocol.send(commands)

    async def execute(self, *command: str | int | bytes) -> Any:
        """The reply to one command; an error reply is raised."""
        reply = (await self.send((command,)))[0]
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

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _transport, protocol = await loop.create_connection(_Protocol, *self._address)
                if self._setup:
                    for reply in await protocol.send(self._setup):
                        if isinstance(reply, Exception):
                            protocol.transport.close()  # type: ignore[union-attr]
                            raise reply
        except (OSError, TimeoutError) as error:
            host, port = self._address
            raise ConnectionError(f"cannot connect to Redis at {host}:{port}: {error}") from error
        return protocol
