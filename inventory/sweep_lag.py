"""How far behind the sweeper is: the oldest deadline already past, over every event.

Read before a sweep: a due hold still in an event's deadlines set has not been ended yet (its
seats are free to scripts at once, but watchers and the audit hear of it only when it is).
"""

from redis.asyncio import Redis

from inventory import keys


async def oldest_due_seconds(redis: Redis) -> float:
    """Seconds the oldest due deadline is past, on Redis's clock; 0 when none is due."""
    seconds, micros = await redis.time()
    now_ms = seconds * 1000 + micros // 1000
    pipe = redis.pipeline(transaction=False)
    async for event_id in redis.sscan_iter(keys.EVENTS):
        pipe.zrange(keys.event_keys(event_id).deadlines, 0, 0, withscores=True)
    oldest = min(
        (score for entries in await pipe.execute() for _member, score in entries),
        default=float(now_ms),
    )
    return max(0.0, (now_ms - oldest) / 1000)
