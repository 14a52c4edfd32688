"""The gateway process of the fan-out benchmark: lml-gateway's app under uvicorn (with its
garbage collection settings), with limits roomy enough for thousands of streams from one
address; `--per-viewer` swaps in the design the shared fan-out replaced (one WatchEvent stream
per viewer, each change encoded per viewer), kept here only to measure against. `--pauses`
writes every full garbage collection of the process (when, how long: the event loop stands
still meanwhile) to a JSON file as it exits."""

import asyncio
import contextlib
import gc
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import click
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from clients.client import InventoryClient
from clients.gateway.app import create_app
from clients.gateway.cli import collect_rarely
from clients.gateway.fanout import StreamRequest
from clients.gateway.feed import KEEPALIVE, change_event, snapshot_event
from clients.gateway.settings import Limits, TrustSettings
from clients.watching import Snapshot, Update

ROOMY = Limits(reads_per_ip="1000000/second", streams_per_ip=1_000_000, streams_per_buyer=1_000_000)


class PerViewer:
    """The old design: each stream its own upstream watch and its own encoding."""

    def __init__(self, client: InventoryClient, keepalive_seconds: float = 15.0) -> None:
        self.client, self.keepalive_seconds = client, keepalive_seconds

    def response(self, asked: StreamRequest) -> StreamingResponse:
        return StreamingResponse(
            self.stream(asked),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def stream(self, asked: StreamRequest) -> AsyncIterator[bytes]:
        event_id, lease = asked.event_id, asked.lease
        index = await asked.seat_index()
        updates = self.client.watch(event_id, asked.from_version)
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


class FullCollections:
    """The process's full (oldest generation) garbage collections: (wall time, seconds)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((time.time(), time.perf_counter() - self._started))


def gateway_app(target: str, redis_url: str, per_viewer: bool, pauses: Path | None) -> FastAPI:
    app = create_app(target, trust=TrustSettings(redis_url=redis_url, limits=ROOMY))
    shared = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        collections = FullCollections()
        gc.callbacks.append(collections)
        async with shared(app):
            if per_viewer:
                app.state.fanout = PerViewer(app.state.client)
            yield
        # Here, not after uvicorn.run: uvicorn ends the process with the signal that stopped it.
        if pauses is not None:
            await asyncio.to_thread(pauses.write_text, json.dumps(collections.pauses))

    app.router.lifespan_context = lifespan
    return app


@click.command()
@click.option("--target", required=True)
@click.option("--redis-url", required=True)
@click.option("--port", type=int, required=True)
@click.option("--per-viewer", is_flag=True)
@click.option("--pauses", type=click.Path(path_type=Path), help="Full GCs, written at exit.")
def main(target: str, redis_url: str, port: int, per_viewer: bool, pauses: Path | None) -> None:
    collect_rarely()  # as lml-gateway does
    uvicorn.run(
        gateway_app(target, redis_url, per_viewer, pauses),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        backlog=8192,
        timeout_graceful_shutdown=2,
        proxy_headers=False,  # as lml-gateway runs it
    )


if __name__ == "__main__":
    main()
