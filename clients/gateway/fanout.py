"""Live seat maps for many viewers: every event feed of a gateway process (clients/gateway/
feed.py), started with an event's first viewer and stopped a while after its last one left, and
each viewer's SSE response (clients/gateway/live_stream.py), which its feed writes to. Stream
leases are renewed and ended in batches, so that thousands of streams cost Redis a few round
trips rather than one each."""

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import Receive, Send

from clients.client import InventoryClient
from clients.gateway.feed import EventFeed, FanoutSettings, Viewer
from clients.gateway.live_stream import BodyWriter, LiveStream, until_disconnected
from clients.gateway.ownership import HoldOwners
from clients.gateway.quotas import Lease, StreamLeases
from clients.gateway.seat_index import SeatIndex

# Looks up the event's seat index (None without a layout): only when its feed starts.
SeatIndexLookup = Callable[[], Awaitable[SeatIndex | None]]


@dataclass(frozen=True)
class StreamRequest:
    """One viewer's stream: the event, the version to resume after (None: a snapshot first), the
    caller's stream lease, the holder whose holds the stream names (None: anonymous), and where
    the event's seat index comes from."""

    event_id: str
    from_version: int | None
    lease: Lease
    holder: str | None
    seat_index: SeatIndexLookup


class Fanout:
    """Every event feed of this gateway process."""

    def __init__(
        self,
        client: InventoryClient,
        owners: HoldOwners,
        leases: StreamLeases,
        settings: FanoutSettings,
    ) -> None:
        self.client, self.owners, self.leases, self.settings = client, owners, leases, settings
        self.feeds: dict[str, EventFeed] = {}
        self._stopping: dict[str, asyncio.Task[None]] = {}

    async def _feed(self, event_id: str, seat_index: SeatIndexLookup) -> EventFeed:
        if (stopping := self._stopping.pop(event_id, None)) is not None:
            stopping.cancel()
        feed = self.feeds.get(event_id)
        if feed is None:
            index = await seat_index()
            # Another viewer may have started the feed while the index was looked up.
            feed = self.feeds.setdefault(
                event_id, EventFeed(self.client, self.owners, event_id, self.settings, index)
            )
        return feed

    def _left(self, event_id: str, feed: EventFeed) -> None:
        if not feed.viewers and event_id not in self._stopping:
            self._stopping[event_id] = asyncio.create_task(self._linger(event_id, feed))

    async def _linger(self, event_id: str, feed: EventFeed) -> None:
        """Stops the feed a while after its last viewer left, unless one came meanwhile."""
        await asyncio.sleep(self.settings.linger_seconds)
        if feed.viewers or self.feeds.get(event_id) is not feed:
            return
        del self.feeds[event_id]
        self._stopping.pop(event_id, None)
        await feed.stop()

    def response(self, asked: StreamRequest) -> Response:
        """One viewer's SSE stream: a snapshot (or the changes after `from_version`, when the
        feed still has them), then changes; keep-alives while nothing changes."""
        serve = functools.partial(self._serve, asked)
        return LiveStream(serve, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _serve(self, asked: StreamRequest, send: Send, receive: Receive) -> None:
        self.leases.hold(asked.lease)
        try:
            feed = await self._feed(asked.event_id, asked.seat_index)
            writer = BodyWriter(send, lambda: feed.send_to(viewer))
            viewer = Viewer(asked.holder, writer, asked.from_version)
            feed.join(viewer)
            try:
                await until_disconnected(receive)
            finally:
                feed.leave(viewer)
                self._left(asked.event_id, feed)
        finally:
            self.leases.end(asked.lease)

    async def close(self) -> None:
        stopping, self._stopping = list(self._stopping.values()), {}
        for task in stopping:
            task.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)
        feeds, self.feeds = list(self.feeds.values()), {}
        for feed in feeds:
            await feed.stop()
