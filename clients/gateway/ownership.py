"""Which holds are whose, so that a buyer's own stream can flag their holds (`mine`) while
every other payload stays free of hold ids: the gateway records each hold it makes for a buyer
in Redis (one set per buyer, and the buyer of each hold, shared by every gateway process)."""

from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis

from clients.gateway.quotas import KEY_PREFIX

# Longer than any hold lives (the service's maximum hold lifetime is hours, not days).
RECORD_SECONDS = 2 * 86_400


def _key(holder_id: str) -> str:
    return f"{KEY_PREFIX}:holds:{holder_id}"


def _owner_key(hold_id: str) -> str:
    return f"{KEY_PREFIX}:hold-owner:{hold_id}"


class HoldOwners:
    """Over a client made by inventory.redis_client.connect (replies decoded)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def add(self, holder_id: str, hold_id: str) -> None:
        # Not a transaction: the buyer's set and the hold's record may be on two cluster nodes.
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sadd(_key(holder_id), hold_id)
            pipe.expire(_key(holder_id), RECORD_SECONDS)
            pipe.set(_owner_key(hold_id), holder_id, ex=RECORD_SECONDS)
            await pipe.execute()

    async def owners_of(self, hold_ids: Sequence[str]) -> list[str | None]:
        """The buyer of each hold (None: not made through a gateway), in one round trip: a
        process's live streams look each hold up once, whatever the number of viewers."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for hold_id in hold_ids:
                pipe.get(_owner_key(hold_id))
            return cast(list[str | None], await pipe.execute())
