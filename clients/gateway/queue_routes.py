"""The waiting room over HTTP, for the authenticated buyer (their id is the gateway's identity,
never the body's): `POST /v1/events/{id}/queue` joins the event's queue (idempotent: the same
place again, until the admission lapses: then a new place at the back of the line) and
`GET /v1/events/{id}/queue` follows the place as Server-Sent Events until the admission comes.
The admission itself stays in the gateway (clients/gateway/admissions.py): the hold route passes
it on, the buyer sees only when it lapses."""

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from lml.inventory.v1 import inventory_pb2 as pb
from pydantic import BaseModel, Field

from clients.errors import InventoryClientError
from clients.gateway import problems
from clients.gateway.access import Buyer
from clients.gateway.admissions import Admissions
from clients.gateway.quotas import Lease, count_read, quotas_of
from clients.gateway.state import client_of

KEEPALIVE_SECONDS = 15.0  # as /changes: an SSE comment this often keeps proxies from closing


class QueueOut(BaseModel):
    """The buyer's place in the event's waiting room."""

    event_id: str
    position: int = Field(description="Buyers ahead plus one (1: next in); 0 once admitted.")
    estimated_wait_seconds: float = Field(description="Until admission at the current rate.")
    admitted: bool
    opens_at: datetime = Field(description="Buyers who join before it are drawn in random order.")
    admission_expires_at: datetime | None = Field(
        default=None,
        description="While the admission is live: holds are accepted until then. Admitted "
        "without it: the admission has lapsed (join again for a new place at the back).",
    )

    @classmethod
    def of(cls, event_id: str, ticket: pb.QueueTicket) -> "QueueOut":
        lapses = ticket.admission_expires_at if ticket.admission_token else None
        return cls(
            event_id=event_id,
            position=ticket.position,
            estimated_wait_seconds=ticket.estimated_wait.ToMilliseconds() / 1000,
            admitted=ticket.admitted,
            opens_at=ticket.opens_at.ToDatetime(tzinfo=UTC),
            admission_expires_at=lapses.ToDatetime(tzinfo=UTC) if lapses else None,
        )


def admissions_of(request: Request) -> Admissions:
    return Admissions(quotas_of(request).redis)


async def admission_token(request: Request, event_id: str, holder_id: str) -> str:
    """What the hold route passes as HoldRequest.admission_token: the buyer's live admission."""
    return await admissions_of(request).token(event_id, holder_id)


def _sse(ticket: QueueOut) -> bytes:
    return f"event: ticket\ndata: {ticket.model_dump_json(exclude_none=True)}\n\n".encode()


async def _queue_stream(
    event_id: str,
    holder_id: str,
    first: pb.QueueTicket,
    tickets: AsyncGenerator[pb.QueueTicket, None],
    admissions: Admissions,
    lease: Lease,
) -> AsyncIterator[bytes]:
    """The ticket now and at each change; ends after the admission (the service's stream does)
    or when the service's stream breaks (EventSource then connects again)."""
    upcoming: asyncio.Task[pb.QueueTicket] | None = None
    try:
        yield _sse(QueueOut.of(event_id, first))
        while True:
            await lease.renew()
            if upcoming is None:
                upcoming = asyncio.ensure_future(anext(tickets))
            done, _ = await asyncio.wait({upcoming}, timeout=KEEPALIVE_SECONDS)
            if not done:
                yield b": keep-alive\n\n"
                continue
            try:
                ticket = upcoming.result()
            except (StopAsyncIteration, InventoryClientError):
                upcoming = None
                return
            upcoming = None
            await admissions.remember(event_id, holder_id, ticket)
            yield _sse(QueueOut.of(event_id, ticket))
    finally:
        try:
            if upcoming is not None:
                upcoming.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await upcoming
            await tickets.aclose()
        finally:
            await lease.end()


def add_queue_routes(app: FastAPI, errors: dict[int | str, dict[str, Any]]) -> None:
    @app.post("/v1/events/{event_id}/queue", tags=["queue"], responses=errors)
    async def join_queue(event_id: str, request: Request, holder: Buyer) -> QueueOut:
        """Joins the event's waiting room as the buyer (again: the same place, or a new one
        at the back once the admission lapsed; new places are limited per client address).
        Follow the place with GET on the same path; once admitted, holds need nothing more:
        the gateway passes the admission on until `admission_expires_at`. 404 QUEUE_NOT_FOUND:
        the event sells without a queue."""
        quotas = quotas_of(request)
        admissions = admissions_of(request)
        # New places count against the client address; a buyer's join again (a page reload)
        # costs nothing, even the one after a lapsed admission that makes a new place: the
        # buyer was let in once already, at the queue's rate.
        if await admissions.ticket_id(event_id, holder) is None:
            await quotas.take("joins per IP", quotas.ip(request))
        ticket = await client_of(request).join_queue(event_id, holder)
        await admissions.remember(event_id, holder, ticket)
        return QueueOut.of(event_id, ticket)

    @app.get(
        "/v1/events/{event_id}/queue",
        tags=["queue"],
        responses={200: {"content": {"text/event-stream": {}}}, **errors},
    )
    async def watch_queue(event_id: str, request: Request, holder: Buyer) -> Response:
        """The buyer's place as Server-Sent Events: a `ticket` event now and whenever the
        position or wait changes, the last one admitted; then the stream ends. 404
        QUEUE_NOT_JOINED before a join (POST on the same path)."""
        await count_read(request)
        admissions = admissions_of(request)
        ticket_id = await admissions.ticket_id(event_id, holder)
        if ticket_id is None:
            detail = f"join the waiting room first: POST {request.url.path}"
            return problems.problem(404, "QUEUE_NOT_JOINED", detail, request.url.path)
        quotas = quotas_of(request)
        lease = await quotas.stream_lease(holder, quotas.ip(request))
        tickets = client_of(request).watch_queue(event_id, ticket_id)
        try:
            first = await anext(tickets)  # a queue gone or closed is a problem, not a stream
            await admissions.remember(event_id, holder, first)
        except BaseException:
            await tickets.aclose()
            await lease.end()
            raise
        return StreamingResponse(
            _queue_stream(event_id, holder, first, tickets, admissions, lease),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
