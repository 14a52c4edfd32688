"""Live seat changes: one Redis reader per watched event, fanned out to its watchers in-process.

The change log of event E is the stream ``lml:{E}:changes`` whose entry ids are ``0-<version>``,
so "every change after version v" is an XREAD or XRANGE from ``0-v``. A watcher that starts
behind the reader first catches up with XRANGE, then follows the reader's batches; versions are
consecutive, so any gap means the log was trimmed past the watcher (OUT_OF_RANGE).
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.exceptions import RedisError
from redis.maint_notifications import MaintNotificationsConfig

from inventory import keys
from inventory.cancellation import raise_if_cancelled
from inventory.errors import InventoryError
from inventory.validation import check_event_id

log = logging.getLogger(__name__)

READ_COUNT = 500  # change-log entries per read
BLOCK_MS = 5_000  # how long one XREAD waits for news before asking again
MAX_QUEUED = 256  # batches a watcher may fall behind before it is ended

_REASONS = {
    "held": pb.CHANGE_REASON_HELD,
    "extended": pb.CHANGE_REASON_EXTENDED,
    "released": pb.CHANGE_REASON_RELEASED,
    "expired": pb.CHANGE_REASON_EXPIRED,
    "confirmed": pb.CHANGE_REASON_CONFIRMED,
    "cancelled": pb.CHANGE_REASON_CANCELLED,
    "restored": pb.CHANGE_REASON_RESTORED,
}
_STATUSES = {
    "AVAILABLE": pb.SEAT_STATUS_AVAILABLE,
    "HELD": pb.SEAT_STATUS_HELD,
    "BOOKED": pb.SEAT_STATUS_BOOKED,
}

Changes = list[pb.SeatChange]


class WatchEnded(InventoryError):
    """Ends a watch: the log no longer reaches back far enough, the watcher is too slow, the
    reader lost Redis, or the server is shutting down."""


def _shutting_down() -> WatchEnded:
    return WatchEnded(pb.ERROR_REASON_SHUTTING_DOWN, "server shutting down")


def _trimmed(after: int) -> WatchEnded:
    return WatchEnded(
        pb.ERROR_REASON_CHANGES_TRIMMED,
        f"changes after version {after} are no longer retained: snapshot again",
    )


def _version(entry_id: str) -> int:
    return int(entry_id.partition("-")[2])


def to_change(entry_id: str, fields: dict[str, str]) -> pb.SeatChange:
    """A change-log entry (its fields are documented in lua/RECORDS.md) as a SeatChange."""
    ms = int(fields["changed_at"])
    return pb.SeatChange(
        version=_version(entry_id),
        reason=_REASONS.get(fields["reason"], pb.CHANGE_REASON_UNSPECIFIED),
        status=_STATUSES.get(fields["status"], pb.SEAT_STATUS_UNSPECIFIED),
        # cjson encodes an empty Lua table as {}, hence `or []`.
        seat_ids=json.loads(fields["seat_ids"]) or [],
        hold_id=fields.get("hold_id", ""),
        booking_id=fields.get("booking_id", ""),
        changed_at=Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000),
    )


class _Watcher:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Changes | WatchEnded] = asyncio.Queue()

    def offer(self, item: Changes | WatchEnded) -> bool:
        """Queues a batch; False (and the watcher ended) when it has fallen too far behind."""
        if isinstance(item, list) and self.queue.qsize() >= MAX_QUEUED:
            self.queue.put_nowait(
                WatchEnded(
                    pb.ERROR_REASON_WATCHER_TOO_SLOW,
                    "the watcher fell behind: watch again from the last version received",
                )
            )
            return False
        self.queue.put_nowait(item)
        return isinstance(item, list)


class _Feed:
    """One event's reader: XREAD BLOCK on the change log, each batch to every watcher's queue."""

    def __init__(self, key: str, position: int) -> None:
        self.key = key
        self.position = position  # the last version handed to the watchers
        self.watchers: set[_Watcher] = set()
        self.task: asyncio.Task[None] | None = None

    def publish(self, item: Changes | WatchEnded) -> None:
        self.watchers = {watcher for watcher in self.watchers if watcher.offer(item)}

    async def run(self, reader: Redis) -> None:
        """Reads until cancelled or failed, then closes `reader`, which is the feed's own: a
        cancelled XREAD leaves its connection waiting for a reply that nobody reads (redis-py
        then gives it back to the pool still open), so it is closed here with its pool."""
        try:
            while True:
                raise_if_cancelled()
                reply: Any = await reader.xread(
                    {self.key: f"0-{self.position}"}, count=READ_COUNT, block=BLOCK_MS
                )
                if not reply:
                    continue
                changes = [to_change(entry_id, fields) for entry_id, fields in reply[0][1]]
                if changes[0].version != self.position + 1:
                    self.publish(_trimmed(self.position))
                self.position = changes[-1].version
                self.publish(changes)
        except RedisError as error:
            log.warning("change-log reader of %s: %s", self.key, error)
            self.publish(WatchEnded(pb.ERROR_REASON_REDIS_UNAVAILABLE, f"redis: {error}"))
        except Exception:
            # Never leave watchers waiting on a reader that is gone.
            log.exception("change-log reader of %s failed", self.key)
            self.publish(WatchEnded(pb.ERROR_REASON_READER_FAILED, "change-log reader failed"))
        finally:
            await reader.aclose(close_connection_pool=True)


def _client(connection_class: type[Any], options: dict[str, Any]) -> Redis:
    """A feed's own client, with a pool of its own: a blocked XREAD holds its connection for
    seconds, which must not starve the shared, bounded pool of the request path."""
    return Redis(
        connection_pool=ConnectionPool(
            connection_class=connection_class,
            **options
            # A socket timeout shorter than the XREAD block would fail every quiet read.
            | {"socket_timeout": BLOCK_MS / 1000 + 10}
            # As inventory.redis_client: reconnect after a Redis restart instead of failing once.
            | {"maint_notifications_config": MaintNotificationsConfig(enabled=False)},
        )
    )


class WatchHub:
    """Every WatchEvent call of this process: one change-log reader per watched event."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._feeds: dict[str, _Feed] = {}
        self._closed = False

    async def watch(self, event_id: str, from_version: int) -> AsyncIterator[Changes]:
        """Every change of the event after `from_version`, in order, in batches; never ends
        by itself, raises WatchEnded (or another InventoryError for a bad request)."""
        check_event_id(event_id)
        event_keys = keys.event_keys(event_id)
        latest: str | None = await self.redis.hget(event_keys.meta, "version")  # type: ignore[assignment]
        if latest is None:
            raise InventoryError(pb.ERROR_REASON_EVENT_NOT_FOUND, f"no event {event_id}")
        if from_version > int(latest):
            raise WatchEnded(
                pb.ERROR_REASON_VERSION_AHEAD,
                f"version {from_version} is ahead of the change log ({latest}): snapshot again",
            )
        if self._closed:
            raise _shutting_down()
        feed = self._feeds.get(event_id)
        if feed is None or (feed.task is not None and feed.task.done()):  # a reader that failed
            feed = self._start(event_id, event_keys.changes, int(latest))
        watcher = _Watcher()
        feed.watchers.add(watcher)
        # Taken in the same step as joining: the feed delivers everything after `caught_up`.
        caught_up = feed.position
        try:
            last = from_version
            if last < caught_up:
                async for changes in self._backfill(event_keys.changes, last, caught_up):
                    yield changes
                    last = changes[-1].version
            while True:
                item = await watcher.queue.get()
                if isinstance(item, WatchEnded):
                    raise item
                fresh = [change for change in item if change.version > last]
                if fresh:
                    yield fresh
                    last = fresh[-1].version
        finally:
            feed.watchers.discard(watcher)
            if not feed.watchers and self._feeds.get(event_id) is feed:
                self._stop(event_id)

    async def _backfill(self, key: str, after: int, upto: int) -> AsyncIterator[Changes]:
        start = after + 1
        while start <= upto:
            entries: Any = await self.redis.xrange(key, f"0-{start}", f"0-{upto}", count=READ_COUNT)
            if not entries or _version(entries[0][0]) != start:
                raise _trimmed(after)
            changes = [to_change(entry_id, fields) for entry_id, fields in entries]
            yield changes
            start = changes[-1].version + 1

    def counts(self) -> tuple[int, int]:
        """(watchers, change-log readers) of this process, for the metrics."""
        feeds = list(self._feeds.values())
        return sum(len(feed.watchers) for feed in feeds), len(feeds)

    def _start(self, event_id: str, key: str, position: int) -> _Feed:
        feed = _Feed(key, position)
        feed.task = asyncio.create_task(feed.run(self._reader(key)))
        feed.task.add_done_callback(lambda _task: self._forget(event_id, feed))
        self._feeds[event_id] = feed
        return feed

    def _reader(self, key: str) -> Redis:
        """A new client to block on `key`'s change log. On a cluster, a plain client to the
        node that owns the key's slot now (a cluster client cannot block on one node's
        connection), so a watch started after a failover reads from the new primary."""
        if not isinstance(self.redis, RedisCluster):
            pool = self.redis.connection_pool
            return _client(pool.connection_class, pool.connection_kwargs)
        node = self.redis.get_node_from_key(key)
        if node is None:
            raise RedisError(f"no cluster node owns {key}")
        return _client(node.connection_class, node.connection_kwargs)

    def _forget(self, event_id: str, feed: _Feed) -> None:
        if self._feeds.get(event_id) is feed:
            del self._feeds[event_id]

    def _stop(self, event_id: str) -> None:
        feed = self._feeds.pop(event_id)
        if feed.task is not None:
            feed.task.cancel()

    async def close(self) -> None:
        """Ends every watch with UNAVAILABLE (clients reconnect elsewhere) and the readers."""
        self._closed = True
        tasks = [feed.task for feed in self._feeds.values() if feed.task is not None]
        for feed in list(self._feeds.values()):
            feed.publish(_shutting_down())
        for task in tasks:
            task.cancel()
        self._feeds.clear()
        await asyncio.gather(*tasks, return_exceptions=True)  # each closes its reader
