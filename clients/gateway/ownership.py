"""Which holds are whose, so that a buyer's own stream can flag their holds (`mine`) while
every other payload stays free of hold ids: the gateway records each hold it makes for a buyer
in Redis (one set per buyer, shared by every gateway process)."""

from typing import cast

from redis.asyncio import Redis

from clients.gateway.quotas import KEY_PREFIX

# Longer than any hold lives (the service's maximum hold lifetime is hours, not days).
RECORD_SECONDS = 2 * 86_400


def _key(holder_id: str) -> str:
    return f"{KEY_PREFIX}:holds:{holder_id}"


class HoldOwners:
    """Over a client made by inventory.redis_client.connect (replies decoded)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def add(self, holder_id: str, hold_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(_key(holder_id), hold_id)
            pipe.expire(_key(holder_id), RECORD_SECONDS)
            await pipe.execute()

    async def owns(self, holder_id: str, hold_id: str) -> bool:
        return bool(await self.redis.sismember(_key(holder_id), hold_id))

    async def holds_of(self, holder_id: str) -> set[str]:
        return cast(set[str], await self.redis.smembers(_key(holder_id)))  # decoded replies


class MineFilter:
    """One buyer's stream: tells whether a change's hold is theirs. Their holds are read once
    at the start, then again only when a change names a hold not seen yet that ends (a hold's
    first change, `held`, may arrive before the gateway that made it has recorded it; the page
    needs to see its own hold end), so each other buyer's hold costs at most one read."""

    def __init__(self, owners: HoldOwners, holder_id: str) -> None:
        self.owners, self.holder_id = owners, holder_id
        self.mine: set[str] = set()
        self.others: set[str] = set()

    async def start(self) -> None:
        self.mine = await self.owners.holds_of(self.holder_id)

    async def is_mine(self, hold_id: str, ending: bool) -> bool:
        if hold_id in self.mine:
            return True
        if not hold_id or hold_id in self.others or not ending:
            return False
        if await self.owners.owns(self.holder_id, hold_id):
            self.mine.add(hold_id)
            return True
        if len(self.others) > 100_000:  # bounded: a stream open for days forgets old holds
            self.others.clear()
        self.others.add(hold_id)
        return False
