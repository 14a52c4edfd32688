"""Seat-map routes, over the venue layouts store (inventory.layouts) and the SDK.

An event's layout never changes once the event exists (it is pinned to one published layout
version and hash), so its export is served as immutable and cached by clients and CDNs; the
seats taken are the live part, small, and revalidated by version.
"""

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from lml.inventory.v1 import inventory_pb2 as pb

from clients.gateway import problems
from clients.gateway.quotas import count_read
from clients.gateway.state import backends_of, client_of
from inventory.layouts.errors import EventSetupError
from inventory.layouts.events import EventLayout, read_event_layout
from inventory.layouts.export import export_bytes

IMMUTABLE = "public, max-age=31536000, immutable"


async def _event_layout(request: Request, event_id: str) -> EventLayout | Response:
    backends = backends_of(request)
    if backends is None:
        return problems.problem(
            501,
            "SEAT_MAP_NOT_CONFIGURED",
            "this gateway has no layouts database (start it with --layouts-dsn)",
            request.url.path,
        )
    try:
        return await read_event_layout(backends.pool, event_id)
    except EventSetupError as error:
        return problems.problem(404, "LAYOUT_NOT_FOUND", str(error), request.url.path)


def add_seatmap_routes(app: FastAPI, errors: dict[int | str, dict[str, Any]]) -> None:
    read = [Depends(count_read)]

    @app.get(
        "/v1/events/{event_id}/seatmap/layout",
        tags=["seat map"],
        responses=errors,
        dependencies=read,
    )
    async def layout(
        event_id: str,
        request: Request,
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        """The venue layout export of the event (sections, rows, seats with positions,
        categories and seat ids), immutable for the event: its ETag is the layout hash."""
        found = await _event_layout(request, event_id)
        if isinstance(found, Response):
            return found
        headers = {"ETag": f'"{found.event.layout_hash}"', "Cache-Control": IMMUTABLE}
        if if_none_match == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        backends = backends_of(request)
        assert backends is not None
        document = await backends.layouts.store.get(found.event.layout_id, found.layout_version)
        return Response(export_bytes(document), media_type="application/json", headers=headers)

    @app.get(
        "/v1/events/{event_id}/seatmap", tags=["seat map"], responses=errors, dependencies=read
    )
    async def seat_map(
        event_id: str,
        request: Request,
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Prices, the layout's URL and hash, and the seats held or booked at `version` (every
        other seat of the layout is available). ETag: the version; follow /changes for live
        updates from it."""
        found = await _event_layout(request, event_id)
        if isinstance(found, Response):
            return found
        snapshot = await client_of(request).availability(event_id)
        headers = {"ETag": f'"{snapshot.version}"', "Cache-Control": "no-cache"}
        if if_none_match == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        taken = {pb.SEAT_STATUS_HELD: "held", pb.SEAT_STATUS_BOOKED: "booked"}
        body: dict[str, Any] = {
            "event_id": event_id,
            "layout_url": f"/v1/events/{event_id}/seatmap/layout",
            "layout_hash": found.event.layout_hash,
            "currency": found.event.currency,
            "prices": dict(found.event.prices),
            "version": snapshot.version,
            "held": [],
            "booked": [],
        }
        for seat in snapshot.seats:
            if seat.status in taken:
                body[taken[seat.status]].append(seat.seat_id)
        return JSONResponse(body, headers=headers)
