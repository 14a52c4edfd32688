"""The booking worker: finds events, keeps their definitions in Postgres, and runs two consumer
groups on each event's streams: the outbox (bookings) and the change log (audit trail)."""

import asyncio
import logging
import time
from dataclasses import dataclass

import asyncpg
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from booking import metrics, store
from booking.consumer import ConsumerSettings, StreamConsumer
from booking.retry import is_transient, retrying
from booking.sinks import AuditSink, OutboxSink
from booking.upkeep import DEFAULT_CHANGELOG_RETENTION, ChangelogUpkeep, OutboxUpkeep
from inventory import keys
from inventory.engine import Inventory
from inventory.errors import InventoryError

log = logging.getLogger(__name__)

OUTBOX_GROUP = "booking-sync"
AUDIT_GROUP = "seat-audit"
# Backoff between attempts at an event that failed for its own reasons (its data).
EVENT_RETRY_FIRST_S = 1.0
EVENT_RETRY_MAX_S = 300.0


@dataclass
class _EventFailure:
    attempts: int
    retry_at: float


@dataclass(frozen=True)
class WorkerSettings:
    consumer: str
    batch_size: int = 1000
    block_ms: int = 100
    claim_idle_ms: int = 30_000
    max_deliveries: int = 5
    discovery_interval_s: float = 1.0
    trim_interval_s: float = 5.0
    changelog_retention: int = DEFAULT_CHANGELOG_RETENTION
    # Which groups this process consumes: an audit backlog (say, after an outage) competes with
    # bookings for the process's CPU, so the two can run in separate processes.
    groups: tuple[str, ...] = (OUTBOX_GROUP, AUDIT_GROUP)


class Worker:
    def __init__(self, redis: Redis, pool: asyncpg.Pool, settings: WorkerSettings) -> None:
        self.redis = redis
        self.pool = pool
        self.settings = settings
        self.inventory = Inventory(redis)
        self.outbox = StreamConsumer(
            redis,
            pool,
            OutboxSink(pool),
            OutboxUpkeep(redis),
            lambda event_id: keys.event_keys(event_id).outbox,
            self._consumer_settings(OUTBOX_GROUP),
        )
        self.audit = StreamConsumer(
            redis,
            pool,
            AuditSink(pool),
            ChangelogUpkeep(redis, settings.changelog_retention),
            lambda event_id: keys.event_keys(event_id).changes,
            self._consumer_settings(AUDIT_GROUP),
        )
        self.saved: set[str] = set()  # events whose definition is in Postgres
        self.failing: dict[str, _EventFailure] = {}  # events whose definition was refused

    def _consumer_settings(self, group: str) -> ConsumerSettings:
        s = self.settings
        return ConsumerSettings(
            group=group,
            consumer=s.consumer,
            batch_size=s.batch_size,
            block_ms=s.block_ms,
            claim_idle_ms=s.claim_idle_ms,
            max_deliveries=s.max_deliveries,
            upkeep_interval_s=s.trim_interval_s,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until `stop` is set; then finishes the batch in hand and returns."""
        await self._discover_retrying(stop)
        await asyncio.gather(self._discovery(stop), *(c.run(stop) for c in self._consumers()))

    def _consumers(self) -> list[StreamConsumer]:
        return [c for c in (self.outbox, self.audit) if c.settings.group in self.settings.groups]

    async def _discovery(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.settings.discovery_interval_s)
            except TimeoutError:
                await self._discover_retrying(stop)

    async def _discover_retrying(self, stop: asyncio.Event) -> None:
        try:
            async for attempt in retrying(stop, "event discovery"):
                with attempt:
                    await self.discover()
        except Exception as error:
            if not (stop.is_set() and is_transient(error)):
                raise

    async def discover(self) -> None:
        """Saves the definition of events not seen before and joins their streams.

        An event whose definition Postgres refuses (bad data) is logged, counted and retried
        with backoff, and its streams are joined all the same: its bookings still sync, and the
        other events are not held back. Transient errors (Postgres down) are raised, to retry
        the whole round.
        """
        async for event_id in self.redis.sscan_iter(keys.EVENTS):
            if event_id not in self.saved and self._due(event_id):
                try:
                    await self._save_definition(event_id)
                except Exception as error:
                    if is_transient(error):
                        raise
                    self._failed(event_id, error)
            for consumer in self._consumers():
                stream = consumer.stream_of(event_id)
                if stream not in consumer.streams and await consumer.watch(event_id):
                    log.info("%s: watching event %s", consumer.settings.group, event_id)

    def _due(self, event_id: str) -> bool:
        failure = self.failing.get(event_id)
        return failure is None or time.monotonic() >= failure.retry_at

    def _failed(self, event_id: str, error: Exception) -> None:
        failure = self.failing.setdefault(event_id, _EventFailure(0, 0.0))
        failure.attempts += 1
        delay = min(EVENT_RETRY_FIRST_S * 2 ** (failure.attempts - 1), EVENT_RETRY_MAX_S)
        failure.retry_at = time.monotonic() + delay
        metrics.EVENT_FAILURES.inc()
        log.error(
            "event %s: definition not saved (attempt %d, next in %.0f s), its bookings sync "
            "all the same: %r",
            event_id,
            failure.attempts,
            delay,
            error,
        )

    async def _save_definition(self, event_id: str) -> None:
        async with self.pool.acquire() as conn:
            if not await store.has_event(conn, event_id):
                try:
                    described = await self.inventory.get_event(
                        pb.GetEventRequest(event_id=event_id, include_seats=True)
                    )
                except InventoryError as error:
                    log.warning("event %s has no definition in Redis yet: %s", event_id, error)
                    return
                await store.save_event(conn, described)
        self.saved.add(event_id)
        if self.failing.pop(event_id, None) is not None:
            log.info("event %s: definition saved after earlier failures", event_id)
