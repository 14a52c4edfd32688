"""How durable a confirm is before the service acknowledges it (`--confirm-durability`).

- ``none``: as soon as the confirm script has run (Redis's own persistence applies: with
  ``appendfsync everysec`` up to a second of bookings can be lost with the server).
- ``replica``: once a replica has acknowledged the booking (``WAIT 1 <timeout>``).
- ``aof``: once the primary has fsynced it to its append-only file (``WAITAOF 1 0 <timeout>``,
  Redis >= 7.2 with ``appendonly yes``).

WAIT applies to the writes of the connection that sends it, and on the shared pipelined
connection it would hold every caller behind it. So the waits go over a connection of their own:
each round writes a marker key there (its replication offset is then at or past every confirm
finished before) and waits for it; every confirm that finished while a round ran joins the next
one, so one WAIT serves a whole group of confirms. A wait that times out fails the confirm with
UNAVAILABLE; the booking is made, and a retry with the same hold returns it and waits again.
"""

import asyncio
import enum
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError, TimeoutError

from inventory import keys

log = logging.getLogger(__name__)


class Durability(enum.StrEnum):
    NONE = "none"
    REPLICA = "replica"
    AOF = "aof"


class DurabilityUnsupported(Exception):
    """The Redis server cannot give the durability asked for."""


async def check_support(redis: Redis, durability: Durability) -> None:
    """Raises DurabilityUnsupported, saying why, when `redis` cannot wait as asked."""
    if durability == Durability.AOF:
        if "waitaof" not in await redis.command():
            version = (await redis.info("server"))["redis_version"]
            raise DurabilityUnsupported(
                "--confirm-durability aof needs the WAITAOF command (Redis 7.2 or later); "
                f"this Redis is {version}: upgrade it, or use --confirm-durability replica or none"
            )
        appendonly = (await redis.config_get("appendonly")).get("appendonly")
        if appendonly != "yes":
            raise DurabilityUnsupported(
                "--confirm-durability aof needs appendonly yes on the Redis server"
            )
    elif durability == Durability.REPLICA:
        replicas = int((await redis.info("replication")).get("connected_slaves", 0))
        if replicas == 0:  # one may connect later: confirms fail UNAVAILABLE until then
            log.warning("--confirm-durability replica: no replica is connected to Redis yet")


class ConfirmWaiter:
    """Waits until every write finished before the call is on a replica or in the AOF."""

    def __init__(self, redis_url: str, durability: Durability, timeout: float) -> None:
        assert durability != Durability.NONE
        self.durability = durability
        self._timeout_ms = max(1, int(timeout * 1000))
        # One connection: WAIT counts the writes of the connection it is sent on.
        self._redis = Redis.from_url(
            redis_url,
            decode_responses=True,
            single_connection_client=True,
            socket_timeout=timeout + 5,
            socket_connect_timeout=timeout + 5,
        )
        self._next: asyncio.Future[None] | None = None
        self._rounds: asyncio.Task[None] | None = None

    async def wait(self) -> None:
        """Raises redis's TimeoutError when the writes are not durable within the timeout."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            # Retrieved here so that a round nobody waits for any more does not log an error.
            self._next.add_done_callback(lambda done: done.cancelled() or done.exception())
            if self._rounds is None:
                self._rounds = asyncio.create_task(self._run_rounds())
        await asyncio.shield(self._next)

    async def close(self) -> None:
        if self._rounds is not None:
            self._rounds.cancel()
        await self._redis.aclose()

    async def _run_rounds(self) -> None:
        try:
            # A round that started before a confirm finished does not cover it: that confirm
            # waits for the next round, which starts once this one ends.
            while self._next is not None:
                joined, self._next = self._next, None
                try:
                    await self._wait_once()
                    joined.set_result(None)
                except RedisError as error:
                    joined.set_exception(error)
        finally:
            self._rounds = None

    async def _wait_once(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(keys.DURABILITY_MARKER)
        if self.durability == Durability.REPLICA:
            pipe.execute_command("WAIT", 1, self._timeout_ms)
            _marker, replicas = await pipe.execute()
            if int(replicas) < 1:
                raise TimeoutError(
                    f"no replica acknowledged the booking within {self._timeout_ms} ms: "
                    "it is made; retry to get it once it is on a replica"
                )
        else:
            pipe.execute_command("WAITAOF", 1, 0, self._timeout_ms)
            _marker, (local, _replicas) = await pipe.execute()
            if int(local) < 1:
                raise TimeoutError(
                    f"the booking was not fsynced to the append-only file within "
                    f"{self._timeout_ms} ms: it is made; retry to get it once it is durable"
                )
