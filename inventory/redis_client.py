"""How every process of the project connects to Redis."""

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.maint_notifications import MaintNotificationsConfig


def connect(url: str, max_connections: int | None = None) -> Redis:
    """A client that survives a Redis restart, optionally with a bounded, waiting pool.

    redis-py's default ("auto") maintenance notifications make the pool skip its check for
    connections the server has closed, so after a restart every pooled connection would fail
    one call; disabled, the pool reconnects them before use.
    """
    options = {
        "decode_responses": True,
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }
    pool: ConnectionPool
    if max_connections is None:
        pool = ConnectionPool.from_url(url, **options)
    else:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=5, **options
        )
    return Redis(connection_pool=pool)
