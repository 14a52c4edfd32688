"""How every process of the project connects to Redis."""

from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Connection, ConnectionPool, Redis
from redis.maint_notifications import MaintNotificationsConfig


class HiredisPackingConnection(Connection):
    """Encodes commands with hiredis (C) instead of redis-py's pure-Python RESP encoder, which
    was 15% of the service's time on the Execute path (bench/results/20261124-profile.md)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # "SCRIPT LOAD" and the like
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


def connect(url: str, max_connections: int | None = None) -> Redis:
    """A client that survives a Redis restart, optionally with a bounded, waiting pool.

    redis-py's default ("auto") maintenance notifications make the pool skip its check for
    connections the server has closed, so after a restart every pooled connection would fail
    one call; disabled, the pool reconnects them before use.
    """
    options = {
        "decode_responses": True,
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        "connection_class": HiredisPackingConnection,
    }
    pool: ConnectionPool
    if max_connections is None:
        pool = ConnectionPool.from_url(url, **options)
    else:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=5, **options
        )
    return Redis(connection_pool=pool)
