"""Health as clients see it: SERVING while Redis answers a PING in time, NOT_SERVING otherwise.

The probe goes over the same connection as the scripts, so it sees what the calls see: a frozen
or partitioned Redis turns the service NOT_SERVING within one probe, and SERVING again once Redis
answers. A load balancer or the SDK's `healthy()` can then steer calls away meanwhile.
"""

import asyncio
import logging
from typing import Any

from grpc_health.v1 import health_pb2
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from inventory import metrics
from inventory.cancellation import raise_if_cancelled
from inventory.redis_client import PipedRedis

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InventoryService"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def ping(redis: Redis | RedisCluster) -> None:
    if isinstance(redis, PipedRedis):
        await redis.pipe.execute("PING")
    else:
        await redis.ping()


async def probe_redis(
    redis: Redis | RedisCluster, health_servicer: Any, interval: float, patience: float
) -> None:
    """Sets the health of the server ("") and of InventoryService after every probe, forever."""
    status: int | None = None
    while True:
        raise_if_cancelled()
        try:
            async with asyncio.timeout(patience):
                await ping(redis)
            probed, problem = SERVING, ""
        except (RedisError, TimeoutError) as error:
            probed, problem = NOT_SERVING, str(error) or f"no PONG within {patience:g} s"
        metrics.REDIS_UP.set(probed == SERVING)
        if probed != status:
            if probed == SERVING:
                log.info("redis answers: SERVING")
            else:
                log.warning("redis does not answer (%s): NOT_SERVING", problem)
            for name in ("", SERVICE_NAME):
                await health_servicer.set(name, probed)
            status = probed
        await asyncio.sleep(interval)
