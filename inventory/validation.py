"""Input checks: every request is checked here before anything reaches Redis, and refused with
INVALID_ARGUMENT naming the field at fault."""

import re
from collections.abc import Sequence

from google.protobuf.duration_pb2 import Duration
from lml.inventory.v1 import inventory_pb2 as pb

from inventory import bounds, event_shape
from inventory.errors import invalid

DEFAULT_LIMITS = pb.EventLimits(
    max_seats_per_hold=10,
    max_seats_per_holder=20,
    default_ttl=Duration(seconds=15 * 60),
    max_ttl=Duration(seconds=30 * 60),
    max_hold_lifetime=Duration(seconds=2 * 3600),
)
MAX_SEATS_PER_EVENT = 200_000
MAX_SEATS_PER_REQUEST = 1_000  # beyond any event's limit: refused before reaching Redis
MAX_ID_LENGTH = event_shape.MAX_ID_LENGTH
MAX_TEXT_LENGTH = 256  # payment references, cancellation reasons
# Event ids go inside a Redis Cluster hash tag, so braces are out.
_EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")

HoldRef = pb.ExtendRequest | pb.ReleaseRequest | pb.ConfirmRequest


def check_id(value: str, name: str) -> None:
    if not value:
        raise invalid(f"{name} is required")
    if len(value) > MAX_ID_LENGTH:
        raise invalid(f"{name} is longer than {MAX_ID_LENGTH} characters")
    bounds.check_text(value, name)


def check_event_id(event_id: str) -> None:
    check_id(event_id, "event_id")
    if not _EVENT_ID.fullmatch(event_id):
        raise invalid("event_id may hold only letters, digits and . _ : -")


def check_seat_ids(seat_ids: Sequence[str], limit: int = MAX_SEATS_PER_REQUEST) -> None:
    if not seat_ids:
        raise invalid("seat_ids is empty")
    if len(seat_ids) > limit:
        raise invalid(f"more than {limit} seat ids in one request")
    if len(set(seat_ids)) != len(seat_ids):
        raise invalid("seat_ids lists a seat more than once")
    for seat_id in seat_ids:
        check_id(seat_id, "seat_id")


def ttl_ms(duration: Duration) -> int:
    """A TTL in milliseconds; zero means the event's default."""
    ms = duration.seconds * 1000 + duration.nanos // 1_000_000
    if ms < 0 or (ms == 0 and duration.nanos > 0):
        raise invalid("ttl must be zero (the event's default) or at least 1 ms")
    return ms


def _check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_ID_LENGTH:
        raise invalid(f"request_id is longer than {MAX_ID_LENGTH} characters")
    bounds.check_text(request_id, "request_id")


def _check_text(value: str, name: str) -> None:
    if len(value) > MAX_TEXT_LENGTH:
        raise invalid(f"{name} is longer than {MAX_TEXT_LENGTH} characters")
    bounds.check_text(value, name)


def resolve_limits(limits: pb.EventLimits) -> pb.EventLimits:
    """The event's limits with every unset field taken from DEFAULT_LIMITS, checked."""
    resolved = pb.EventLimits()
    resolved.CopyFrom(DEFAULT_LIMITS)
    # Field by field, each set field replacing its default whole: MergeFrom would merge a
    # Duration's seconds and nanos apart, so 150 ms over a 15 min default made 900.15 s.
    for field, value in limits.ListFields():
        if field.message_type is None:
            setattr(resolved, field.name, value)
        elif value.ByteSize():  # a zero Duration takes the default, as an unset one does
            getattr(resolved, field.name).CopyFrom(value)
    default_ttl, max_ttl = ttl_ms(resolved.default_ttl), ttl_ms(resolved.max_ttl)
    if not 0 < default_ttl <= max_ttl <= ttl_ms(resolved.max_hold_lifetime):
        raise invalid("limits need 0 < default_ttl <= max_ttl <= max_hold_lifetime")
    return resolved


def check_create_event(request: pb.CreateEventRequest) -> None:
    """The checks of the request as a whole; event_shape checks each seat and area."""
    check_event_id(request.event_id)
    bounds.check_event(request)
    places = sum(area.capacity for area in request.areas)
    if len(request.seats) + places > MAX_SEATS_PER_EVENT:
        raise invalid(f"more than {MAX_SEATS_PER_EVENT} seats and places")
    if not request.seats and not places:
        raise invalid("the event has no seats and no areas")
    if request.seats:
        check_seat_ids([seat.seat_id for seat in request.seats], MAX_SEATS_PER_EVENT)


def check_hold(request: pb.HoldRequest) -> None:
    check_event_id(request.event_id)
    check_id(request.holder_id, "holder_id")
    _check_choice(request)
    _check_request_id(request.request_id)


def _check_choice(request: pb.HoldRequest) -> None:
    """Exactly one way of choosing the seats, and a sound one."""
    best, area = request.HasField("best_available"), request.HasField("general_admission")
    if bool(request.seat_ids) + best + area != 1:
        raise invalid("give exactly one of seat_ids, best_available, general_admission")
    if request.seat_ids:
        check_seat_ids(request.seat_ids)
    elif area:
        places = request.general_admission
        check_id(places.area_id, "general_admission.area_id")
        if not 1 <= places.quantity <= MAX_SEATS_PER_REQUEST:
            raise invalid(f"general_admission.quantity must be 1 to {MAX_SEATS_PER_REQUEST}")
    else:
        _check_best_available(request.best_available)


def _check_best_available(wanted: pb.BestAvailable) -> None:
    if not 1 <= wanted.quantity <= event_shape.MAX_BLOCK:
        raise invalid(f"best_available.quantity must be 1 to {event_shape.MAX_BLOCK}")
    if wanted.wheelchair_spaces > wanted.quantity:
        raise invalid("best_available.wheelchair_spaces is more than its quantity")
    if wanted.wheelchair_spaces and wanted.allow_split:
        raise invalid("best_available.allow_split cannot be combined with wheelchair_spaces")
    for name in ("category", "section"):
        if wanted.HasField(name):
            check_id(getattr(wanted, name), f"best_available.{name}")


def check_hold_ref(request: HoldRef) -> None:
    """The hold an extend, release or confirm names, and who asks."""
    check_event_id(request.event_id)
    check_id(request.hold_id, "hold_id")
    check_id(request.holder_id, "holder_id")


def check_confirm(request: pb.ConfirmRequest) -> None:
    check_hold_ref(request)
    _check_text(request.payment_ref, "payment_ref")
    _check_request_id(request.request_id)


def check_cancel_booking(request: pb.CancelBookingRequest) -> None:
    check_event_id(request.event_id)
    check_id(request.booking_id, "booking_id")
    _check_text(request.reason, "reason")
