"""How each Lua script is called and what its reply means: per script, one function that checks a
request and builds the call (keys and ARGV as the script's header documents them) and one that
turns the reply into a response, raising the script's error as an InventoryError. Every caller
(the engine, the sweeper, recovery, the benchmarks) goes through these pairs. The scripts that
build an event in chunks have theirs in ``build_calls``.
"""

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lml.inventory.v1 import inventory_pb2 as pb

from inventory import event_shape, keys, validation
from inventory.errors import from_script_error
from inventory.scripts import Call, Library, Script, load_library
from inventory.times import timestamp

CHANGELOG_MAX = 100_000  # change-log entries kept for watchers (lua/includes/changelog.lua)
SWEEP_BATCH = 32  # holds one sweep call handles at most: keeps each call short
SWEEP_SEATS = 4  # seats the holds one sweep call expires free, about (sweep.lua)

SCRIPTS: dict[str, Script] = load_library(
    (
        "create_event",
        "build_seats",
        "build_rows",
        "build_commit",
        "hold",
        "extend",
        "release",
        "confirm",
        "sweep",
        "availability_chunk",
        "availability_version",
        "cancel_booking",
        "restore_event",
        "queue_configure",
        "queue_join",
        "queue_admit",
        "queue_state",
    )
)
LIBRARY: Library = SCRIPTS["hold"].library  # every command's: they are built into one
_SEAT_STATUS = {"A": pb.SEAT_STATUS_AVAILABLE, "H": pb.SEAT_STATUS_HELD, "B": pb.SEAT_STATUS_BOOKED}


def ok(reply: Any) -> list[Any]:
    """A script's successful reply; its error reply (or Redis's) raised."""
    if isinstance(reply, Exception):
        raise reply
    if reply[0] != "OK":
        raise from_script_error(reply)
    return list(reply)


# -- hold -----------------------------------------------------------------------------------------


def hold_call(request: pb.HoldRequest, admission: str = "none") -> Call:
    """`admission`: what AdmissionSigner.carried found ("none" is refused on a queued event)."""
    validation.check_hold(request)
    request_key = (
        keys.request_key(request.event_id, request.holder_id, request.request_id)
        if request.request_id
        else ""
    )
    event_keys = keys.event_keys(request.event_id)
    queue = keys.queue_keys(request.event_id)
    return Call(
        SCRIPTS["hold"],
        (*event_keys, request_key or event_keys.meta, queue.queue, queue.admissions),
        (
            secrets.token_urlsafe(16),
            request.holder_id,
            validation.ttl_ms(request.ttl),
            request.request_id,
            *_hold_choice(request),
            admission,
        ),
    )


def _hold_choice(request: pb.HoldRequest) -> list[str | int]:
    """hold.lua's ARGV from 5 on: how the seats are chosen (checked by check_hold)."""
    if request.seat_ids:
        return ["seats", *request.seat_ids]
    if request.HasField("general_admission"):
        places = request.general_admission
        return ["area", places.area_id, places.quantity]
    wanted = request.best_available
    return [
        "best",
        wanted.quantity,
        wanted.category if wanted.HasField("category") else "*",
        wanted.section if wanted.HasField("section") else "*",
        wanted.wheelchair_spaces,
        int(wanted.allow_split),
    ]


def hold_response(request: pb.HoldRequest, reply: Any) -> pb.HoldResponse:
    reply = ok(reply)
    return pb.HoldResponse(
        hold=pb.Hold(
            hold_id=reply[1],
            event_id=request.event_id,
            holder_id=request.holder_id,
            seat_ids=reply[3],
            expires_at=timestamp(reply[2]),
        ),
        split=reply[4] == 1,
    )


# -- extend, release, confirm ---------------------------------------------------------------------


def extend_call(request: pb.ExtendRequest) -> Call:
    validation.check_hold_ref(request)
    return Call(
        SCRIPTS["extend"],
        keys.event_keys(request.event_id),
        (request.hold_id, request.holder_id, validation.ttl_ms(request.ttl)),
    )


def extend_response(request: pb.ExtendRequest, reply: Any) -> pb.ExtendResponse:
    reply = ok(reply)
    return pb.ExtendResponse(
        hold=pb.Hold(
            hold_id=request.hold_id,
            event_id=request.event_id,
            holder_id=request.holder_id,
            seat_ids=reply[2],
            expires_at=timestamp(reply[1]),
        )
    )


def release_call(request: pb.ReleaseRequest) -> Call:
    validation.check_hold_ref(request)
    return Call(
        SCRIPTS["release"],
        keys.event_keys(request.event_id),
        (request.hold_id, request.holder_id),
    )


def release_response(request: pb.ReleaseRequest, reply: Any) -> pb.ReleaseResponse:
    return pb.ReleaseResponse(seat_ids=ok(reply)[1])


def confirm_call(request: pb.ConfirmRequest) -> Call:
    validation.check_confirm(request)
    return Call(
        SCRIPTS["confirm"],
        (*keys.event_keys(request.event_id), keys.cancelled_key(request.event_id)),
        (
            request.hold_id,
            request.holder_id,
            str(uuid.uuid4()),
            request.payment_ref,
            request.request_id,
            request.event_id,
        ),
    )


def confirm_response(request: pb.ConfirmRequest, reply: Any) -> pb.ConfirmResponse:
    reply = ok(reply)
    return pb.ConfirmResponse(
        booking=pb.Booking(
            booking_id=reply[1],
            event_id=request.event_id,
            hold_id=request.hold_id,
            holder_id=request.holder_id,
            seat_ids=reply[3],
            confirmed_at=timestamp(reply[2]),
            payment_ref=reply[4],
        )
    )


# -- availability: a snapshot in bounded chunks (inventory/snapshots.py) ---------------------------

AVAILABILITY_CHUNK = 200  # HSCAN COUNT per availability_chunk call: keeps each call short
AVAILABILITY_SWEEP = 3  # due holds one availability_version call ends at most


@dataclass(frozen=True)
class Chunk:
    version: int  # the change-log version the states are as of
    cursor: str  # "0" when the scan is complete
    states: list[tuple[str, pb.SeatStatus.ValueType]]


def availability_chunk_call(event_id: str, cursor: str) -> Call:
    return Call(
        SCRIPTS["availability_chunk"], keys.event_keys(event_id), (cursor, AVAILABILITY_CHUNK)
    )


def availability_chunk_result(reply: Any) -> Chunk:
    reply = ok(reply)
    states = [(reply[i], _SEAT_STATUS[reply[i + 1][0]]) for i in range(3, len(reply), 2)]
    return Chunk(int(reply[1]), str(reply[2]), states)


@dataclass(frozen=True)
class Version:
    version: int
    more_due: bool  # the batch of due holds was full: call again before trusting `version`
    areas: list[tuple[str, int]]  # (area id, capacity) in the event's order
    created_at_ms: int  # tells a re-created event from the one a cache knew


def availability_version_call(event_id: str) -> Call:
    validation.check_event_id(event_id)
    return Call(SCRIPTS["availability_version"], keys.event_keys(event_id), (AVAILABILITY_SWEEP,))


def availability_version_result(reply: Any) -> Version:
    reply = ok(reply)
    areas = [(area[0], int(area[1])) for area in event_shape.stored_areas(reply[3])]
    return Version(int(reply[1]), reply[2] == 1, areas, int(reply[4]))


# -- cancel_booking -------------------------------------------------------------------------------


def cancel_booking_call(request: pb.CancelBookingRequest, seat_ids: Sequence[str]) -> Call:
    """`seat_ids`: the seats found booked by the booking (the script checks each again)."""
    validation.check_cancel_booking(request)
    return Call(
        SCRIPTS["cancel_booking"],
        (*keys.event_keys(request.event_id), keys.cancelled_key(request.event_id)),
        (request.booking_id, request.reason, request.event_id, *seat_ids),
    )


def cancel_booking_response(reply: Any) -> pb.CancelBookingResponse:
    reply = ok(reply)
    return pb.CancelBookingResponse(
        seat_ids=reply[1],
        cancelled_at=timestamp(reply[2]),
        already_cancelled=reply[3] == 0,
    )


# -- sweep ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Swept:
    expired: int
    more_due: bool  # the call stopped at a bound: more holds may be due


def sweep_call(event_id: str) -> Call:
    return Call(SCRIPTS["sweep"], keys.event_keys(event_id), (SWEEP_BATCH, SWEEP_SEATS))


def sweep_result(reply: Any) -> Swept | None:
    """None when there is nothing to sweep there: the event is gone, or the script failed."""
    if isinstance(reply, Exception) or reply[0] == "EVENT_NOT_FOUND":
        return None
    return Swept(int(reply[0]), reply[2] == 1)


# -- the waiting room: queue_configure, queue_join, queue_admit, queue_state (inventory/queue.py)


def queue_configure_call(request: pb.ConfigureQueueRequest) -> Call:
    """The request as inventory/queue.py checked it."""
    return Call(
        SCRIPTS["queue_configure"],
        (keys.queue_keys(request.event_id).queue, keys.event_keys(request.event_id).meta),
        (
            request.opens_at.ToMilliseconds(),
            request.admit_per_minute,
            request.max_active,
            request.admission_ttl.ToMilliseconds(),
            int(request.enabled),
        ),
    )


def queue_configure_done(reply: Any) -> None:
    ok(reply)


@dataclass(frozen=True)
class Place:
    """A buyer's ticket and where it stands, as queue_join answers."""

    ticket_id: str
    index: int  # in the line, 0-based; admitted when below `admitted`
    admitted: int
    opens_at_ms: int
    admission_expires_ms: int  # 0: no live admission
    admit_per_minute: int
    now_ms: int  # Redis's clock


def queue_join_call(event_id: str, buyer_id: str, ticket_id: str, rank: int) -> Call:
    queue = keys.queue_keys(event_id)
    return Call(
        SCRIPTS["queue_join"],
        (queue.queue, queue.line, queue.buyers, queue.tickets, queue.admissions),
        (buyer_id, ticket_id, rank),
    )


def queue_join_place(reply: Any) -> Place:
    _, ticket_id, *numbers = ok(reply)
    index, admitted, opens_at, expires, per_minute, now = (int(n) for n in numbers)
    return Place(ticket_id, index, admitted, opens_at, expires, per_minute, now)


@dataclass(frozen=True)
class AdmitTick:
    admitted_now: int
    admitted: int  # in all
    active: int  # admissions live
    waiting: int
    waits_ms: list[int]  # of the buyers admitted by this call


def queue_admit_call(event_id: str, batch: int) -> Call:
    queue = keys.queue_keys(event_id)
    return Call(
        SCRIPTS["queue_admit"],
        (queue.queue, queue.line, queue.tickets, queue.admissions),
        (batch,),
    )


def queue_admit_tick(reply: Any) -> AdmitTick:
    admitted_now, admitted, active, waiting, *waits = (int(value) for value in ok(reply)[1:])
    return AdmitTick(admitted_now, admitted, active, waiting, waits)


def queue_state_call(event_id: str, state: str) -> Call:
    """`state`: "paused", "open" (resume) or "closed"."""
    return Call(SCRIPTS["queue_state"], (keys.queue_keys(event_id).queue,), (state,))


def queue_state_done(reply: Any) -> None:
    ok(reply)
