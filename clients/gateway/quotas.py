"""Abuse limits, shared by every gateway process through Redis: rates with the `limits`
library (a moving window per buyer or client IP, its Lua scripts run in Redis), and open SSE
connections per buyer and per IP (a sorted set of connections, each with a lease that the
stream renews; a crashed process's connections run out with their leases).

Beyond a limit: 429 with Retry-After and the RateLimit-* fields of the IETF draft
(RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset)."""

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable, Coroutine
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse
from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from clients.gateway import problems
from clients.gateway.peers import client_ip
from clients.gateway.settings import TrustSettings

log = logging.getLogger(__name__)

KEY_PREFIX = "lml:gateway"
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
STREAM_LEASE_SECONDS = 45.0  # an open stream renews its lease at least this often / 3
LEASES_PER_ROUND_TRIP = 500


def limits_storage(settings: TrustSettings) -> Storage:
    """`limits`' storage in the gateway's Redis. A Redis Cluster has a scheme of its own there
    (async+redis+cluster://host:port, no database number), made from the seed node's URL."""
    uri, options = f"async+{settings.redis_url}", {}
    if settings.redis_cluster:
        url = urlsplit(settings.redis_url)
        auth = f"{url.username or ''}:{url.password}@" if url.password else ""
        uri = f"async+redis+cluster://{auth}{url.hostname}:{url.port or 6379}"
        options = {"ssl": True} if url.scheme == "rediss" else {}
    storage = storage_from_string(uri, implementation="redispy", key_prefix=KEY_PREFIX, **options)
    assert isinstance(storage, Storage)  # an async+ scheme
    return storage


class TooMany(Exception):
    def __init__(self, what: str, limit: int, retry_after: float) -> None:
        super().__init__(f"too many {what}: at most {limit}")
        self.what, self.limit, self.retry_after = what, limit, max(1, math.ceil(retry_after))


class Quotas:
    def __init__(self, settings: TrustSettings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.limiter = MovingWindowRateLimiter(limits_storage(settings))
        limits = settings.limits
        self.items: dict[str, RateLimitItem] = {
            "sessions per IP": parse(limits.sessions_per_ip),
            "holds per buyer": parse(limits.holds_per_buyer),
            "holds per IP": parse(limits.holds_per_ip),
            "seats held per buyer": parse(limits.seats_per_buyer),
            "reads per IP": parse(limits.reads_per_ip),
            "joins per IP": parse(limits.joins_per_ip),
        }

    def ip(self, request: Request) -> str:
        return client_ip(request, self.settings.trusted_proxies)

    async def take(self, what: str, who: str, cost: int = 1) -> None:
        """Counts `cost` against the limit `what` of `who`, or raises TooMany."""
        item = self.items[what]
        if await self.limiter.hit(item, what, who, cost=cost):
            return
        stats = await self.limiter.get_window_stats(item, what, who)
        raise TooMany(what, item.amount, stats.reset_time - time.time())

    async def stream_lease(self, holder: str | None, ip: str) -> "Lease":
        """A slot among the IP's (and the buyer's) open SSE connections, or TooMany; the
        stream ends the lease when it closes."""
        limits = self.settings.limits
        sets = [(f"{KEY_PREFIX}:streams:ip:{ip}", limits.streams_per_ip, "streams per IP")]
        if holder is not None:
            key = f"{KEY_PREFIX}:streams:buyer:{holder}"
            sets.append((key, limits.streams_per_buyer, "streams per buyer"))
        lease = Lease(self.redis, uuid.uuid4().hex, [key for key, _, _ in sets])
        try:
            for key, cap, what in sets:
                await lease.claim(key, cap, what)
        except BaseException:
            await lease.end()
            raise
        return lease


class Lease:
    """One stream's entry in the sets of open connections it counts in."""

    def __init__(self, redis: Redis, member: str, keys: list[str]) -> None:
        self.redis, self.member, self.keys = redis, member, keys
        self.renewed = 0.0

    async def claim(self, key: str, cap: int, what: str) -> None:
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)  # leases run out: crashed processes'
            pipe.zadd(key, {self.member: now + STREAM_LEASE_SECONDS})
            pipe.zcard(key)
            pipe.expire(key, int(STREAM_LEASE_SECONDS) + 1)
            _, _, count, _ = await pipe.execute()
        self.renewed = now
        if count > cap:
            await self.redis.zrem(key, self.member)
            raise TooMany(what, cap, STREAM_LEASE_SECONDS / 3)

    async def renew(self) -> None:
        now = time.time()
        if now - self.renewed < STREAM_LEASE_SECONDS / 3:
            return
        self.renewed = now
        # Not a transaction: the buyer's and the IP's sets may be on two nodes of a cluster.
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.zadd(key, {self.member: now + STREAM_LEASE_SECONDS}, xx=True)
                pipe.expire(key, int(STREAM_LEASE_SECONDS) + 1)
            await pipe.execute()

    async def end(self) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.zrem(key, self.member)
            await pipe.execute()


class StreamLeases:
    """The leases of a process's open streams, renewed together (a few round trips every
    STREAM_LEASE_SECONDS / 3, whatever the number of streams) and ended in batches: thousands
    of streams opening or closing at once must not queue for Redis one call each."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.open: set[Lease] = set()
        self._ending: list[Lease] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def hold(self, lease: Lease) -> None:
        if not self._tasks:
            self._start(self._renew_forever())
        self.open.add(lease)

    def end(self, lease: Lease) -> None:
        """Ends the lease soon (a stream's last act may not wait on Redis)."""
        self.open.discard(lease)
        self._ending.append(lease)
        if len(self._ending) == 1:
            self._start(self._end_pending())

    def _start(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end_pending(self) -> None:
        await asyncio.sleep(0)  # the streams closing in this same moment join the batch
        while self._ending:
            batch = self._ending[:LEASES_PER_ROUND_TRIP]
            del self._ending[:LEASES_PER_ROUND_TRIP]
            await self._send(batch, lambda pipe, lease, key: pipe.zrem(key, lease.member))

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(STREAM_LEASE_SECONDS / 3)
            await self.renew()

    async def renew(self) -> None:
        """Renews every open lease now."""
        leases = list(self.open)
        until = time.time() + STREAM_LEASE_SECONDS
        for start in range(0, len(leases), LEASES_PER_ROUND_TRIP):
            await self._send(
                leases[start : start + LEASES_PER_ROUND_TRIP],
                lambda pipe, lease, key: pipe.zadd(key, {lease.member: until}, xx=True),
                expire=True,
            )

    async def _send(
        self,
        leases: list[Lease],
        command: Callable[[Pipeline, Lease, str], object],
        expire: bool = False,
    ) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for lease in leases:
                    for key in lease.keys:
                        command(pipe, lease, key)
                for key in {key for lease in leases for key in lease.keys} if expire else ():
                    pipe.expire(key, int(STREAM_LEASE_SECONDS) + 1)
                await pipe.execute()
        except RedisError as error:  # the leases run out by themselves
            log.warning("stream leases: %s", error)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._send(self._ending, lambda pipe, lease, key: pipe.zrem(key, lease.member))
        self._ending.clear()


async def too_many(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, TooMany)
    response = problems.problem(429, "RATE_LIMITED", str(error), request.url.path)
    response.headers.update(
        {
            "Retry-After": str(error.retry_after),
            "RateLimit-Limit": str(error.limit),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(error.retry_after),
        }
    )
    return response


def quotas_of(request: Request) -> Quotas:
    quotas: Quotas = request.app.state.quotas
    return quotas


async def count_read(request: Request) -> None:
    """A dependency of the event reads: counts one against the client IP's read rate."""
    quotas = quotas_of(request)
    await quotas.take("reads per IP", quotas.ip(request))
