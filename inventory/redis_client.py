"""How every process of the project connects to Redis."""

from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Connection, ConnectionPool, Redis
from redis.maint_notifications import MaintNotificationsConfig

from inventory.redis_pipe import RedisPipe


class HiredisPackingConnection(Connection):
    """Encodes commands with hiredis (C) instead of redis-py's pure-Python RESP encoder, a large
    share of the service's time on the Execute path (bench/results/20261124-profile.md)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # "SCRIPT LOAD" and the like
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


class PipedRedis(Redis):
    """redis-py's client plus a RedisPipe to the same server, which ScriptRunner sends by."""

    def __init__(self, connection_pool: ConnectionPool, pipe: RedisPipe) -> None:
        super().__init__(connection_pool=connection_pool)
        self.pipe = pipe

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        self.pipe.close()
        await super().aclose(close_connection_pool)


def _pipe(pool: ConnectionPool, timeout: float | None) -> RedisPipe | None:
    """A RedisPipe for a plain TCP Redis (not a Unix socket, not TLS), else None."""
    if pool.connection_class is not HiredisPackingConnection:
        return None
    options = pool.connection_kwargs
    return RedisPipe(
        options.get("host", "localhost"),
        int(options.get("port", 6379)),
        int(options.get("db", 0)),
        options.get("username"),
        options.get("password"),
        timeout=timeout,
    )


def connect(url: str, max_connections: int | None = None, timeout: float | None = None) -> Redis:
    """A client that survives a Redis restart, optionally with a bounded, waiting pool.

    `timeout` bounds every command (the pipe's deadline, redis-py's socket timeout), as the
    service wants; without it commands wait as long as they need (the booking worker's blocking
    XREADGROUP, a rebuild's large script). TCP keepalive is on either way (redis-py's default).

    redis-py's default ("auto") maintenance notifications make the pool skip its check for
    connections the server has closed, so after a restart every pooled connection would fail
    one call; disabled, the pool reconnects them before use.
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        "connection_class": HiredisPackingConnection,
    }
    if timeout is not None:
        options |= {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    pool: ConnectionPool
    if max_connections is None:
        pool = ConnectionPool.from_url(url, **options)
    else:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=5, **options
        )
    pipe = _pipe(pool, timeout)
    return Redis(connection_pool=pool) if pipe is None else PipedRedis(pool, pipe)
