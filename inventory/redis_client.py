"""How every process of the project connects to Redis."""

from collections.abc import Iterable
from typing import Any, cast

import hiredis
from redis.asyncio import BlockingConnectionPool, Connection, ConnectionPool, Redis, RedisCluster
from redis.exceptions import ConnectionError
from redis.maint_notifications import MaintNotificationsConfig

from inventory.redis_pipe import RedisPipe


class ClosedAsConnectionError(Connection):
    """A connection whose writes on a socket the server has closed fail as ConnectionError.

    uvloop raises RuntimeError ("the handler is closed") there, where asyncio's own loop gives
    redis-py the OSError it expects; and a connection another task disconnected meanwhile has no
    writer left (AttributeError on None). Both seen on a cluster when a node is killed. As a
    ConnectionError it is retried and reloads the cluster's topology, and the service answers
    UNAVAILABLE instead of UNKNOWN."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        try:
            await super().send_packed_command(command, check_health)
        except (RuntimeError, AttributeError) as error:
            raise ConnectionError(f"Error writing to a closed connection: {error}") from error


class HiredisPackingConnection(ClosedAsConnectionError):
    """Encodes commands with hiredis (C) instead of redis-py's pure-Python RESP encoder, a large
    share of the service's time on the Execute path (bench/results/20261124-profile.md)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # "SCRIPT LOAD" and the like
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


class FunctionCallingCluster(RedisCluster):
    """A RedisCluster that routes FCALL by its keys' slot, as redis-py does EVALSHA. Its own
    routing asks a node (COMMAND GETKEYS) where an FCALL's keys are before every call: FCALL's
    keys are "movable", though they follow numkeys exactly as EVALSHA's do."""

    async def _determine_slot(self, command: str, *args: Any) -> int:
        if command.upper() in ("FCALL", "FCALL_RO") and int(args[1]) > 0:
            slots = {self.keyslot(key) for key in args[2 : 2 + int(args[1])]}
            if len(slots) == 1:
                return slots.pop()
        return await super()._determine_slot(command, *args)


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


def connect(
    url: str,
    max_connections: int | None = None,
    timeout: float | None = None,
    cluster: bool = False,
) -> Redis:
    """A client that survives a Redis restart, optionally with a bounded, waiting pool.

    With `cluster`, `url` is the redis:// address of any node of a Redis Cluster (redis-py has
    no cluster URL scheme) and the client is a RedisCluster, which routes each command by its
    key's slot. It is returned as a Redis: it offers every command the project sends (every
    key of one event shares a hash tag), and callers that must tell them apart check the type.

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
    if cluster:
        return _connect_cluster(url, max_connections, timeout, options)
    pool: ConnectionPool
    if max_connections is None:
        pool = ConnectionPool.from_url(url, **options)
    else:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=5, **options
        )
    pipe = _pipe(pool, timeout)
    return Redis(connection_pool=pool) if pipe is None else PipedRedis(pool, pipe)


def _connect_cluster(
    url: str, max_connections: int | None, timeout: float | None, options: dict[str, Any]
) -> Redis:
    """A RedisCluster from a seed node's URL; `max_connections` bounds each node's pool.

    RedisCluster times commands out after 5 s unless told otherwise: without `timeout` it waits
    as long as the plain client does. Its own connection class (no hiredis packing), since the
    cluster client sends over redis-py's parser anyway.
    """
    options = {key: value for key, value in options.items() if key != "connection_class"}
    if timeout is None:
        options |= {"socket_timeout": None, "socket_connect_timeout": None}
    if max_connections is not None:
        options["max_connections"] = max_connections
    cluster = FunctionCallingCluster.from_url(url, **options)
    # RedisCluster takes no connection class; its nodes are made with these keyword arguments.
    cluster.nodes_manager.connection_kwargs["connection_class"] = ClosedAsConnectionError
    for node in cluster.nodes_manager.startup_nodes.values():
        node.connection_class = ClosedAsConnectionError
    return cast(Redis, cluster)
