"""WatchQueue's fan-out: one Redis read per queue and tick, whatever the number of watchers.

A buyer's place is their ticket's index in the line less the line's "admitted" counter. Once the
queue has opened, indexes never change (nothing is inserted before an opened place), so each
process reads the counter of a watched queue once per tick and every watcher computes its own
place from it. Indexes are read once per watcher, and once more for watchers of the pre-queue when
the opening settles the shuffle (pipelined, in batches); the admission's expiry once, when it comes.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator

from lml.inventory.v1 import inventory_pb2 as pb
from redis.exceptions import RedisError

from inventory.cancellation import raise_if_cancelled
from inventory.errors import InventoryError
from inventory.queue import LineState, WaitingRoom

log = logging.getLogger(__name__)

SETTLE_MARGIN_MS = 1_000  # the service's clock may run ahead of Redis's, which decides the opening
SETTLE_BATCH = 1_000  # indexes re-read per round trip at the opening


class _Line:
    """The watchers of one queue in this process and the state they share."""

    def __init__(self, room: WaitingRoom, event_id: str, interval: float) -> None:
        self.room = room
        self.event_id = event_id
        self.interval = interval
        self.state: LineState | None = None
        self.ticked = asyncio.Event()
        self.indexes: dict[str, int] = {}  # ticket id -> index in the line
        self.watchers: Counter[str] = Counter()
        self.settled = False
        self.closed = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            raise_if_cancelled()
            try:
                state = await self.room.line_state(self.event_id)
                opened = (
                    state is not None and state.read_at_ms >= state.opens_at_ms + SETTLE_MARGIN_MS
                )
                if opened and not self.settled:
                    await self._settle()
                self.state = state
            except RedisError as error:
                log.warning("queue watch %s: redis unavailable: %s", self.event_id, error)
            self.wake()
            await asyncio.sleep(self.interval)

    async def _settle(self) -> None:
        tickets = list(self.indexes)
        for start in range(0, len(tickets), SETTLE_BATCH):
            batch = tickets[start : start + SETTLE_BATCH]
            for ticket_id, index in zip(
                batch, await self.room.indexes(self.event_id, batch), strict=True
            ):
                if index is not None:
                    self.indexes[ticket_id] = index
        self.settled = True

    def wake(self) -> None:
        ticked, self.ticked = self.ticked, asyncio.Event()
        ticked.set()


class QueueWatchHub:
    """Every WatchQueue stream of this process, grouped by queue."""

    def __init__(self, room: WaitingRoom, interval: float = 0.25) -> None:
        self.room = room
        self.interval = interval
        self._lines: dict[str, _Line] = {}

    async def watch(self, event_id: str, ticket_id: str) -> AsyncIterator[pb.QueueTicket]:
        """The ticket whenever its place or wait changes; ends after the admission."""
        buyer, index = await self.room.find_ticket(event_id, ticket_id)
        line = self._lines.get(event_id)
        if line is None:
            line = self._lines[event_id] = _Line(self.room, event_id, self.interval)
        line.watchers[ticket_id] += 1
        try:
            if line.settled:  # the index found may predate the opening
                index = (await self.room.find_ticket(event_id, ticket_id))[1]
            line.indexes[ticket_id] = index
            last: pb.QueueTicket | None = None
            while not line.closed:
                if line.state is None:
                    await line.ticked.wait()
                    continue
                state = line.state
                if state.state == "closed" and line.indexes[ticket_id] >= state.admitted:
                    raise InventoryError(pb.ERROR_REASON_QUEUE_CLOSED, "the waiting room closed")
                if line.indexes[ticket_id] < state.admitted:
                    expiry = await self.room.admission_expiry(event_id, buyer)
                    yield self.room.ticket(event_id, buyer, ticket_id, 0, state, expiry)
                    return
                ticket = self.room.ticket(
                    event_id, buyer, ticket_id, line.indexes[ticket_id], state, 0
                )
                if ticket != last:
                    yield ticket
                    last = ticket
                await line.ticked.wait()
        finally:
            self._leave(line, ticket_id)

    def _leave(self, line: _Line, ticket_id: str) -> None:
        line.watchers[ticket_id] -= 1
        if line.watchers[ticket_id] <= 0:
            del line.watchers[ticket_id]
            line.indexes.pop(ticket_id, None)
        if not line.watchers and self._lines.get(line.event_id) is line:
            del self._lines[line.event_id]
            line.task.cancel()

    async def close(self) -> None:
        """Ends every stream (before the server drains its calls)."""
        for line in list(self._lines.values()):
            line.closed = True
            line.task.cancel()
            line.wake()
        self._lines.clear()

    def watcher_count(self) -> int:
        return sum(sum(line.watchers.values()) for line in self._lines.values())
