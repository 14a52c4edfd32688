"""Per-key rates, counted in Redis by the `limits` library, shared by every service process.

A key's rate `{"ops_per_s": N, "burst": M}` becomes a `limits` sliding-window counter of M
operations per window of ceil(M / N) seconds (limits counts whole seconds; at least N per
second). Asking Redis on every call would add a round trip through redis-py to each call, so a
process takes a lease of a few operations at a time (`lease_share` of the window's budget,
at least the cost of the call) and spends it locally until it is used up or the window has
passed. Every process holds at most one lease per key, so the keys' budgets are exceeded by at
most one lease per process; `lease_share=0` asks Redis for every operation.

Over its maxmemory (policy noeviction) Redis refuses the counter's writes: each process then
counts the keys' rates in its own memory until Redis takes them again, so that releases and
confirms, which the engine still runs, are not refused for the limiter's sake (a key may then
do its rate in each process). Any other Redis error is raised.
"""

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisClusterStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.exceptions import RedisError

from inventory.errors import is_out_of_memory
from inventory.logs import Recurring

log = logging.getLogger(__name__)

KEY_PREFIX = "lml-quota"
# A refused key is refused locally for this long at most, so a flood over quota does not
# become a flood of Redis calls.
REFUSAL_MEMORY = 0.05


@dataclass(frozen=True)
class Rate:
    ops_per_s: float
    burst: int

    @property
    def window(self) -> int:
        return max(1, math.ceil(self.burst / self.ops_per_s))

    def item(self) -> RateLimitItem:
        return RateLimitItemPerSecond(
            max(self.burst, round(self.ops_per_s * self.window)), self.window
        )


@dataclass
class _Lease:
    item: RateLimitItem
    size: int
    tokens: int = 0
    expires: float = 0.0
    refused_until: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _storage(redis_url: str, cluster: bool) -> RedisStorage | RedisClusterStorage:
    """limits' storage on the Redis at `redis_url`, or on the Redis Cluster of which it is one
    node (limits' cluster scheme takes host:port only)."""
    if not cluster:
        return RedisStorage("async+" + redis_url, implementation="redispy", key_prefix=KEY_PREFIX)
    seed = urlsplit(redis_url).netloc
    return RedisClusterStorage(
        f"async+redis+cluster://{seed}", implementation="redispy", key_prefix=KEY_PREFIX
    )


class Quotas:
    def __init__(self, redis_url: str, lease_share: float = 0.05, cluster: bool = False) -> None:
        self._storage = _storage(redis_url, cluster)
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._lease_share = lease_share
        self._leases: dict[tuple[str, Rate], _Lease] = {}
        # Made at the first refusal (limits' MemoryStorage starts a task: it needs the loop).
        self._local: SlidingWindowCounterRateLimiter | None = None
        self._counting_here = Recurring(
            log, "rates counted by this process alone: redis over maxmemory refuses the counts"
        )

    async def charge(self, key_id: str, rate: Rate, cost: int) -> float | None:
        """Takes `cost` operations from the key's budget: None, or the seconds to wait."""
        lease = self._leases.get((key_id, rate))
        if lease is None:
            item = rate.item()
            size = max(1, math.floor(item.amount * self._lease_share))
            lease = self._leases[(key_id, rate)] = _Lease(item, size)
        now = time.monotonic()
        if lease.tokens >= cost and now < lease.expires:
            lease.tokens -= cost
            return None
        if now < lease.refused_until:
            return lease.refused_until - now
        async with lease.lock:
            return await self._renew(key_id, rate, lease, cost)

    async def _renew(self, key_id: str, rate: Rate, lease: _Lease, cost: int) -> float | None:
        now = time.monotonic()
        if lease.tokens >= cost and now < lease.expires:  # another call renewed it meanwhile
            lease.tokens -= cost
            return None
        try:
            retry_after = await self._take(self._limiter, key_id, rate, lease, cost)
        except RedisError as error:
            if not is_out_of_memory(error):
                raise
            self._counting_here.met(error)
            if self._local is None:
                self._local = SlidingWindowCounterRateLimiter(MemoryStorage())
            return await self._take(self._local, key_id, rate, lease, cost)
        self._counting_here.ended()
        return retry_after

    async def _take(
        self,
        limiter: SlidingWindowCounterRateLimiter,
        key_id: str,
        rate: Rate,
        lease: _Lease,
        cost: int,
    ) -> float | None:
        """A new lease from the key's count in `limiter`: None, or the seconds to wait."""
        now = time.monotonic()
        for amount in dict.fromkeys((max(lease.size, cost), cost)):
            if await limiter.hit(lease.item, key_id, cost=amount):
                lease.tokens, lease.expires = amount - cost, now + rate.window
                return None
        stats = await limiter.get_window_stats(lease.item, key_id)
        retry_after = max(stats.reset_time - time.time(), cost / rate.ops_per_s)
        lease.tokens = 0
        lease.refused_until = time.monotonic() + min(retry_after, REFUSAL_MEMORY)
        return retry_after

    async def close(self) -> None:
        await self._storage.bridge.storage.aclose()  # type: ignore[attr-defined]
