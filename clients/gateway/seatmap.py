"""Seat-map routes, over the venue layouts store (inventory.layouts) and the SDK.

An event's layout never changes once the event exists (it is pinned to one published layout
version and hash), so its export is served as immutable and cached by clients and CDNs under a
URL naming the hash; the seats taken are the live part, small, and revalidated by version. The
export's seat order is the layout's seat index: the compact forms of availability give one
status letter per seat in that order, and name the layout hash so that a client with another
layout knows its index is stale. The event's record (which layout, currency, prices) is kept in
the process while Postgres announces its changes (event_records.py): a seat-map load reads
Postgres only on the event's first load, and again after the record changes.
"""

from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from lml.inventory.v1 import inventory_pb2 as pb

from clients.gateway import problems
from clients.gateway.event_records import EventRecords
from clients.gateway.quotas import count_read
from clients.gateway.seat_index import PublishedLayout, PublishedLayouts, SeatIndex
from clients.gateway.state import backends_of, client_of
from inventory.layouts.errors import EventSetupError
from inventory.layouts.events import EventFromLayout, EventLayout

IMMUTABLE = "public, max-age=31536000, immutable"

Format = Annotated[
    Literal["full", "compact"],
    Query(
        alias="format",
        description="`full` (the default): seats by id. `compact`: one status letter per seat "
        "of the event's layout, in the order of its export (the seat index), with the layout "
        "hash; for events created from a layout only.",
    ),
]


async def _event_layout(request: Request, event_id: str) -> EventLayout | Response:
    backends = backends_of(request)
    if backends is None:
        return problems.problem(
            501,
            "SEAT_MAP_NOT_CONFIGURED",
            "this gateway has no layouts database (start it with --layouts-dsn)",
            request.url.path,
        )
    records: EventRecords = request.app.state.event_records
    try:
        return await records.of(event_id)
    except EventSetupError as error:
        return problems.problem(404, "LAYOUT_NOT_FOUND", str(error), request.url.path)


async def _published(request: Request, found: EventLayout) -> PublishedLayout:
    published: PublishedLayouts | None = getattr(request.app.state, "published_layouts", None)
    if published is None:
        backends = backends_of(request)
        assert backends is not None  # _event_layout found the event in them
        published = request.app.state.published_layouts = PublishedLayouts(backends.layouts.store)
    return await published.of(found)


async def seat_index_for(request: Request, event_id: str) -> SeatIndex | Response:
    """The seat index of the event's layout, or the problem saying why there is none (no
    layouts database, or an event not created from a layout)."""
    found = await _event_layout(request, event_id)
    if isinstance(found, Response):
        return found
    return (await _published(request, found)).index


async def seat_index_of(request: Request, event_id: str) -> SeatIndex | None:
    """The seat index of the event's layout, None when it has none: the SSE stream's
    snapshots are compact when there is one (models.snapshot_event_data)."""
    found = await seat_index_for(request, event_id)
    return None if isinstance(found, Response) else found


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
        layout_hash: Annotated[
            str | None,
            Query(
                alias="hash",
                description="The layout hash the seat map names: a 404 if the event's layout "
                "is another (the URL is a cache key for an immutable answer).",
            ),
        ] = None,
    ) -> Response:
        """The venue layout export of the event (sections, rows, seats with positions,
        categories and seat ids), immutable for the event: its ETag is the layout hash. A
        seat's index is its position in the export, counting seats section by section and row
        by row as listed; the compact availability forms follow that order."""
        found = await _event_layout(request, event_id)
        if isinstance(found, Response):
            return found
        current = found.event.layout_hash
        if layout_hash is not None and layout_hash != current:
            detail = f"the layout of event {event_id} is {current}, not {layout_hash}"
            return problems.problem(404, "LAYOUT_NOT_FOUND", detail, request.url.path)
        headers = {"ETag": f'"{current}"', "Cache-Control": IMMUTABLE}
        if if_none_match == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        published = await _published(request, found)
        return Response(published.export, media_type="application/json", headers=headers)

    @app.get(
        "/v1/events/{event_id}/seatmap", tags=["seat map"], responses=errors, dependencies=read
    )
    async def seat_map(
        event_id: str,
        request: Request,
        answer_format: Format = "full",
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Prices, the layout's URL and hash, and the seats held or booked at `version` (every
        other seat of the layout is available): as lists of seat ids `held` and `booked`, or
        with `format=compact` as `statuses`, one letter per seat in seat index order (A
        available, H held, B booked). ETag: the version; follow /changes for live updates from
        it."""
        found = await _event_layout(request, event_id)
        if isinstance(found, Response):
            return found
        snapshot = await client_of(request).availability(event_id, unavailable_only=True)
        headers = {"ETag": f'"{snapshot.version}"', "Cache-Control": "no-cache"}
        if if_none_match == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        index = None
        if answer_format == "compact":
            index = (await _published(request, found)).index
        body = seat_map_body(found.event, snapshot, index)
        return JSONResponse(body, headers=headers)


def seat_map_body(
    event: EventFromLayout, snapshot: pb.GetAvailabilityResponse, index: SeatIndex | None
) -> dict[str, Any]:
    """The seat map's JSON: the seats taken by id, or in the compact form with the `index`."""
    body: dict[str, Any] = {
        "event_id": event.event_id,
        "layout_url": f"/v1/events/{event.event_id}/seatmap/layout?hash={event.layout_hash}",
        "layout_hash": event.layout_hash,
        "currency": event.currency,
        "prices": dict(event.prices),
        "version": snapshot.version,
    }
    if index is not None:
        return body | {"statuses": index.statuses((s.seat_id, s.status) for s in snapshot.seats)}
    taken: dict[str, list[str]] = {"held": [], "booked": []}
    names = {pb.SEAT_STATUS_HELD: "held", pb.SEAT_STATUS_BOOKED: "booked"}
    for seat in snapshot.seats:
        if seat.status in names:
            taken[names[seat.status]].append(seat.seat_id)
    return body | taken
