"""Shared fixtures: a private Redis for the whole run, an engine and a gRPC server per test."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import Redis

from inventory.engine import Inventory
from inventory.local_servers import RedisServer, free_port
from inventory.redis_client import connect
from inventory.server import create_server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, to stop, freeze or reconfigure."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def noeviction_redis(private_server: RedisServer) -> AsyncIterator[Redis]:
    """A client of a redis-server of the test's own with the noeviction policy, to fill past
    a maxmemory (tests/redis_memory.py); the limit is lifted at the end."""
    client = connect(private_server.url, timeout=5)
    await client.config_set("maxmemory-policy", "noeviction")
    yield client
    await client.config_set("maxmemory", 0)
    await client.aclose()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def inventory(redis: Redis) -> Inventory:
    return Inventory(redis)


@pytest.fixture
async def grpc_target(inventory: Inventory) -> AsyncIterator[str]:
    """A real InventoryService on a free port, over the test's Redis; yields its address."""
    target = f"127.0.0.1:{free_port()}"
    server, _health = create_server(inventory, target)
    await server.start()
    yield target
    await server.stop(None)


@pytest.fixture
async def stub(grpc_target: str) -> AsyncIterator["pb_grpc.InventoryServiceAsyncStub"]:
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        yield pb_grpc.InventoryServiceStub(channel)
