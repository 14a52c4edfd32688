"""A Redis consumer group over one stream of every event.

Entries are read in batches and handed to a sink, which applies them in one Postgres
transaction; they are acknowledged only after the commit, so a crash at any point leaves them
pending and another consumer claims them after an idle timeout. An entry that Postgres refuses
for its data (or that cannot be parsed) and whose delivery count passes the bound is
dead-lettered (Postgres table and a Redis stream) with its reason; every other failure (Postgres
down, too many connections, read-only, deadlock, ...) is retried in place, however long it takes.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError

from booking import metrics, store
from booking.records import Entry
from booking.retry import is_transient, retrying
from booking.upkeep import Upkeep
from inventory import keys
from inventory.errors import is_out_of_memory
from inventory.logs import Recurring

# (event id, entry id): entry ids are unique within one stream, and there is one stream per event.
EntryKey = tuple[str, str]


@dataclass(frozen=True)
class Failure:
    """Why an entry was not applied; `permanent` when retrying cannot help (bad data), which
    alone lets it be dead-lettered."""

    reason: str
    permanent: bool


class Sink(Protocol):
    async def write(self, entries: Sequence[Entry]) -> dict[EntryKey, Failure]:
        """Applies the entries durably; returns why each entry it could not apply was not.

        Raises (a transient error) only when it applied nothing.
        """
        ...


@dataclass(frozen=True)
class ConsumerSettings:
    group: str
    consumer: str
    batch_size: int = 1000
    block_ms: int = 100
    claim_idle_ms: int = 30_000
    max_deliveries: int = 5
    upkeep_interval_s: float = 5.0  # lag reports and trimming


class StreamConsumer:
    def __init__(
        self,
        redis: Redis,
        pool: asyncpg.Pool,
        sink: Sink,
        upkeep: Upkeep,
        stream_of: Callable[[str], str],
        settings: ConsumerSettings,
    ) -> None:
        self.redis = redis
        self.pool = pool
        self.sink = sink
        self.upkeep = upkeep
        self.stream_of = stream_of
        self.settings = settings
        self.streams: dict[str, str] = {}  # stream key -> event id
        self.failures: dict[EntryKey, Failure] = {}  # last failure of entries not yet acknowledged
        self._next_reclaim = 0.0
        self._next_upkeep = 0.0
        self._refused_groups = Recurring(
            log, f"{settings.group}: events' groups not created: redis over maxmemory"
        )
        self._refused_letters = Recurring(
            log, f"{settings.group}: dead letters' copies not added: redis over maxmemory"
        )

    async def watch(self, event_id: str) -> bool:
        """Joins the event's stream, creating the group at the start so nothing is missed;
        False when Redis, over its maxmemory, refused to create a group that does not exist:
        the stream is then left to the next discovery round."""
        stream = self.stream_of(event_id)
        if await self._create_group(stream):
            self.streams[stream] = event_id
            return True
        self.streams.pop(stream, None)
        return False

    async def _create_group(self, stream: str) -> bool:
        """Whether the group exists (created now or before)."""
        try:
            await self.redis.xgroup_create(stream, self.settings.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" in str(error):
                return True
            if not is_out_of_memory(error):
                raise
            # XGROUP CREATE is refused over maxmemory even when the group exists: then the
            # stream is read all the same (XREADGROUP and XACK are not refused).
            try:
                groups: Any = await self.redis.xinfo_groups(stream)
            except ResponseError:  # no stream yet
                groups = []
            if any(g["name"] == self.settings.group for g in groups):
                return True
            self._refused_groups.met(error)
            return False
        self._refused_groups.ended()
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Steps until `stop` is set. Nothing ends it early: transient failures are retried with
        backoff, and an unexpected one is logged, counted and retried after a pause, so that one
        bad entry or event never stops the work on the others."""
        errors = 0
        while not stop.is_set():
            try:
                async for attempt in retrying(stop, f"{self.settings.group} consumer"):
                    with attempt:
                        await self.step(stop)
                errors = 0
            except Exception as error:
                if stop.is_set() and is_transient(error):
                    # Told to stop during an outage: what was read stays pending for the next.
                    log.warning("%s: stopped while failing: %r", self.settings.group, error)
                    return
                errors += 1
                log.exception("%s: step failed (%d in a row)", self.settings.group, errors)
                metrics.WORKER_ERRORS.labels(self.settings.group).inc()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), min(0.1 * 2**errors, 30.0))

    async def step(self, stop: asyncio.Event) -> int:
        """One round: reclaim and upkeep when due, then read and apply one batch of new entries."""
        now = time.monotonic()
        if now >= self._next_reclaim:
            more = await self.reclaim(stop)
            interval = min(max(self.settings.claim_idle_ms / 2000, 0.1), 10.0)
            self._next_reclaim = now + (0 if more else interval)
        if now >= self._next_upkeep:
            await self.upkeep.run(self.streams)
            self._next_upkeep = now + self.settings.upkeep_interval_s
        return await self.read(stop)

    async def read(self, stop: asyncio.Event) -> int:
        if not self.streams:
            await asyncio.sleep(self.settings.block_ms / 1000)
            return 0
        if isinstance(self.redis, RedisCluster):
            entries = await self._poll_cluster()
            if not entries:
                await asyncio.sleep(self.settings.block_ms / 1000)
        else:
            entries = await self._read_blocking()
        await self.handle(entries, stop)
        return len(entries)

    async def _read_blocking(self) -> list[Entry]:
        """One XREADGROUP over every stream, waiting up to block_ms for news."""
        try:
            reply: Any = await self.redis.xreadgroup(
                self.settings.group,
                self.settings.consumer,
                dict.fromkeys(self.streams, ">"),
                count=self.settings.batch_size,
                block=self.settings.block_ms,
            )
        except ResponseError as error:
            # NOGROUP, or UNBLOCKED when a stream vanished while we waited on it.
            if not str(error).startswith(("NOGROUP", "UNBLOCKED")):
                raise
            # Redis lost a stream (a flush or a failover): join every stream again.
            for event_id in list(self.streams.values()):
                await self.watch(event_id)
            return []
        return self._entries(reply or [])

    async def _poll_cluster(self) -> list[Entry]:
        """One XREADGROUP per stream, without blocking, pipelined: a cluster refuses a command
        over keys of different slots, and redis-py's cluster pipeline sends each node's
        commands to that node in one round trip. `read` waits block_ms when none had news."""
        streams = list(self.streams)
        pipe = self.redis.pipeline(transaction=False)
        for stream in streams:
            pipe.xreadgroup(
                self.settings.group,
                self.settings.consumer,
                {stream: ">"},
                count=self.settings.batch_size,
            )
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        read: list[Any] = []
        for stream, reply in zip(streams, replies, strict=True):
            if isinstance(reply, ResponseError) and str(reply).startswith("NOGROUP"):
                await self.watch(self.streams[stream])  # that node lost it: join it again
            elif isinstance(reply, Exception):
                raise reply
            else:
                read += reply or []
        return self._entries(read)

    def _entries(self, reply: Any) -> list[Entry]:
        return [
            Entry(stream, self.streams[stream], entry_id, fields)
            for stream, items in reply
            for entry_id, fields in items
            if fields is not None
        ]

    async def handle(self, entries: Sequence[Entry], stop: asyncio.Event) -> None:
        if not entries:
            return
        failures: dict[EntryKey, Failure] = {}
        # Postgres down: hold on to the batch and wait; Redis keeps the entries meanwhile.
        async for attempt in retrying(stop, f"{self.settings.group} write"):
            with attempt:
                failures = await self.sink.write(entries)
        for (event_id, entry_id), failure in failures.items():
            log.warning(
                "%s: entry %s of %s not applied (%s): %s",
                self.settings.group,
                entry_id,
                event_id,
                "bad data" if failure.permanent else "will retry",
                failure.reason,
            )
            metrics.ENTRY_FAILURES.labels(self.settings.group).inc()
        self.failures.update(failures)
        await self._ack([e for e in entries if (e.event_id, e.entry_id) not in failures])

    async def _ack(self, entries: Sequence[Entry]) -> None:
        by_stream: dict[str, list[str]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.entry_id)
            self.failures.pop((entry.event_id, entry.entry_id), None)
        if not by_stream:
            return
        pipe = self.redis.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.settings.group, *ids)
        await pipe.execute()

    async def reclaim(self, stop: asyncio.Event) -> bool:
        """Claims entries left pending too long (by a crashed or stuck consumer) and applies them;
        dead-letters those delivered too often. True when more may be waiting."""
        more = False
        for stream, event_id in list(self.streams.items()):
            try:
                next_id, claimed, deleted = await self.redis.xautoclaim(
                    stream,
                    self.settings.group,
                    self.settings.consumer,
                    min_idle_time=self.settings.claim_idle_ms,
                    start_id="0-0",
                    count=self.settings.batch_size,
                )
            except ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                continue  # read() joins the stream again
            more = more or next_id != "0-0"
            if deleted:  # trimmed away while pending: nothing left to apply
                await self.redis.xack(stream, self.settings.group, *deleted)
            if not claimed:
                continue
            entries = [Entry(stream, event_id, entry_id, fields) for entry_id, fields in claimed]
            deliveries = await self._deliveries(stream, entries)
            dead = [
                e
                for e in entries
                if deliveries[e.entry_id] > self.settings.max_deliveries and self._bad_data(e)
            ]
            await self._dead_letter(dead, deliveries, stop)
            await self.handle([e for e in entries if e not in dead], stop)
        return more

    def _bad_data(self, entry: Entry) -> bool:
        failure = self.failures.get((entry.event_id, entry.entry_id))
        return failure is not None and failure.permanent

    async def _deliveries(self, stream: str, entries: Sequence[Entry]) -> dict[str, int]:
        pending = await self.redis.xpending_range(
            stream,
            self.settings.group,
            min=entries[0].entry_id,
            max=entries[-1].entry_id,
            count=len(entries) * 2,
            consumername=self.settings.consumer,
        )
        counts = {p["message_id"]: int(p["times_delivered"]) for p in pending}
        return {e.entry_id: counts.get(e.entry_id, 1) for e in entries}

    async def _dead_letter(
        self, dead: Sequence[Entry], deliveries: dict[str, int], stop: asyncio.Event
    ) -> None:
        if not dead:
            return
        letters = [
            (
                entry,
                deliveries[entry.entry_id] - 1,
                self.failures[(entry.event_id, entry.entry_id)].reason,
            )
            for entry in dead
        ]
        async for attempt in retrying(stop, f"{self.settings.group} dead-letter"):
            with attempt:
                async with self.pool.acquire() as conn:
                    await store.insert_dead_letters(conn, self.settings.group, letters)
        pipe = self.redis.pipeline(transaction=False)
        for entry, count, reason in letters:
            pipe.xadd(
                keys.dead_letter_key(entry.event_id),
                _letter(entry, self.settings.group, count, reason),
            )
        replies = await pipe.execute(raise_on_error=False)
        copied: list[Entry] = []
        for (entry, count, reason), reply in zip(letters, replies, strict=True):
            if isinstance(reply, Exception):
                if not is_out_of_memory(reply):
                    raise reply
                # Left pending: dead-lettered again (one row in Postgres), copy and all, at a
                # later claim once Redis takes the copy.
                self._refused_letters.met(reply)
                continue
            log.error(
                "%s: dead-lettered entry %s of %s after %d deliveries: %s",
                self.settings.group,
                entry.entry_id,
                entry.event_id,
                count,
                reason,
            )
            copied.append(entry)
        if copied:
            self._refused_letters.ended()
        metrics.DEAD_LETTERS.labels(self.settings.group).inc(len(copied))
        await self._ack(copied)


def _letter(entry: Entry, group: str, deliveries: int, reason: str) -> dict[Any, Any]:
    return {
        "stream": entry.stream,
        "group": group,
        "entry_id": entry.entry_id,
        "deliveries": deliveries,
        "reason": reason,
        "fields": json.dumps(entry.fields),
    }


log = logging.getLogger(__name__)
