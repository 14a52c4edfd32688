"""What the two consumer groups do with a batch: bookings into Postgres, transitions into the
audit log. Each batch is one transaction; when Postgres refuses it for its data (SQLSTATE class
22 or 23), the entries are applied one by one so that one bad entry holds back only itself. Any
other error is raised for the consumer to retry the whole batch in place."""

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg

from booking import metrics, store
from booking.consumer import EntryKey, Failure
from booking.records import (
    BadEntry,
    Entry,
    OutboxRecord,
    SeatChange,
    parse_change,
    parse_outbox,
)
from booking.retry import is_data_error

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


async def _apply_isolating(
    pool: asyncpg.Pool,
    items: Sequence[tuple[EntryKey, Item]],
    apply: Callable[[store.Conn, list[Item]], Awaitable[Result]],
    failures: dict[EntryKey, Failure],
) -> list[Result]:
    """Applies all items in one transaction, or, if Postgres refuses that for its data, each
    entry's items in a transaction of their own, recording the refused entries in `failures`."""
    if not items:
        return []
    try:
        async with pool.acquire() as conn, conn.transaction():
            return [await apply(conn, [item for _, item in items])]
    except asyncpg.PostgresError as error:
        if not is_data_error(error):
            raise
        log.warning("batch refused (%s), applying its entries one by one", error)
    results: list[Result] = []
    by_entry: dict[EntryKey, list[Item]] = {}
    for key, item in items:
        by_entry.setdefault(key, []).append(item)
    for key, entry_items in by_entry.items():
        try:
            async with pool.acquire() as conn, conn.transaction():
                results.append(await apply(conn, entry_items))
        except asyncpg.PostgresError as error:
            if not is_data_error(error):
                raise
            failures[key] = Failure(
                f"postgres refused it: {error} (SQLSTATE {error.sqlstate})", True
            )
    return results


class OutboxSink:
    """Bookings and cancellations into Postgres, idempotent on booking id."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def write(self, entries: Sequence[Entry]) -> dict[EntryKey, Failure]:
        failures: dict[EntryKey, Failure] = {}
        records: list[tuple[EntryKey, OutboxRecord]] = []
        for entry in entries:
            key = (entry.event_id, entry.entry_id)
            try:
                records.append((key, parse_outbox(entry)))
            except BadEntry as error:
                failures[key] = Failure(str(error), True)
        for result in await _apply_isolating(self.pool, records, store.apply_outbox, failures):
            self._report(result)
            for cancel in result.unknown_cancels:
                # Its booking's entry is still pending somewhere (or dead-lettered, waiting for
                # a replay): try again after it.
                failures[(cancel.event_id, cancel.entry_id)] = Failure(
                    "cancels a booking not synced yet", False
                )
        return failures

    @staticmethod
    def _report(result: store.OutboxResult) -> None:
        now_ms = time.time() * 1000
        for booking in result.inserted:
            metrics.SYNC_LAG.observe(max(now_ms - booking.confirmed_at_ms, 0) / 1000)
        metrics.BOOKINGS_SYNCED.inc(len(result.inserted))
        metrics.SEATS_SYNCED.inc(sum(len(b.seat_ids) for b in result.inserted))
        metrics.CANCELLATIONS_SYNCED.inc(result.cancelled)
        for booking_id, seat_id, existing in result.conflicts:
            log.error(
                "double booking: seat %s is booked by %s and again by %s; kept on %s, "
                "recorded in booking_conflicts",
                seat_id,
                existing,
                booking_id,
                existing,
            )
        metrics.CONFLICTS.inc(len(result.conflicts))


class AuditSink:
    """Every seat transition of the change log, appended to seat_audit."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def write(self, entries: Sequence[Entry]) -> dict[EntryKey, Failure]:
        failures: dict[EntryKey, Failure] = {}
        changes: list[tuple[EntryKey, SeatChange]] = []
        for entry in entries:
            key = (entry.event_id, entry.entry_id)
            try:
                changes += [(key, change) for change in parse_change(entry)]
            except BadEntry as error:
                failures[key] = Failure(str(error), True)
        for added in await _apply_isolating(self.pool, changes, store.insert_changes, failures):
            metrics.AUDIT_ROWS.inc(added)
        return failures
