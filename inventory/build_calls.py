"""How the scripts that build an event are called and what their replies mean, one call builder
and one reply parser per script (as ``script_calls`` has for the others): create_event opens a
build, build_seats and build_rows fill it in bounded chunks, build_commit makes it visible, and
restore_event books seats again, into a build or into an event (lua/includes/building.lua).
``event_build`` runs them in order.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lml.inventory.v1 import inventory_pb2 as pb

from inventory import event_shape, keys, validation
from inventory.script_calls import CHANGELOG_MAX, SCRIPTS, ok
from inventory.scripts import Call

# How long a build outlives its last chunk: a create whose caller died is dropped by Redis then,
# unless a retry takes it up before.
STAGING_TTL_MS = 10 * 60 * 1000


@dataclass(frozen=True)
class Build:
    """One create request, checked, as the build scripts take it."""

    event_id: str
    fingerprint: str  # SHA-256 of the canonical request: identical input, identical event
    settings: tuple[int, ...]  # create_event.lua's ARGV[3..8]
    shape: event_shape.Shape


def build_of(request: pb.CreateEventRequest) -> Build:
    """The request checked (raises INVALID_ARGUMENT), its limits resolved to their defaults."""
    validation.check_create_event(request)
    limits = validation.resolve_limits(request.limits)
    canonical = pb.CreateEventRequest()
    canonical.CopyFrom(request)
    canonical.limits.CopyFrom(limits)
    fingerprint = hashlib.sha256(canonical.SerializeToString(deterministic=True)).hexdigest()
    settings = (
        limits.max_seats_per_hold,
        limits.max_seats_per_holder,
        validation.ttl_ms(limits.default_ttl),
        validation.ttl_ms(limits.max_ttl),
        validation.ttl_ms(limits.max_hold_lifetime),
        CHANGELOG_MAX,
    )
    shape = event_shape.shape_of(request, limits.max_seats_per_hold)
    return Build(request.event_id, fingerprint, settings, shape)


# -- create_event: opens the build ----------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where a build stands: what its chunks wrote so far."""

    entries: int  # seats and places, in request order
    rows: int


def create_event_call(build: Build) -> Call:
    return Call(
        SCRIPTS["create_event"],
        keys.build_keys(build.event_id),
        (build.fingerprint, STAGING_TTL_MS, *build.settings, build.shape.summary),
    )


def create_event_progress(reply: Any) -> Progress | None:
    """None when the event exists with identical input, else the build to go on with."""
    reply = ok(reply)
    if reply[1] == 0:
        return None
    return Progress(int(reply[2]), int(reply[3]))


# -- build_seats, build_rows, build_commit: one chunk each ----------------------------------------


def build_seats_call(build: Build, first: int, last: int) -> Call:
    """Entries `first` to `last` (counted from 1, as the script counts them)."""
    args: list[str | int] = [build.fingerprint, STAGING_TTL_MS, first]
    for entry in build.shape.entries[first - 1 : last]:
        args += entry
    return Call(SCRIPTS["build_seats"], keys.build_keys(build.event_id), args)


def build_seats_done(reply: Any) -> int:
    """Seats and places written so far."""
    return int(ok(reply)[1])


def build_rows_call(build: Build, first: int, last: int) -> Call:
    """Rows `first` to `last` (counted from 1)."""
    rows = build.shape.rows[first - 1 : last]
    return Call(
        SCRIPTS["build_rows"],
        keys.build_keys(build.event_id),
        (build.fingerprint, STAGING_TTL_MS, first, *rows),
    )


def build_rows_done(reply: Any) -> int:
    """Rows written so far."""
    return int(ok(reply)[1])


def build_commit_call(build: Build) -> Call:
    return Call(SCRIPTS["build_commit"], keys.build_keys(build.event_id), (build.fingerprint,))


def build_commit_done(reply: Any) -> None:
    ok(reply)


# -- restore_event: one chunk of whole bookings ---------------------------------------------------


@dataclass(frozen=True)
class Restored:
    restored: int  # seats booked again
    already_booked: int  # seats already booked by their booking
    cancelled: int  # seats left available: their booking was cancelled in Redis
    conflicts: list[tuple[str, str]]  # (seat id, its value in Redis): left as they are

    def __add__(self, other: "Restored") -> "Restored":
        return Restored(
            self.restored + other.restored,
            self.already_booked + other.already_booked,
            self.cancelled + other.cancelled,
            self.conflicts + other.conflicts,
        )


def restore_event_call(
    build: Build, building: bool, version_floor: int, bookings: Mapping[str, Sequence[str]]
) -> Call:
    """`bookings`: booking id -> its seat ids, as Postgres holds them; `building`: into the
    build of the event (not yet visible), else into the event itself."""
    event_keys = keys.event_keys(build.event_id)
    settings = keys.building_key(build.event_id) if building else event_keys.meta
    args: list[str | int] = [
        build.fingerprint,
        STAGING_TTL_MS if building else 0,
        version_floor,
    ]
    for booking_id, seat_ids in bookings.items():
        args += [booking_id, json.dumps(sorted(seat_ids))]
    return Call(
        SCRIPTS["restore_event"],
        (settings, *event_keys[1:], keys.cancelled_key(build.event_id)),
        args,
    )


def restore_event_result(reply: Any) -> Restored:
    reply = ok(reply)
    conflicts = [(seat, value) for seat, value in json.loads(reply[3])]
    return Restored(int(reply[1]), int(reply[2]), int(reply[4]), conflicts)
