"""The HTTP gateway for mobile apps: JSON over HTTP to InventoryService through the SDK."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from clients.client import InventoryClient
from clients.errors import InventoryClientError
from clients.gateway import problems
from clients.gateway.checkout_routes import StripeSettings, add_checkout_routes, open_checkout
from clients.gateway.metrics import MetricsMiddleware
from clients.gateway.models import (
    MAX_VERSION,
    AvailabilityOut,
    BookingOut,
    ChangeOut,
    ConfirmIn,
    EventIn,
    EventOut,
    ExtendIn,
    HoldIn,
    HoldOut,
    ReleaseIn,
    ReleaseOut,
    status_name,
)
from clients.gateway.page import add_page_routes
from clients.gateway.seatmap import add_seatmap_routes
from clients.gateway.state import client_of
from clients.watching import Snapshot, Update
from inventory.layouts.backends import Backends, open_backends

KEEPALIVE_SECONDS = 15.0  # an SSE comment this often keeps proxies from closing a quiet stream
PROBLEM = {"model": dict[str, Any], "content": {problems.MEDIA_TYPE: {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": "Problem details (RFC 9457)", **PROBLEM}
    for status in (400, 403, 404, 409, 410, 422, 503, 504)
}


def _sse(event: str, event_id: int, data: str) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()


def _encode(event_id: str, update: Update) -> bytes:
    if isinstance(update, Snapshot):
        snapshot = AvailabilityOut.model_validate(
            {
                "event_id": event_id,
                "version": update.version,
                "seats": {seat: status_name(status) for seat, status in update.seats.items()},
            }
        )
        return _sse("snapshot", update.version, snapshot.model_dump_json())
    return _sse("change", update.version, ChangeOut.of(update).model_dump_json())


async def _event_stream(
    client: InventoryClient, event_id: str, from_version: int | None
) -> AsyncIterator[bytes]:
    updates = client.watch(event_id, from_version)
    upcoming: asyncio.Task[Update] | None = None
    try:
        while True:
            if upcoming is None:
                upcoming = asyncio.ensure_future(anext(updates))
            done, _ = await asyncio.wait({upcoming}, timeout=KEEPALIVE_SECONDS)
            if not done:
                yield b": keep-alive\n\n"
                continue
            update, upcoming = upcoming.result(), None
            yield _encode(event_id, update)
    finally:
        if upcoming is not None:
            upcoming.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await upcoming
        await updates.aclose()


def create_app(
    target: str = "127.0.0.1:50051",
    client: InventoryClient | None = None,
    layouts_dsn: str | None = None,
    mongo_url: str | None = None,
    backends: Backends | None = None,
    stripe: StripeSettings | None = None,
) -> FastAPI:
    """The gateway app. It makes its InventoryClient for `target` unless given one, and opens
    the layouts backends (for the seat map) from `layouts_dsn` unless given them; checkout
    works when `stripe` has a secret key and webhook secret and there is a layouts database."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if client is None:
                # Made here, not earlier: a grpc.aio channel belongs to the loop it is made on.
                app.state.client = InventoryClient(target)
                stack.push_async_callback(app.state.client.close)
            if backends is None and layouts_dsn:
                app.state.backends = await stack.enter_async_context(
                    open_backends(layouts_dsn, mongo_url)
                )
            app.state.checkout = await stack.enter_async_context(
                open_checkout(stripe, app.state.client, app.state.backends)
            )
            yield

    app = FastAPI(
        title="LML seat inventory gateway",
        version="1",
        description="Events, holds, bookings and live seat updates (Server-Sent Events). "
        "Failures are RFC 9457 problem documents carrying the reason and seat ids.",
        lifespan=lifespan,
    )
    app.state.client = client
    app.state.backends = backends
    app.add_exception_handler(InventoryClientError, problems.inventory_error)
    app.add_exception_handler(RequestValidationError, problems.validation_error)
    app.add_middleware(MetricsMiddleware)
    _add_routes(app)
    add_seatmap_routes(app, ERRORS)
    add_checkout_routes(app, ERRORS)
    add_page_routes(app)
    return app


def _add_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the gateway process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses=ERRORS)
    async def readyz(request: Request) -> Response:
        """Readiness: the inventory service answers its health check as SERVING."""
        if await client_of(request).ready():
            return JSONResponse({"status": "ready"})
        return problems.problem(
            503, "INVENTORY_UNAVAILABLE", "the inventory service is not serving", "/readyz"
        )

    @app.post("/v1/events", tags=["events"], response_model=EventOut, responses=ERRORS)
    async def create_event(body: EventIn, request: Request, response: Response) -> EventOut:
        """Creates an event (201), or returns it unchanged for identical input (200)."""
        created = await client_of(request).create_event(
            body.event_id,
            [seat.message() for seat in body.seats],
            body.limits.message(),
            [area.message() for area in body.areas],
        )
        response.status_code = 201 if created.created else 200
        return EventOut.of(created.event)

    @app.get("/v1/events/{event_id}", tags=["events"], responses=ERRORS)
    async def get_event(event_id: str, request: Request, include_seats: bool = False) -> EventOut:
        found = await client_of(request).get_event(event_id, include_seats)
        return EventOut.of(found.event, list(found.seats) if include_seats else None)

    @app.get("/v1/events/{event_id}/availability", tags=["events"], responses=ERRORS)
    async def availability(
        event_id: str,
        request: Request,
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Every seat's status at one version. The ETag is the version: send it back in
        If-None-Match to get 304 while nothing has changed."""
        snapshot = await client_of(request).availability(event_id)
        headers = {"ETag": f'"{snapshot.version}"', "Cache-Control": "no-cache"}
        if if_none_match == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        body = AvailabilityOut.of(event_id, snapshot).model_dump_json()
        return Response(body, media_type="application/json", headers=headers)

    @app.post("/v1/events/{event_id}/holds", status_code=201, tags=["holds"], responses=ERRORS)
    async def hold(event_id: str, body: HoldIn, request: Request) -> HoldOut:
        """Holds every seat or none (409 with the seat ids that are taken): the seats named, the
        best available, or places of a general-admission area."""
        held = await client_of(request).hold_request(
            body.message(event_id), ttl=body.ttl_seconds, request_id=body.request_id
        )
        return HoldOut.of(held.hold, held.split)

    @app.post("/v1/events/{event_id}/holds/{hold_id}/extend", tags=["holds"], responses=ERRORS)
    async def extend(event_id: str, hold_id: str, body: ExtendIn, request: Request) -> HoldOut:
        held = await client_of(request).extend(
            event_id, hold_id, body.holder_id, ttl=body.ttl_seconds
        )
        return HoldOut.of(held)

    @app.post("/v1/events/{event_id}/holds/{hold_id}/release", tags=["holds"], responses=ERRORS)
    async def release(event_id: str, hold_id: str, body: ReleaseIn, request: Request) -> ReleaseOut:
        """Releases the hold (idempotent); returns the seats released."""
        seat_ids = await client_of(request).release(event_id, hold_id, body.holder_id)
        return ReleaseOut(seat_ids=seat_ids)

    @app.post("/v1/events/{event_id}/holds/{hold_id}/confirm", tags=["holds"], responses=ERRORS)
    async def confirm(event_id: str, hold_id: str, body: ConfirmIn, request: Request) -> BookingOut:
        """Books the hold's seats (idempotent: a retry returns the same booking)."""
        booking = await client_of(request).confirm(
            event_id,
            hold_id,
            body.holder_id,
            payment_ref=body.payment_ref,
            request_id=body.request_id,
        )
        return BookingOut.of(booking)

    @app.get(
        "/v1/events/{event_id}/changes",
        tags=["live"],
        responses={200: {"content": {"text/event-stream": {}}}, **ERRORS},
    )
    async def changes(
        event_id: str,
        request: Request,
        last_event_id: Annotated[
            int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_VERSION)
        ] = None,
    ) -> StreamingResponse:
        """Live seat updates as Server-Sent Events. First a `snapshot` event (every seat), then
        a `change` event per change; each event's id is its version, so a reconnecting
        EventSource resumes with Last-Event-ID. A `snapshot` may come again when the change log
        cannot resume: it replaces everything before it."""
        client = client_of(request)
        await client.get_event(event_id)  # a missing event is a 404 before the stream starts
        return StreamingResponse(
            _event_stream(client, event_id, last_event_id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
