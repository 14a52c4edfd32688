"""The layout records of events (which layout by id, version and hash, which currency and
prices an event was created with), kept in the gateway process: in a flash sale thousands of
phones load the seat map at once, and each load would otherwise read Postgres twice for a record
that hardly ever changes.

A record may change in Postgres (an event restored from another deployment names another
layout), so the cache keeps only what Postgres will tell it about: migration 0101 announces every
change to event_layouts and event_prices on the channel `event_layouts` when it commits, and
records are kept only while a connection listens there. When that connection ends, everything
kept is dropped and every request reads Postgres until it listens again; a read that a change
overtook is not kept. A bulk load with triggers off (pg_restore --disable-triggers) announces
nothing: records older than RECORD_SECONDS are read again, which bounds that staleness.

The layout each record names is immutable (its export is kept by hash: seat_index.py).
"""

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from clients.gateway.single_flight import SingleFlight
from inventory.layouts.events import EventLayout, Queryable, read_event_layout

log = logging.getLogger(__name__)

CHANNEL = "event_layouts"  # migration 0101's; the payload is an event id, '' for all events
CACHED_EVENTS = 4096  # records a process keeps (a few hundred bytes each)
RECORD_SECONDS = 30.0  # a record is read again after this, announced or not
RELISTEN_SECONDS = 1.0  # after the listening connection ends
# The announcing trigger exists only once the migrations are applied: without it, keep nothing.
TRIGGER_EXISTS = "SELECT EXISTS (SELECT FROM pg_trigger WHERE tgname = 'event_layouts_notify')"

Reader = Callable[[Queryable, str], Awaitable[EventLayout]]


class EventRecords:
    """Events' layout records by event id: the last CACHED_EVENTS read, while Postgres
    announces their changes. Events without a record (EventSetupError) are not kept."""

    def __init__(self, pool: asyncpg.Pool, read: Reader = read_event_layout) -> None:
        self.pool, self.read = pool, read
        self._records: OrderedDict[str, tuple[float, EventLayout]] = OrderedDict()
        self._reads: SingleFlight[tuple[str, int], EventLayout] = SingleFlight()
        self._listening = False
        self.generation = 0  # moves on every announcement and every change of listening

    @property
    def listening(self) -> bool:
        """Whether records are kept: only while Postgres announces their changes."""
        return self._listening

    async def of(self, event_id: str) -> EventLayout:
        """The event's record; raises EventSetupError when the event has none."""
        kept = self._records.get(event_id)
        if kept is not None and time.monotonic() - kept[0] < RECORD_SECONDS:
            self._records.move_to_end(event_id)
            return kept[1]
        # Callers share a read begun since the last announcement, never one from before it.
        generation = self.generation
        return await self._reads.run((event_id, generation), lambda: self._read(event_id))

    async def _read(self, event_id: str) -> EventLayout:
        generation, now = self.generation, time.monotonic()
        record = await self.read(self.pool, event_id)
        # Kept only if no announcement came while it was read: that one may be of this event.
        if self._listening and generation == self.generation:
            self._records[event_id] = (now, record)
            self._records.move_to_end(event_id)
            while len(self._records) > CACHED_EVENTS:
                self._records.popitem(last=False)
        return record

    def _forget(self, event_id: str = "") -> None:
        self.generation += 1
        if event_id:
            self._records.pop(event_id, None)
        else:
            self._records.clear()

    def _announced(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        self._forget(str(payload))

    async def listen(self) -> None:
        """Listens for announcements (a pool connection, held for as long) and keeps records
        while it does; listens again RELISTEN_SECONDS after the connection ends, until
        cancelled. Keeps nothing, for good, when the database has no announcing trigger."""
        while True:
            try:
                if not await self._listen_once():
                    log.warning("event records: no trigger %s (migrations?): not kept", CHANNEL)
                    return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("event records: not listening (%s): read on every request", error)
            await asyncio.sleep(RELISTEN_SECONDS)

    async def _listen_once(self) -> bool:
        async with self.pool.acquire() as connection:
            ended = asyncio.Event()
            connection.add_termination_listener(lambda _connection: ended.set())
            if not await connection.fetchval(TRIGGER_EXISTS):
                return False
            await connection.add_listener(CHANNEL, self._announced)
            self._forget()  # what was read before listening may have changed unannounced
            self._listening = True
            try:
                await ended.wait()
            finally:
                self._listening = False
                self._forget()
                if not connection.is_closed():  # back to the pool, not listening
                    await connection.remove_listener(CHANNEL, self._announced)
        return True


@contextlib.asynccontextmanager
async def event_records(pool: asyncpg.Pool) -> AsyncIterator[EventRecords]:
    """An EventRecords over `pool`, listening until the context ends."""
    records = EventRecords(pool)
    task = asyncio.create_task(records.listen())
    try:
        yield records
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
