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

On a Redis Cluster each primary replicates its own writes, so the wait must run on the primary
that ran the confirm: one waiting connection per primary, and a marker key in the event's own
slot. redis-py's cluster client cannot do it for us: it sends a keyless WAIT to every primary,
each on a pooled connection that wrote nothing, which returns at once. The primary is looked up
("pinned") in the same client's slot table before the confirm and again before the wait: if the
slot moved in between (a failover), the confirm may have run on the other node and fails
UNAVAILABLE; its retry pins the new primary and waits there.
"""

import asyncio
import enum
import logging
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import urlsplit

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import (
    AskError,
    RedisClusterException,
    RedisError,
    TimeoutError,
    TryAgainError,
)

from inventory import keys

log = logging.getLogger(__name__)


class Durability(enum.StrEnum):
    NONE = "none"
    REPLICA = "replica"
    AOF = "aof"


class DurabilityUnsupported(Exception):
    """The Redis server cannot give the durability asked for."""


async def check_support(redis: Redis, durability: Durability) -> None:
    """Raises DurabilityUnsupported, saying why, when `redis` (on a cluster: any primary)
    cannot wait as asked."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()
        for node in redis.get_primaries():
            primary = Redis(host=node.host, port=int(node.port), decode_responses=True)
            try:
                await _check_node(primary, durability, f" (cluster node {node.name})")
            finally:
                await primary.aclose()
    else:
        await _check_node(redis, durability, "")


async def _check_node(redis: Redis, durability: Durability, where: str) -> None:
    if durability == Durability.AOF:
        if "waitaof" not in await redis.command():
            version = (await redis.info("server"))["redis_version"]
            raise DurabilityUnsupported(
                "--confirm-durability aof needs the WAITAOF command (Redis 7.2 or later); "
                f"this Redis{where} is {version}: upgrade it, or use --confirm-durability "
                "replica or none"
            )
        appendonly = (await redis.config_get("appendonly")).get("appendonly")
        if appendonly != "yes":
            raise DurabilityUnsupported(
                f"--confirm-durability aof needs appendonly yes on the Redis server{where}"
            )
    elif durability == Durability.REPLICA:
        replicas = int((await redis.info("replication")).get("connected_slaves", 0))
        if replicas == 0:  # one may connect later: confirms fail UNAVAILABLE until then
            log.warning("--confirm-durability replica: no replica is connected to Redis%s", where)


class Pin(NamedTuple):
    """Where an event's confirm runs, looked up before it: the node ("" for a single Redis)
    and the marker key its wait writes there."""

    node: str
    marker: str


class ConfirmWaiter:
    """Waits until every write finished before the call is on a replica or in the AOF, on the
    node of each event confirmed.

    `router`, for a Redis Cluster, is the client the confirms run on: its slot table says which
    primary ran them. Without it, `redis_url` is the one Redis every confirm runs on.
    """

    def __init__(
        self,
        redis_url: str,
        durability: Durability,
        timeout: float,
        router: RedisCluster | None = None,
    ) -> None:
        assert durability != Durability.NONE
        self.durability = durability
        self._timeout = timeout
        self._redis_url = redis_url
        self._router = router
        self._nodes: dict[str, _Rounds] = {}
        if router is None:
            self._nodes[""] = _Rounds(self._connection(redis_url), durability, timeout)

    def pin(self, event_ids: Iterable[str]) -> dict[str, Pin | None]:
        """Each event's node as the confirm is about to run; None if the client does not know
        it (a cluster's slot table not loaded yet or missing the slot): its wait fails."""
        return {event_id: self._node_of(event_id) for event_id in event_ids}

    async def wait(self, pins: dict[str, Pin | None]) -> None:
        """Raises a transient RedisError (UNAVAILABLE) when a booking of the pinned events is not
        durable within the timeout, or its event moved to another node meanwhile."""
        for error in (await self.failures(pins)).values():
            raise error

    async def failures(self, pins: dict[str, Pin | None]) -> dict[str, RedisError]:
        """The pinned events whose bookings are not durable, and why; waits on every node at
        once."""
        events = list(pins)
        outcomes = await asyncio.gather(
            *(self._wait_event(event_id, pins[event_id]) for event_id in events),
            return_exceptions=True,
        )
        failed: dict[str, RedisError] = {}
        for event_id, outcome in zip(events, outcomes, strict=True):
            if isinstance(outcome, RedisError):
                failed[event_id] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
        return failed

    async def close(self) -> None:
        for rounds in self._nodes.values():
            await rounds.close()

    def _node_of(self, event_id: str) -> Pin | None:
        if self._router is None:
            return Pin("", keys.DURABILITY_MARKER)
        marker = keys.durability_marker(event_id)
        try:
            node = self._router.get_node_from_key(marker)
        except RedisClusterException:
            return None
        return None if node is None else Pin(node.name, marker)

    async def _wait_event(self, event_id: str, pin: Pin | None) -> None:
        if pin is None or self._node_of(event_id) != pin:
            raise TryAgainError(
                f"the primary of event {event_id} changed during the confirm: it may be made; "
                "retry to get it once it is durable on the new primary"
            )
        rounds = self._nodes.get(pin.node)
        if rounds is None:
            connection = self._connection(_node_url(self._redis_url, pin.node))
            rounds = self._nodes[pin.node] = _Rounds(connection, self.durability, self._timeout)
        await rounds.wait(pin.marker)

    def _connection(self, url: str) -> Redis:
        # One connection: WAIT counts the writes of the connection it is sent on.
        return Redis.from_url(
            url,
            decode_responses=True,
            single_connection_client=True,
            socket_timeout=self._timeout + 5,
            socket_connect_timeout=self._timeout + 5,
        )


def _node_url(seed_url: str, node: str) -> str:
    """The URL of a cluster node ("host:port"): the seed node's, credentials, TLS and options
    kept."""
    url = urlsplit(seed_url)
    credentials = url.netloc.rpartition("@")[0]
    return url._replace(netloc=f"{credentials}@{node}" if credentials else node).geturl()


class _Rounds:
    """The waits of one node, one round at a time over one connection."""

    def __init__(self, redis: Redis, durability: Durability, timeout: float) -> None:
        self._redis = redis
        self.durability = durability
        self._timeout_ms = max(1, int(timeout * 1000))
        self._marker = keys.DURABILITY_MARKER
        self._next: asyncio.Future[None] | None = None
        self._rounds: asyncio.Task[None] | None = None

    async def wait(self, marker: str) -> None:
        """Raises redis's TimeoutError when the writes are not durable within the timeout.
        `marker` is a key the node serves (any joined confirm's serves for its round)."""
        self._marker = marker
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
                except AskError as error:  # MOVED or ASK: the slot left this node (failover)
                    joined.set_exception(TryAgainError(f"the event moved to another node: {error}"))
                except RedisError as error:
                    joined.set_exception(error)
        finally:
            self._rounds = None

    async def _wait_once(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(self._marker)
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
