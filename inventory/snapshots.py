"""Availability snapshots that never hold Redis for a whole event, cached per event so that many
readers of one version cost Redis about one read.

A fresh snapshot reads the seats in bounded chunks (availability_chunk.lua), each as of the
change-log version current when it ran. availability_version.lua then ends the holds already due
and gives the version V the snapshot is served at, and the change-log entries up to V bring
every seat from the version it was read at to V: a seat changed after its chunk takes its last
change, any other keeps what its chunk read. A cached snapshot at version c is brought to V the
same way, all of its seats read at c. When the log no longer reaches back (trimmed, or a
restore's version jump), the snapshot is read afresh.

Requests for an event that arrive while a refresh of it runs wait for the next refresh, which
starts when that one ends and serves all of them: a thousand concurrent readers cost two
refreshes, and no reader is served a version older than the moment it asked.
"""

import asyncio
import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from inventory import event_shape, keys, script_calls, validation
from inventory.errors import InventoryError
from inventory.scripts import ScriptRunner

CACHED_EVENTS = 64  # events whose last snapshot a process keeps
LOG_READ = 500  # change-log entries per XRANGE
FRESH_ATTEMPTS = 3  # fresh reads tried before giving up on a log that moves faster than a read

Status: TypeAlias = pb.SeatStatus.ValueType
_STATUSES = {
    "AVAILABLE": pb.SEAT_STATUS_AVAILABLE,
    "HELD": pb.SEAT_STATUS_HELD,
    "BOOKED": pb.SEAT_STATUS_BOOKED,
}


class _LogGap(Exception):
    """The change log does not hold every version of a range: trimmed, or a restore's jump."""


@dataclass(frozen=True)
class _Snapshot:
    created_at_ms: int
    version: int
    states: dict[str, Status]  # seat id -> status, in the order first read
    response: pb.GetAvailabilityResponse
    # Fixed for the event: where each seat sits in `response.seats`, and the area of each
    # general-admission place, so that a change updates both without a pass over every seat.
    positions: dict[str, int]
    place_areas: dict[str, int]  # place id -> index in `response.areas`
    taken: dict[str, Status]  # the held and booked seats: the unavailable_only response
    # That response, made on first request for this version.
    compact: dict[str, pb.GetAvailabilityResponse] = field(default_factory=dict)

    def response_for(self, unavailable_only: bool) -> pb.GetAvailabilityResponse:
        if not unavailable_only:
            return self.response
        if not self.compact:
            compact = pb.GetAvailabilityResponse(
                version=self.version, available_count=self.response.available_count
            )
            compact.areas.extend(self.response.areas)
            for seat in sorted(self.taken, key=self.positions.__getitem__):
                compact.seats.add(seat_id=seat, status=self.taken[seat])
            self.compact["unavailable_only"] = compact
        return self.compact["unavailable_only"]

    def advanced(self, version: int, changes: list[tuple[int, Status, list[str]]]) -> "_Snapshot":
        """This snapshot with `changes` applied, at `version`; the response copied in C, then
        only the changed seats and areas set."""
        response = pb.GetAvailabilityResponse()
        response.CopyFrom(self.response)
        response.version = version
        states, taken = dict(self.states), dict(self.taken)
        for _version, status, seats in changes:
            for seat in seats:
                before, states[seat] = states.get(seat), status
                response.seats[self.positions[seat]].status = status
                freed = int(status == pb.SEAT_STATUS_AVAILABLE) - int(
                    before == pb.SEAT_STATUS_AVAILABLE
                )
                response.available_count += freed
                area = self.place_areas.get(seat)
                if area is not None:
                    response.areas[area].available += freed
                if status == pb.SEAT_STATUS_AVAILABLE:
                    taken.pop(seat, None)
                else:
                    taken[seat] = status
        return replace(
            self, version=version, states=states, response=response, taken=taken, compact={}
        )


@dataclass
class _Entry:
    snapshot: _Snapshot | None = None
    waiting: "asyncio.Future[_Snapshot] | None" = None  # the next refresh's
    task: "asyncio.Task[None] | None" = None  # the refresh loop, while it runs


class SnapshotCache:
    """GetAvailability of one service process: the last snapshot of each recent event."""

    def __init__(self, redis: Redis, runner: ScriptRunner) -> None:
        self.redis = redis
        self.runner = runner
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    async def availability(
        self, event_id: str, unavailable_only: bool = False
    ) -> pb.GetAvailabilityResponse:
        """The event's snapshot at a version no older than the call (with `unavailable_only`,
        its held and booked seats only). The message is shared between callers: read it, never
        change it."""
        validation.check_event_id(event_id)
        entry = self._entry(event_id)
        if entry.waiting is None:
            entry.waiting = asyncio.get_running_loop().create_future()
            # Readers that go away leave the result unread; that is no error.
            entry.waiting.add_done_callback(lambda done: done.cancelled() or done.exception())
        waiting = entry.waiting
        if entry.task is None:
            entry.task = asyncio.create_task(self._refresh_loop(event_id, entry))
        return (await asyncio.shield(waiting)).response_for(unavailable_only)

    def _entry(self, event_id: str) -> _Entry:
        entry = self._entries.get(event_id)
        if entry is None:
            entry = self._entries[event_id] = _Entry()
            idle = [name for name, old in self._entries.items() if old.task is None]
            for name in idle[: max(0, len(self._entries) - CACHED_EVENTS)]:
                del self._entries[name]
        self._entries.move_to_end(event_id)
        return entry

    async def _refresh_loop(self, event_id: str, entry: _Entry) -> None:
        try:
            while entry.waiting is not None:
                waiting, entry.waiting = entry.waiting, None
                try:
                    entry.snapshot = await self._refresh(event_id, entry.snapshot)
                except Exception as error:  # every waiter gets it, as its own call would
                    entry.snapshot = None
                    waiting.set_exception(error)
                else:
                    waiting.set_result(entry.snapshot)
        finally:
            entry.task = None

    async def _refresh(self, event_id: str, cached: _Snapshot | None) -> _Snapshot:
        settled = await self._settle(event_id)
        if (
            cached is None
            or cached.created_at_ms != settled.created_at_ms
            or cached.version > settled.version
        ):
            return await self._fresh(event_id)
        if cached.version == settled.version:
            return cached
        try:
            changes = [change async for change in self._changes(event_id, cached.version, settled)]
        except _LogGap:
            return await self._fresh(event_id)
        return cached.advanced(settled.version, changes)

    async def _settle(self, event_id: str) -> script_calls.Version:
        """The event's version once no hold is due any more (each call ends a bounded batch)."""
        while True:
            version = script_calls.availability_version_result(
                await self.runner.run(script_calls.availability_version_call(event_id))
            )
            if not version.more_due:
                return version

    async def _fresh(self, event_id: str) -> _Snapshot:
        for _attempt in range(FRESH_ATTEMPTS):
            states: dict[str, Status] = {}
            read_at: dict[str, int] = {}
            first, cursor = -1, "0"
            while True:
                chunk = script_calls.availability_chunk_result(
                    await self.runner.run(script_calls.availability_chunk_call(event_id, cursor))
                )
                first = chunk.version if first < 0 else first
                for seat, status in chunk.states:
                    states[seat] = status
                    read_at[seat] = chunk.version
                cursor = chunk.cursor
                if cursor == "0":
                    break
            settled = await self._settle(event_id)
            try:
                async for version, status, seats in self._changes(event_id, first, settled):
                    for seat in seats:
                        if version > read_at.get(seat, -1):
                            states[seat] = status
            except _LogGap:
                continue
            return _snapshot(settled, states)
        raise InventoryError(
            pb.ERROR_REASON_CHANGES_TRIMMED,
            f"the change log of {event_id} moved faster than a snapshot could be read: retry",
        )

    async def _changes(
        self, event_id: str, after: int, settled: script_calls.Version
    ) -> AsyncIterator[tuple[int, Status, list[str]]]:
        """(version, status, seat ids) of each change after `after` up to the settled version,
        in order; _LogGap when one is missing."""
        key = keys.event_keys(event_id).changes
        start = after + 1
        while start <= settled.version:
            entries: Any = await self.redis.xrange(
                key, f"0-{start}", f"0-{settled.version}", count=LOG_READ
            )
            for entry_id, fields in entries:
                if int(entry_id.partition("-")[2]) != start:
                    raise _LogGap
                # cjson encodes an empty Lua table as {}, hence `or []`.
                yield start, _STATUSES[fields["status"]], json.loads(fields["seat_ids"]) or []
                start += 1
            if not entries:
                raise _LogGap


def _snapshot(settled: script_calls.Version, states: dict[str, Status]) -> _Snapshot:
    response = pb.GetAvailabilityResponse(version=settled.version)
    response.seats.extend(
        pb.SeatAvailability(seat_id=seat, status=status) for seat, status in states.items()
    )
    place_areas: dict[str, int] = {}
    for index, (area_id, capacity) in enumerate(settled.areas):
        places = [event_shape.place_id(area_id, number) for number in range(1, capacity + 1)]
        place_areas.update(dict.fromkeys(places, index))
        available = sum(1 for place in places if states.get(place) == pb.SEAT_STATUS_AVAILABLE)
        response.areas.add(area_id=area_id, capacity=capacity, available=available)
    positions = {seat: position for position, seat in enumerate(states)}
    taken = {seat: status for seat, status in states.items() if status != pb.SEAT_STATUS_AVAILABLE}
    response.available_count = len(states) - len(taken)
    return _Snapshot(
        settled.created_at_ms, settled.version, states, response, positions, place_areas, taken
    )
