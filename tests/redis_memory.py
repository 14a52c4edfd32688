"""Filling a Redis past its maxmemory (policy noeviction) for tests of what still runs then;
the Redis is the `noeviction_redis` fixture's (tests/conftest.py)."""

import pytest
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError


async def used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def fill(redis: Redis) -> None:
    """Sets maxmemory 256 KiB above what Redis uses, then goes 256 KiB past it in one script
    without flags (checked for memory at its first write only, as EVAL always was): well over
    the limit, so that no buffer freed between calls brings Redis back under it."""
    await redis.config_set("maxmemory", await used_memory(redis) + 256 * 1024)
    fill = "for i = 1, 128 do redis.call('SET', 'filler:' .. i, string.rep('x', 4096)) end"
    await redis.eval(fill, 0)
    with pytest.raises(OutOfMemoryError):
        await redis.set("one more", "x")
