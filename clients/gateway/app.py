"""The HTTP gateway for mobile apps: JSON over HTTP to InventoryService through the SDK."""

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.middleware.gzip import GZipMiddleware

from clients.client import InventoryClient
from clients.errors import InventoryClientError
from clients.gateway import problems
from clients.gateway.access import Admin, Buyer, MaybeBuyer, auth_error
from clients.gateway.checkout_routes import (
    CheckoutState,
    StripeSettings,
    add_checkout_routes,
    open_checkout,
)
from clients.gateway.event_records import event_records
from clients.gateway.fanout import Fanout, StreamRequest
from clients.gateway.feed import DEFAULT_FANOUT, FanoutSettings
from clients.gateway.identity import AuthError, Verifier
from clients.gateway.metrics import MetricsMiddleware
from clients.gateway.models import (
    MAX_VERSION,
    AvailabilityOut,
    BookingOut,
    CompactAvailabilityOut,
    ConfirmIn,
    EventIn,
    EventOut,
    ExtendIn,
    HoldIn,
    HoldOut,
    ReleaseOut,
)
from clients.gateway.ownership import HoldOwners
from clients.gateway.page import add_page_routes
from clients.gateway.queue_routes import add_queue_routes, admission_token
from clients.gateway.quotas import (
    RATE_LIMIT_HEADERS,
    Quotas,
    StreamLeases,
    TooMany,
    count_read,
    quotas_of,
    too_many,
)
from clients.gateway.seatmap import Format, add_seatmap_routes, seat_index_for, seat_index_of
from clients.gateway.sessions import add_session_routes, claimed_secret
from clients.gateway.settings import TrustSettings
from clients.gateway.state import client_of
from inventory.layouts.backends import Backends, open_backends
from inventory.redis_client import connect

REDIS_CONNECTIONS = 64  # per gateway process: limits, stream leases, hold owners
PROBLEM = {"model": dict[str, Any], "content": {problems.MEDIA_TYPE: {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": "Problem details (RFC 9457)", **PROBLEM}
    for status in (400, 401, 403, 404, 409, 410, 422, 429, 503, 504)
}


def create_app(
    target: str = "127.0.0.1:50051",
    client: InventoryClient | None = None,
    layouts_dsn: str | None = None,
    mongo_url: str | None = None,
    backends: Backends | None = None,
    stripe: StripeSettings | None = None,
    *,
    trust: TrustSettings,
    fanout: FanoutSettings = DEFAULT_FANOUT,
) -> FastAPI:
    """The gateway app. It makes its InventoryClient for `target` unless given one, and opens
    the layouts backends (for the seat map) from `layouts_dsn` unless given them; checkout
    works when `stripe` has a secret key and webhook secret and there is a layouts database.
    `trust` says who may call what and how often (its Redis holds the shared limits);
    `fanout` how the live streams share their watches."""

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
            if app.state.backends is not None:
                app.state.event_records = await stack.enter_async_context(
                    event_records(app.state.backends.pool)
                )
            app.state.checkout = await stack.enter_async_context(
                open_checkout(stripe, app.state.client, app.state.backends)
            )
            # A waiting pool: thousands of streams opening or closing at once queue for a
            # connection rather than fail (redis-py's plain pool raises beyond its 100).
            redis = connect(
                trust.redis_url, max_connections=REDIS_CONNECTIONS, cluster=trust.redis_cluster
            )
            stack.push_async_callback(redis.aclose)
            # A secret generated here is this process's alone: claimed_secret refuses a second
            # process that signs with another one.
            session_secret = trust.session_secret or secrets.token_urlsafe(32)
            await stack.enter_async_context(claimed_secret(redis, session_secret))
            app.state.verifier = Verifier(trust, session_secret)
            app.state.quotas = Quotas(trust, redis)
            app.state.owners = HoldOwners(redis)
            leases = StreamLeases(redis)
            stack.push_async_callback(leases.close)
            app.state.fanout = Fanout(app.state.client, app.state.owners, leases, fanout)
            stack.push_async_callback(app.state.fanout.close)
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
    app.state.trust = trust
    app.add_exception_handler(InventoryClientError, problems.inventory_error)
    app.add_exception_handler(RequestValidationError, problems.validation_error)
    app.add_exception_handler(AuthError, auth_error)
    app.add_exception_handler(TooMany, too_many)
    if trust.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(trust.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "If-None-Match"],
            expose_headers=["ETag", "Retry-After", *RATE_LIMIT_HEADERS],
        )
    app.add_middleware(MetricsMiddleware)  # outside CORS: it counts every answer
    # Seat maps and availability shrink several-fold; Starlette leaves text/event-stream as is.
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)
    _add_routes(app)
    add_session_routes(app)
    add_seatmap_routes(app, ERRORS)
    add_checkout_routes(app, ERRORS)
    add_queue_routes(app, ERRORS)
    add_page_routes(app)
    return app


READ = [Depends(count_read)]


def _unpaid_confirm_allowed(request: Request) -> None:
    checkout: CheckoutState = request.app.state.checkout
    if checkout.checkout is not None:
        raise AuthError(
            403,
            "PAYMENT_REQUIRED",
            "this gateway books paid holds only: start checkout (POST .../checkout); "
            "Stripe's webhook books the hold once it is paid",
        )
    trust: TrustSettings = request.app.state.trust
    if not trust.allow_unpaid_confirm:
        raise AuthError(
            403,
            "UNPAID_CONFIRM_DISABLED",
            "confirming without payment is off (the gateway was not started with "
            "--allow-unpaid-confirm)",
        )


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
    async def create_event(
        body: EventIn, request: Request, response: Response, _: Admin
    ) -> EventOut:
        """Creates an event (201), or returns it unchanged for identical input (200). Admin."""
        created = await client_of(request).create_event(
            body.event_id,
            [seat.message() for seat in body.seats],
            body.limits.message(),
            [area.message() for area in body.areas],
        )
        response.status_code = 201 if created.created else 200
        return EventOut.of(created.event)

    @app.get("/v1/events/{event_id}", tags=["events"], responses=ERRORS, dependencies=READ)
    async def get_event(event_id: str, request: Request, include_seats: bool = False) -> EventOut:
        found = await client_of(request).get_event(event_id, include_seats)
        return EventOut.of(found.event, list(found.seats) if include_seats else None)

    @app.get(
        "/v1/events/{event_id}/availability",
        tags=["events"],
        responses={200: {"model": AvailabilityOut | CompactAvailabilityOut}, **ERRORS},
        dependencies=READ,
    )
    async def availability(
        event_id: str,
        request: Request,
        answer_format: Format = "full",
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Every seat's status at one version: by seat id, or with `format=compact` one letter
        per seat of the event's layout in seat index order (see the seat map's layout). The
        ETag is the version: send it back in If-None-Match to get 304 while nothing has
        changed."""
        index = None
        if answer_format == "compact":
            found = await seat_index_for(request, event_id)
            if isinstance(found, Response):
                return found
            index = found
        # The compact form lists the taken seats only: so does the service's answer for it.
        snapshot = await client_of(request).availability(event_id, index is not None)
        headers = {"ETag": f'"{snapshot.version}"', "Cache-Control": "no-cache"}
        if if_none_match == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        if index is None:
            body = AvailabilityOut.of(event_id, snapshot).model_dump_json()
        else:
            body = CompactAvailabilityOut.of(event_id, snapshot, index).model_dump_json()
        return Response(body, media_type="application/json", headers=headers)

    @app.post("/v1/events/{event_id}/holds", status_code=201, tags=["holds"], responses=ERRORS)
    async def hold(event_id: str, body: HoldIn, request: Request, holder: Buyer) -> HoldOut:
        """Holds every seat or none (409 with the seat ids that are taken): the seats named, the
        best available, or places of a general-admission area."""
        quotas = quotas_of(request)

        async def take_limits() -> None:
            # One after the other: a refused limit leaves the ones after it uncharged (a buyer
            # over their own limit does not use up the quota of everyone behind their IP).
            await quotas.take("holds per buyer", holder)
            await quotas.take("holds per IP", quotas.ip(request))
            await quotas.take("seats held per buyer", holder, cost=body.seat_count())

        # The admission ("" when none) is read while the limits are counted: a read has
        # nothing to undo when a limit refuses, and the hold waits one Redis round trip less.
        _, admission = await asyncio.gather(
            take_limits(), admission_token(request, event_id, holder)
        )
        held = await client_of(request).hold_request(
            body.message(event_id, holder, admission),
            ttl=body.ttl_seconds,
            request_id=body.request_id,
        )
        owners: HoldOwners = request.app.state.owners
        await owners.add(holder, held.hold.hold_id)
        return HoldOut.of(held.hold, held.split)

    @app.post("/v1/events/{event_id}/holds/{hold_id}/extend", tags=["holds"], responses=ERRORS)
    async def extend(
        event_id: str, hold_id: str, request: Request, holder: Buyer, body: ExtendIn | None = None
    ) -> HoldOut:
        ttl = body.ttl_seconds if body else None
        held = await client_of(request).extend(event_id, hold_id, holder, ttl=ttl)
        return HoldOut.of(held)

    @app.post("/v1/events/{event_id}/holds/{hold_id}/release", tags=["holds"], responses=ERRORS)
    async def release(event_id: str, hold_id: str, request: Request, holder: Buyer) -> ReleaseOut:
        """Releases the hold (idempotent); returns the seats released."""
        seat_ids = await client_of(request).release(event_id, hold_id, holder)
        return ReleaseOut(seat_ids=seat_ids)

    @app.post("/v1/events/{event_id}/holds/{hold_id}/confirm", tags=["holds"], responses=ERRORS)
    async def confirm(
        event_id: str, hold_id: str, request: Request, holder: Buyer, body: ConfirmIn | None = None
    ) -> BookingOut:
        """Books the hold's seats without payment (idempotent: a retry returns the same
        booking): only on a gateway without checkout started with --allow-unpaid-confirm.
        With checkout, Stripe's webhook books a hold once it is paid."""
        _unpaid_confirm_allowed(request)
        body = body or ConfirmIn()
        booking = await client_of(request).confirm(
            event_id,
            hold_id,
            holder,
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
        caller: MaybeBuyer,
        last_event_id: Annotated[
            int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_VERSION)
        ] = None,
    ) -> Response:
        """Live seat updates as Server-Sent Events. First a `snapshot` event (every seat), then
        a `change` event per change; each event's id is its version, so a reconnecting
        EventSource resumes with Last-Event-ID. A `snapshot` may come again when the change log
        cannot resume: it replaces everything before it. For an event made from a layout the
        snapshot is compact (`layout_hash` and `statuses` in seat-index order, as
        `/availability?format=compact`). Seat statuses only: a change names its hold (`hold_id`,
        `mine: true`) only on the stream of the buyer who holds it."""
        quotas = quotas_of(request)
        await count_read(request)
        await client_of(request).get_event(event_id)  # a missing event: 404 before the stream
        holder = caller.holder_id if caller else None
        lease = await quotas.stream_lease(holder, quotas.ip(request))
        fanout: Fanout = request.app.state.fanout
        return fanout.response(
            StreamRequest(
                event_id, last_event_id, lease, holder, lambda: seat_index_of(request, event_id)
            )
        )
