"""The gRPC health of the inventory service: SERVING while Redis answers, NOT_SERVING while not."""

import asyncio
import logging
from typing import Any

from grpc_health.v1 import health, health_pb2
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# grpc-stubs predates grpc_health's asyncio servicer, so mypy sees it as Any.
HealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InventoryService"].full_name
CHECK_INTERVAL = 0.5  # seconds between two pings of Redis


async def report_health(
    redis: Redis, health_servicer: Any, interval: float = CHECK_INTERVAL
) -> None:
    """Pings Redis every `interval` seconds until cancelled and sets the server's health (overall
    and InventoryService's) from the answer."""
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    while True:
        try:
            await redis.ping()
            status = serving
        except RedisError as error:
            log.warning("health: redis unavailable: %s", error)
            status = not_serving
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, status)
        await asyncio.sleep(interval)
