"""The gateway process of the fan-out benchmark: lml-gateway's app under uvicorn, with limits
roomy enough for thousands of streams from one address; `--per-viewer` swaps in the design the
shared fan-out replaced (one WatchEvent stream per viewer, each change encoded per viewer), kept
here only to measure against."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import click
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from clients.client import InventoryClient
from clients.gateway.app import create_app
from clients.gateway.fanout import SeatIndexLookup
from clients.gateway.feed import KEEPALIVE, change_event, snapshot_event
from clients.gateway.quotas import Lease
from clients.gateway.settings import Limits, TrustSettings
from clients.watching import Snapshot, Update

ROOMY = Limits(reads_per_ip="1000000/second", streams_per_ip=1_000_000, streams_per_buyer=1_000_000)


class PerViewer:
    """The old design: each stream its own upstream watch and its own encoding."""

    def __init__(self, client: InventoryClient, keepalive_seconds: float = 15.0) -> None:
        self.client, self.keepalive_seconds = client, keepalive_seconds

    def response(
        self,
        event_id: str,
        from_version: int | None,
        lease: Lease,
        holder: str | None,
        seat_index: SeatIndexLookup,
    ) -> StreamingResponse:
        return StreamingResponse(
            self.stream(event_id, from_version, lease, holder, seat_index),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def stream(
        self,
        event_id: str,
        from_version: int | None,
        lease: Lease,
        holder: str | None,
        seat_index: SeatIndexLookup,
    ) -> AsyncIterator[bytes]:
        index = await seat_index()
        updates = self.client.watch(event_id, from_version)
        upcoming: asyncio.Future[Update] | None = None
        try:
            while True:
                await lease.renew()
                if upcoming is None:
                    upcoming = asyncio.ensure_future(anext(updates))
                done, _ = await asyncio.wait({upcoming}, timeout=self.keepalive_seconds)
                if not done:
                    yield KEEPALIVE
                    continue
                update, upcoming = upcoming.result(), None
                if isinstance(update, Snapshot):
                    yield snapshot_event(event_id, update.version, update.seats, index)
                else:
                    yield change_event(update)
        finally:
            if upcoming is not None:
                upcoming.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await upcoming
            await updates.aclose()
            await lease.end()


def gateway_app(target: str, redis_url: str, per_viewer: bool) -> FastAPI:
    app = create_app(target, trust=TrustSettings(redis_url=redis_url, limits=ROOMY))
    if per_viewer:
        shared = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with shared(app):
                app.state.fanout = PerViewer(app.state.client)
                yield

        app.router.lifespan_context = lifespan
    return app


@click.command()
@click.option("--target", required=True)
@click.option("--redis-url", required=True)
@click.option("--port", type=int, required=True)
@click.option("--per-viewer", is_flag=True)
def main(target: str, redis_url: str, port: int, per_viewer: bool) -> None:
    app = gateway_app(target, redis_url, per_viewer)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        backlog=8192,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
