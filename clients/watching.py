"""Follows an event's seats: a snapshot, then every change after it, re-snapshotting when needed."""

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from lml.inventory.v1 import inventory_pb2 as pb

from clients.errors import ChangesOutOfRange, Transient, WatcherTooSlow

RECONNECT_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0)  # seconds; the last repeats


@dataclass(frozen=True)
class Snapshot:
    """Every seat's status at `version`: replaces whatever the watcher knew before."""

    version: int
    seats: dict[str, "pb.SeatStatus.ValueType"]


Update = Snapshot | pb.SeatChange


class _Source(Protocol):
    async def availability(self, event_id: str) -> pb.GetAvailabilityResponse: ...

    def watch_changes(
        self, event_id: str, from_version: int
    ) -> AsyncGenerator[pb.WatchEventResponse, None]: ...


async def follow(
    source: _Source, event_id: str, from_version: int | None = None
) -> AsyncGenerator[Update, None]:
    """A Snapshot (unless resuming from `from_version`), then each change in version order.

    Never ends by itself: a lost connection resumes after the last version seen, and a change
    log that no longer reaches back that far yields a fresh Snapshot.
    """
    version = from_version
    failures = 0
    while True:
        if version is None:
            snapshot = await source.availability(event_id)
            version = snapshot.version
            yield Snapshot(version, {seat.seat_id: seat.status for seat in snapshot.seats})
        try:
            # aclosing: a consumer that stops watching ends the stream call now, not at GC.
            async with contextlib.aclosing(source.watch_changes(event_id, version)) as responses:
                async for response in responses:
                    failures = 0
                    for change in response.changes:
                        version = change.version
                        yield change
        except ChangesOutOfRange:
            version = None
            continue
        except (Transient, WatcherTooSlow):
            pass
        await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])
        failures += 1
