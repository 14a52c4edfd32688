"""Each buyer's place in an event's waiting room as the gateway remembers it, in its Redis so that
every gateway process sees it: the ticket (to follow it) and, while it is live, the admission
token (the hold route passes it on, so the buyer's client never carries it). The admission's
record lives exactly as long as the admission."""

import time
from typing import cast

from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from clients.gateway.quotas import KEY_PREFIX

# A ticket outlives any sale's queue; joining again finds the same ticket anyway.
TICKET_SECONDS = 2 * 86_400


def _key(kind: str, event_id: str, holder_id: str) -> str:
    # The event id's length first: ids may hold ':' and no two (event, buyer) pairs share a key.
    return f"{KEY_PREFIX}:queue:{kind}:{len(event_id)}:{event_id}:{holder_id}"


class Admissions:
    """Over a client made by inventory.redis_client.connect (replies decoded)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def remember(self, event_id: str, holder_id: str, ticket: pb.QueueTicket) -> None:
        """Records the buyer's ticket and, when it carries a live admission, the admission."""
        left_ms = ticket.admission_expires_at.ToMilliseconds() - time.time_ns() // 1_000_000
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(_key("ticket", event_id, holder_id), ticket.ticket_id, ex=TICKET_SECONDS)
            if ticket.admission_token and left_ms > 0:
                key = _key("admission", event_id, holder_id)
                pipe.set(key, ticket.admission_token, px=left_ms)
            await pipe.execute()

    async def ticket_id(self, event_id: str, holder_id: str) -> str | None:
        return cast(str | None, await self.redis.get(_key("ticket", event_id, holder_id)))

    async def token(self, event_id: str, holder_id: str) -> str:
        """The buyer's live admission to the event, or "" (the service then says whether the
        event needs one)."""
        found = await self.redis.get(_key("admission", event_id, holder_id))
        return cast(str | None, found) or ""  # decoded replies
