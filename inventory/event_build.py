"""Creating, or rebuilding from Postgres, an event's inventory in bounded chunks.

A single script writing a 100,000-seat event holds Redis, and so every hold of every event on
it, for as long as it runs. Here each script call does a bounded share (ENTRY_CHUNK seats or
places, rows of about ROW_CHUNK_SEATS seats, whole bookings of about RESTORE_CHUNK_SEATS seats),
so that an event can be created during a sale on the same Redis; the event stays invisible until
the last call, which makes all of it visible in one O(1) step (lua/includes/building.lua). A
create whose caller died is taken up by a retry with the same input, or expires.
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from lml.inventory.v1 import inventory_pb2 as pb

from inventory import build_calls
from inventory.build_calls import Build, Progress, Restored
from inventory.errors import InventoryError
from inventory.scripts import ScriptRunner

ENTRY_CHUNK = 1_000  # seats or places per build_seats call
ROW_CHUNK_SEATS = 500  # rows per build_rows call: as many as hold about this many seats
RESTORE_CHUNK_SEATS = 100  # whole bookings per restore_event call, about this many seats
# Builds started again when one vanished under its caller (it expired, or a concurrent identical
# create finished it: the next attempt finds the event built).
ATTEMPTS = 3

_NOTHING_RESTORED = Restored(0, 0, 0, [])


@dataclass(frozen=True)
class Restore:
    """What a rebuild books again: seats Postgres holds booked, by booking."""

    version_floor: int  # the highest change-log version Postgres saw
    bookings: Mapping[str, Sequence[str]]  # booking id -> its seat ids


@dataclass(frozen=True)
class Outcome:
    created: bool  # False: the event existed with identical input
    restored: Restored


async def build_event(
    runner: ScriptRunner, build: Build, restore: Restore | None = None
) -> Outcome:
    """Builds the event, or finds it built; with `restore`, books its seats again: into the build
    before it is visible, or into the event when it existed."""
    attempt = 1
    while True:
        try:
            return await _attempt(runner, build, restore)
        except InventoryError as error:
            if error.error_reason != pb.ERROR_REASON_EVENT_NOT_FOUND or attempt == ATTEMPTS:
                raise
            attempt += 1


async def _attempt(runner: ScriptRunner, build: Build, restore: Restore | None) -> Outcome:
    progress = build_calls.create_event_progress(
        await runner.run(build_calls.create_event_call(build))
    )
    if progress is None:
        return Outcome(False, await _restore(runner, build, restore, building=False))
    await _fill_seats(runner, build, progress)
    restored = await _restore(runner, build, restore, building=True)
    await _fill_rows(runner, build, progress)
    build_calls.build_commit_done(await runner.run(build_calls.build_commit_call(build)))
    return Outcome(True, restored)


async def _fill_seats(runner: ScriptRunner, build: Build, progress: Progress) -> None:
    total = len(build.shape.entries)
    for first in range(progress.entries + 1, total + 1, ENTRY_CHUNK):
        last = min(first + ENTRY_CHUNK - 1, total)
        call = build_calls.build_seats_call(build, first, last)
        build_calls.build_seats_done(await runner.run(call))


async def _fill_rows(runner: ScriptRunner, build: Build, progress: Progress) -> None:
    for first, last in row_chunks(build.shape.row_lengths, progress.rows + 1):
        call = build_calls.build_rows_call(build, first, last)
        build_calls.build_rows_done(await runner.run(call))


def row_chunks(lengths: Sequence[int], first: int = 1) -> Iterator[tuple[int, int]]:
    """Runs of consecutive rows (numbered from 1), from row `first` on, each holding about
    ROW_CHUNK_SEATS seats: a row is never split."""
    start, seats = first, 0
    for row in range(first, len(lengths) + 1):
        seats += lengths[row - 1]
        if seats >= ROW_CHUNK_SEATS:
            yield start, row
            start, seats = row + 1, 0
    if start <= len(lengths):
        yield start, len(lengths)


async def _restore(
    runner: ScriptRunner, build: Build, restore: Restore | None, building: bool
) -> Restored:
    if restore is None:
        return _NOTHING_RESTORED
    total = _NOTHING_RESTORED
    for bookings in booking_chunks(restore.bookings):
        call = build_calls.restore_event_call(build, building, restore.version_floor, bookings)
        total += build_calls.restore_event_result(await runner.run(call))
    return total


def booking_chunks(
    bookings: Mapping[str, Sequence[str]],
) -> Iterator[dict[str, Sequence[str]]]:
    """Whole bookings in groups of about RESTORE_CHUNK_SEATS seats; one group at least, empty
    when there are none (the first call also raises the event's version)."""
    chunk: dict[str, Sequence[str]] = {}
    seats = 0
    for booking_id, seat_ids in bookings.items():
        chunk[booking_id] = seat_ids
        seats += len(seat_ids)
        if seats >= RESTORE_CHUNK_SEATS:
            yield chunk
            chunk, seats = {}, 0
    if chunk or not bookings:
        yield chunk
