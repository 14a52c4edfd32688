"""What CreateEvent stores must also fit where the booking worker copies it: Postgres `integer`
columns for the seat limits, text without NUL (Postgres refuses it) for every id and label.

An event that Redis accepts and Postgres refuses can never be synced; these checks keep such
input out at the door. The HTTP gateway bounds its models with the same constants.
"""

import re
from collections.abc import Iterable, Iterator

from google.protobuf.duration_pb2 import Duration
from lml.inventory.v1 import inventory_pb2 as pb

from inventory.errors import invalid

# A hold never takes more seats than one request may name.
MAX_SEATS_PER_HOLD = 1_000
# No holder holds more seats than the largest event has (validation.MAX_SEATS_PER_EVENT).
MAX_SEATS_PER_HOLDER = 200_000
# Longest TTL and hold lifetime: a week, far beyond any checkout and far below Redis's limits.
MAX_DURATION_SECONDS = 7 * 24 * 3600

# Unicode control characters (C0, DEL, C1): NUL breaks Postgres text, the rest break logs and
# seat maps, and none belongs in an id or a label.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_text(value: str, what: str) -> None:
    if _CONTROL.search(value):
        raise invalid(f"{what} {value!r} contains a control character")


def check_texts(values: Iterable[tuple[str, str]]) -> None:
    """Checks (value, what) pairs."""
    for value, what in values:
        check_text(value, what)


def _event_values(request: pb.CreateEventRequest) -> Iterator[str]:
    yield request.event_id
    for seat in request.seats:
        yield from (seat.seat_id, seat.section, seat.row, seat.number, seat.category)
    for area in request.areas:
        yield from (area.area_id, area.category)


def _event_texts(request: pb.CreateEventRequest) -> Iterator[tuple[str, str]]:
    """Every id and label of a CreateEvent request, with what it is."""
    yield request.event_id, "event_id"
    for seat in request.seats:
        yield seat.seat_id, "seat_id"
        yield seat.section, f"seat {seat.seat_id!r}: section"
        yield seat.row, f"seat {seat.seat_id!r}: row"
        yield seat.number, f"seat {seat.seat_id!r}: number"
        yield seat.category, f"seat {seat.seat_id!r}: category"
    for area in request.areas:
        yield area.area_id, "area_id"
        yield area.category, f"area {area.area_id!r}: category"


def _check_duration(duration: Duration, what: str) -> None:
    if duration.seconds > MAX_DURATION_SECONDS or (
        duration.seconds == MAX_DURATION_SECONDS and duration.nanos > 0
    ):
        raise invalid(f"limits.{what} is longer than {MAX_DURATION_SECONDS} s (7 days)")


def check_limits(limits: pb.EventLimits) -> None:
    """Bounds on every limit (zero still means the default)."""
    if limits.max_seats_per_hold > MAX_SEATS_PER_HOLD:
        raise invalid(f"limits.max_seats_per_hold must be at most {MAX_SEATS_PER_HOLD}")
    if limits.max_seats_per_holder > MAX_SEATS_PER_HOLDER:
        raise invalid(f"limits.max_seats_per_holder must be at most {MAX_SEATS_PER_HOLDER}")
    for name in ("default_ttl", "max_ttl", "max_hold_lifetime"):
        _check_duration(getattr(limits, name), name)


def check_event(request: pb.CreateEventRequest) -> None:
    check_limits(request.limits)
    # One pass over everything (200,000 seats: a few hundred ms), then the culprit named.
    if _CONTROL.search("".join(_event_values(request))):
        check_texts(_event_texts(request))
