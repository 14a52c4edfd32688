"""One event's live seat changes for every viewer of it in a gateway process: one upstream
watch, each change encoded to SSE bytes once, the same bytes for every viewer.

A batch of changes is one `Chunk` of a shared, bounded log; a viewer is a cursor into that log,
so a viewer costs no memory of its own however far behind it falls. A viewer that falls further
behind than `backlog_bytes` (or past the log's start) is given a fresh `snapshot` instead, which
the stream's contract allows at any time; nothing the feed does ever waits on a viewer.

Each batch reaches the viewers in one pass of the feed's own task: a viewer is one write of
everything since its last (`Writer`, which never waits), not a task to wake. A viewer whose
previous write is still waiting for its socket is skipped, and given what it missed once that
write is through. The passes are paced by their own cost: the next batch goes out
`1 / send_share` times the last pass's CPU time after it began (a few milliseconds for a few
viewers), and a pass gives the event loop back every `slice_seconds`, so that the upstream
watch and new viewers are served while it runs.

`mine`: the shared bytes carry no hold id. When buyers watch, the feed looks up the buyer of
each changed hold (one Redis round trip per batch, whatever the number of viewers) and encodes
a variant of that change for that buyer only; their stream gets it in place of the shared one.
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from lml.inventory.v1 import inventory_pb2 as pb
from redis.exceptions import RedisError

from clients.client import InventoryClient
from clients.errors import InventoryClientError
from clients.gateway.models import ChangeOut, snapshot_event_data
from clients.gateway.ownership import HoldOwners
from clients.gateway.seat_index import SeatIndex
from clients.watching import RECONNECT_DELAYS, Snapshot, Update, follow

log = logging.getLogger(__name__)

KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: keeps proxies from closing a quiet stream


@dataclass(frozen=True)
class FanoutSettings:
    linger_seconds: float = 5.0  # an event's watch outlives its last viewer by this much
    history_changes: int = 5_000  # changes kept for Last-Event-ID resume
    history_bytes: int = 4 * 1024 * 1024  # and at most this many bytes of them
    backlog_bytes: int = 256 * 1024  # a viewer this far behind gets a snapshot instead
    # A write to a viewer costs the same whatever it carries, so many viewers get fewer, larger
    # writes: the passes over the viewers take at most this share of a core (at least
    # `min_flush_seconds` between passes, at most `max_flush_seconds`, whatever they cost).
    send_share: float = 0.5
    min_flush_seconds: float = 0.02
    max_flush_seconds: float = 1.0
    # A pass lets other work run this often: the upstream watch takes a turn of the event loop
    # per message, and must keep up with the changes while passes run back to back.
    slice_seconds: float = 0.002
    keepalive_seconds: float = 15.0


DEFAULT_FANOUT = FanoutSettings()


def sse(event: str, event_id: int, data: str) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()


def snapshot_event(
    event_id: str,
    version: int,
    seats: dict[str, "pb.SeatStatus.ValueType"],
    seat_index: SeatIndex | None = None,
) -> bytes:
    """A `snapshot` event: compact (statuses in seat-index order) when the event has a layout."""
    return sse(
        "snapshot", version, snapshot_event_data(event_id, Snapshot(version, seats), seat_index)
    )


def change_event(change: pb.SeatChange, mine: bool = False) -> bytes:
    return sse(
        "change", change.version, ChangeOut.of(change, mine=mine).model_dump_json(exclude_none=True)
    )


@dataclass
class Piece:
    """One change: its shared bytes and, when a watching buyer holds its hold, their variant."""

    version: int
    data: bytes
    owner: str | None = None
    mine: bytes = b""

    def bytes_for(self, holder: str | None) -> bytes:
        return self.mine if holder is not None and holder == self.owner else self.data


@dataclass
class Chunk:
    """A batch of consecutive changes, as published to every viewer at once."""

    pieces: list[Piece]
    end: int  # byte offset after this chunk in the feed's stream of shared bytes
    data: bytes = b""
    owners: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.data = b"".join(piece.data for piece in self.pieces)
        self.owners = frozenset(p.owner for p in self.pieces if p.owner is not None)

    @property
    def first_version(self) -> int:
        return self.pieces[0].version

    @property
    def last_version(self) -> int:
        return self.pieces[-1].version

    def bytes_for(self, holder: str | None, after: int) -> bytes:
        """The chunk's changes after version `after`, as `holder`'s stream shows them."""
        if after < self.first_version and (holder is None or holder not in self.owners):
            return self.data
        return b"".join(p.bytes_for(holder) for p in self.pieces if p.version > after)


@dataclass(frozen=True)
class _Restart:
    """A fresh snapshot; the log after it holds every change after `base`."""

    snapshot: Snapshot
    base: int


class Writer(Protocol):
    """Where a viewer's bytes go: `write` never waits, and says False when the stream is gone;
    `busy` while an earlier write still waits for the client (it is given nothing then)."""

    @property
    def busy(self) -> bool: ...

    def write(self, data: bytes) -> bool: ...


@dataclass(eq=False)
class Viewer:
    """One SSE stream: where it is in its feed's log."""

    holder: str | None
    writer: Writer
    resume_after: int | None = None  # its Last-Event-ID, until the feed can place it
    epoch: int = -1  # the feed's epoch it follows; another epoch means "snapshot first"
    index: int = 0  # absolute index of the next chunk to send
    offset: int = 0  # byte offset of that chunk's start
    version: int = -1  # the last version sent


@dataclass
class _Log:
    """The shared, bounded log of published chunks, indexed absolutely."""

    chunks: deque[Chunk] = field(default_factory=deque)
    first: int = 0  # absolute index of chunks[0]
    end: int = 0  # byte offset after the last chunk
    changes: int = 0
    base: int = -1  # every change after this version is in the log

    @property
    def next(self) -> int:
        return self.first + len(self.chunks)

    @property
    def size(self) -> int:
        return self.end - (self.chunks[0].end - len(self.chunks[0].data)) if self.chunks else 0

    def append(self, pieces: list[Piece]) -> Chunk:
        chunk = Chunk(pieces, self.end + sum(len(piece.data) for piece in pieces))
        self.chunks.append(chunk)
        self.end, self.changes = chunk.end, self.changes + len(pieces)
        return chunk

    def trim(self, max_changes: int, max_bytes: int) -> None:
        while self.chunks and (self.changes > max_changes or self.size > max_bytes):
            dropped = self.chunks.popleft()
            self.first += 1
            self.changes -= len(dropped.pieces)
            self.base = dropped.last_version

    def reset(self, version: int) -> None:
        self.first, self.base = self.next, version
        self.chunks.clear()
        self.changes = 0

    def since(self, index: int) -> Iterator[Chunk]:
        for position in range(index - self.first, len(self.chunks)):
            yield self.chunks[position]

    def index_after(self, version: int) -> int:
        """The absolute index of the first chunk with a change after `version`."""
        index = self.next
        for chunk in reversed(self.chunks):
            if chunk.last_version <= version:
                break
            index -= 1
        return index


class EventFeed:
    """One event's upstream watch and its viewers in this process."""

    def __init__(
        self,
        client: InventoryClient,
        owners: HoldOwners,
        event_id: str,
        settings: FanoutSettings,
        seat_index: SeatIndex | None = None,
    ) -> None:
        self.client, self.owners, self.event_id, self.settings = client, owners, event_id, settings
        self.seat_index = seat_index  # the event's layout's: snapshots are compact with one
        self.viewers: set[Viewer] = set()
        self.holders: Counter[str] = Counter()  # buyers among the viewers
        self.log = _Log()
        self.epoch = 0
        self.seats: dict[str, pb.SeatStatus.ValueType] = {}
        self.version = -1  # of `seats`, as published
        self.ready = asyncio.Event()  # the first snapshot is in
        self._snapshot: tuple[int, int, bytes] | None = None  # (epoch, version, bytes)
        self._pending: list[pb.SeatChange | _Restart] = []
        self._news = asyncio.Event()
        self._received = -1  # the last version the upstream watch gave
        self._owner_of: dict[str, str] = {}  # hold id -> buyer, of holds seen
        self._tasks: list[asyncio.Task[None]] = []

    # -- viewers ----------------------------------------------------------------------------------

    def join(self, viewer: Viewer) -> None:
        """Adds the viewer and, once the feed has its first snapshot, sends it its start: the
        changes after its `resume_after` when the log reaches back to it, else a snapshot."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._watch(viewer.resume_after)),
                asyncio.create_task(self._publish_loop()),
            ]
        self.viewers.add(viewer)
        if viewer.holder is not None:
            self.holders[viewer.holder] += 1
        self.send_to(viewer)

    def leave(self, viewer: Viewer) -> None:
        if viewer not in self.viewers:
            return
        self.viewers.remove(viewer)
        if viewer.holder is not None:
            self.holders[viewer.holder] -= 1
            if self.holders[viewer.holder] <= 0:
                del self.holders[viewer.holder]

    def send_to(self, viewer: Viewer, keepalive: bool = False) -> None:
        """Writes what the viewer has not had yet (a keep-alive when that is nothing and
        `keepalive`), unless its last write is still under way."""
        if viewer.writer.busy or viewer not in self.viewers:
            return
        if viewer.resume_after is not None and self.ready.is_set():
            self.resume(viewer, viewer.resume_after)
            viewer.resume_after = None
        data = self.take(viewer) or (KEEPALIVE if keepalive else b"")
        if data and not viewer.writer.write(data):
            self.leave(viewer)

    def resume(self, viewer: Viewer, after: int) -> bool:
        """Places the viewer just after version `after`, when the log reaches back to it."""
        if not (self.ready.is_set() and self.log.base <= after <= self.version):
            return False
        viewer.epoch, viewer.version = self.epoch, after
        viewer.index = self.log.index_after(after)
        chunks = list(self.log.since(viewer.index))
        viewer.offset = chunks[0].end - len(chunks[0].data) if chunks else self.log.end
        return True

    def take(self, viewer: Viewer) -> bytes | None:
        """What the viewer has not been sent yet: the changes since its last, or a snapshot
        when it follows another epoch or has fallen too far behind; None when up to date."""
        if not self.ready.is_set():
            return None
        log = self.log
        if (
            viewer.epoch != self.epoch
            or viewer.index < log.first
            or log.end - viewer.offset > self.settings.backlog_bytes
        ):
            viewer.epoch, viewer.index, viewer.offset = self.epoch, log.next, log.end
            viewer.version = self.version
            return self.snapshot()
        if viewer.index == log.next:
            return None
        parts = [
            chunk.bytes_for(viewer.holder, viewer.version) for chunk in log.since(viewer.index)
        ]
        viewer.index, viewer.offset = log.next, log.end
        viewer.version = max(viewer.version, log.chunks[-1].last_version)
        return b"".join(parts)

    def snapshot(self) -> bytes:
        """The published seats as a `snapshot` event, encoded once per version."""
        if self._snapshot is None or self._snapshot[:2] != (self.epoch, self.version):
            data = snapshot_event(self.event_id, self.version, self.seats, self.seat_index)
            self._snapshot = (self.epoch, self.version, data)
        return self._snapshot[2]

    # -- the upstream watch -----------------------------------------------------------------------

    async def _watch(self, from_version: int | None) -> None:
        """Reads the service's changes into `_pending`; reconnects for as long as it runs."""
        failures = 0
        while True:
            try:
                if self._received < 0:
                    start = await self.client.availability(self.event_id)
                    seats = {seat.seat_id: seat.status for seat in start.seats}
                    # A first viewer resuming: the log starts at its version, so that it (and
                    # any viewer of that version or later) resumes rather than re-snapshots.
                    base = start.version
                    if from_version is not None and from_version < start.version:
                        base = from_version
                    self._take_update(_Restart(Snapshot(start.version, seats), base))
                async with contextlib.aclosing(
                    follow(self.client, self.event_id, self._received)
                ) as updates:
                    async for update in updates:
                        failures = 0
                        self._take_update(update)
            except InventoryClientError as error:
                log.warning("watch of %s: %s", self.event_id, error)
            except Exception:  # never leave viewers on a watch that is gone
                log.exception("watch of %s failed", self.event_id)
            await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])
            failures += 1

    def _take_update(self, update: "Update | _Restart") -> None:
        if isinstance(update, Snapshot):
            update = _Restart(update, update.version)
        self._pending.append(update)
        self._received = update.base if isinstance(update, _Restart) else update.version
        self._news.set()

    async def _publish_loop(self) -> None:
        """Publishes what the watch read, then passes over the viewers; the next batch waits
        until the pass's cost allows (FanoutSettings.send_share)."""
        settings = self.settings
        while True:
            try:
                await asyncio.wait_for(self._news.wait(), settings.keepalive_seconds)
            except TimeoutError:
                await self._pass(keepalive=True)
                continue
            self._news.clear()
            updates, self._pending = self._pending, []
            await self._publish(updates)
            started = time.monotonic()
            sending = await self._pass()
            interval = min(
                settings.max_flush_seconds,
                max(settings.min_flush_seconds, sending / settings.send_share),
            )
            await asyncio.sleep(started + interval - time.monotonic())

    async def _pass(self, keepalive: bool = False) -> float:
        """Sends every viewer what it has not had yet, in slices with other work in between;
        the CPU seconds the slices took (wall time would count the time other processes had the
        CPU as the pass's own cost, and slow the batches down on a busy machine)."""
        slice_seconds = self.settings.slice_seconds
        spent, began, slice_end = 0.0, time.thread_time(), time.monotonic() + slice_seconds
        for viewer in list(self.viewers):
            self.send_to(viewer, keepalive)
            if time.monotonic() >= slice_end:
                spent += time.thread_time() - began
                await asyncio.sleep(0)
                began, slice_end = time.thread_time(), time.monotonic() + slice_seconds
        return spent + time.thread_time() - began

    async def _publish(self, updates: "list[pb.SeatChange | _Restart]") -> None:
        changes: list[pb.SeatChange] = []
        for update in updates:
            if isinstance(update, _Restart):
                await self._publish_changes(changes)
                changes = []
                self._reset(update)
            else:
                changes.append(update)
        await self._publish_changes(changes)

    def _reset(self, restart: "_Restart") -> None:
        self.epoch += 1
        self.seats, self.version = dict(restart.snapshot.seats), restart.snapshot.version
        self.log.reset(restart.base)
        self.ready.set()

    async def _publish_changes(self, changes: list[pb.SeatChange]) -> None:
        if not changes:
            return
        owners = await self._owners(changes)
        pieces = []
        for change in changes:
            owner = owners.get(change.hold_id)
            mine = change_event(change, mine=True) if owner is not None else b""
            pieces.append(Piece(change.version, change_event(change), owner, mine))
            if change.version > self.version:
                self.seats.update(dict.fromkeys(change.seat_ids, change.status))
                self.version = change.version
        self.log.append(pieces)
        self.log.trim(self.settings.history_changes, self.settings.history_bytes)

    async def _owners(self, changes: list[pb.SeatChange]) -> dict[str, str]:
        """The watching buyers of the changes' holds (hold id -> buyer)."""
        if not self.holders:
            return {}
        unknown = list(
            {c.hold_id for c in changes if c.hold_id and c.hold_id not in self._owner_of}
        )
        if unknown:
            try:
                found = await self.owners.owners_of(unknown)
            except RedisError as error:  # the changes go out unflagged rather than late
                log.warning("hold owners of %s: %s", self.event_id, error)
                found = [None] * len(unknown)
            if len(self._owner_of) > 100_000:  # bounded: a feed open for days forgets old holds
                self._owner_of.clear()
            self._owner_of.update({h: o for h, o in zip(unknown, found, strict=True) if o})
        return {
            c.hold_id: self._owner_of[c.hold_id]
            for c in changes
            if self._owner_of.get(c.hold_id) in self.holders
        }

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
