"""The service's gRPC health follows Redis: SERVING while it answers, NOT_SERVING while it is down,
SERVING again once it is back."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import TypeAlias

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inventory.health import SERVICE_NAME, HealthServicer, report_health
from inventory.local_servers import RedisServer, free_port
from inventory.redis_client import connect

Status: TypeAlias = health_pb2.HealthCheckResponse.ServingStatus.ValueType


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


async def _until(health: health_pb2_grpc.HealthStub, wanted: Status) -> None:
    async with asyncio.timeout(15):
        while True:
            for service in ("", SERVICE_NAME):
                request = health_pb2.HealthCheckRequest(service=service)
                if (await health.Check(request)).status != wanted:
                    break
            else:
                return
            await asyncio.sleep(0.02)


async def test_health_follows_redis(own_redis: RedisServer) -> None:
    target = f"127.0.0.1:{free_port()}"
    server = grpc.aio.server()
    servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(target)
    await server.start()
    redis = connect(own_redis.url)
    reporter = asyncio.create_task(report_health(redis, servicer, 0.02))
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            await _until(health, health_pb2.HealthCheckResponse.SERVING)
            own_redis.stop()
            await _until(health, health_pb2.HealthCheckResponse.NOT_SERVING)
            own_redis.start()
            await _until(health, health_pb2.HealthCheckResponse.SERVING)
    finally:
        reporter.cancel()
        await redis.aclose()
        await server.stop(None)
