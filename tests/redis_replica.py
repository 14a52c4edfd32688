"""A replica of a test's Redis, and freezing a Redis (SIGSTOP) for a while."""

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from inventory.local_servers import RedisServer


@contextmanager
def replica_of(primary: RedisServer, data_dir: Path) -> Iterator[RedisServer]:
    """A second redis-server replicating `primary`, in sync when the block starts."""
    replica = RedisServer(data_dir)
    replica.start()
    client = redis.Redis(port=replica.port, decode_responses=True)
    try:
        with redis.Redis(port=primary.port) as source:
            source.config_set("repl-diskless-sync-delay", 0)  # default: 5 s before each sync
        client.replicaof("127.0.0.1", primary.port)
        deadline = time.monotonic() + 30
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise AssertionError("the replica never got in sync")
            time.sleep(0.02)
        yield replica
    finally:
        client.close()
        replica.stop()


@contextmanager
def frozen(server: RedisServer) -> Iterator[None]:
    """The server stopped by SIGSTOP: its connections stay open and nothing answers."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
