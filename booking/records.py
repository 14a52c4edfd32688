"""Stream entries and what they mean: outbox records and change-log rows, parsed and checked.

Their fields are documented in lua/RECORDS.md.

A malformed entry raises BadEntry with the reason; the consumer leaves it unacknowledged, so it
is retried and, after enough deliveries, dead-lettered with that reason.
"""

import json
from dataclasses import dataclass


class BadEntry(ValueError):
    """An entry that can never be applied as it is."""


@dataclass(frozen=True)
class Entry:
    """One stream entry as read from Redis."""

    stream: str
    event_id: str
    entry_id: str
    fields: dict[str, str]


@dataclass(frozen=True)
class BookingRecord:
    entry_id: str
    booking_id: str
    event_id: str
    hold_id: str
    holder_id: str
    seat_ids: tuple[str, ...]
    payment_ref: str
    request_id: str
    confirmed_at_ms: int
    version: int


@dataclass(frozen=True)
class CancelRecord:
    entry_id: str
    booking_id: str
    event_id: str
    reason: str
    cancelled_at_ms: int


@dataclass(frozen=True)
class SeatChange:
    """One seat's row in the audit log."""

    event_id: str
    seat_id: str
    version: int
    reason: str
    status: str
    hold_id: str
    holder_id: str
    booking_id: str
    at_ms: int


OutboxRecord = BookingRecord | CancelRecord


def _field(entry: Entry, name: str) -> str:
    try:
        return entry.fields[name]
    except KeyError:
        raise BadEntry(f"field {name!r} is missing") from None


def _int(entry: Entry, name: str) -> int:
    try:
        return int(_field(entry, name))
    except ValueError:
        raise BadEntry(f"field {name!r} is not an integer") from None


def _seat_ids(entry: Entry, name: str) -> tuple[str, ...]:
    try:
        seats = json.loads(_field(entry, name))
    except json.JSONDecodeError:
        raise BadEntry(f"field {name!r} is not JSON") from None
    # cjson encodes an empty Lua table as {}.
    if seats == {}:
        seats = []
    if not isinstance(seats, list) or not all(isinstance(s, str) and s for s in seats):
        raise BadEntry(f"field {name!r} is not a list of seat ids")
    return tuple(dict.fromkeys(seats))


def _check_event(entry: Entry) -> str:
    event_id = _field(entry, "event_id")
    if event_id != entry.event_id:
        raise BadEntry(f"event_id {event_id!r} in the outbox of event {entry.event_id!r}")
    return event_id


def parse_outbox(entry: Entry) -> OutboxRecord:
    kind = _field(entry, "kind")
    if kind == "confirmed":
        return BookingRecord(
            entry_id=entry.entry_id,
            booking_id=_field(entry, "booking_id"),
            event_id=_check_event(entry),
            hold_id=_field(entry, "hold_id"),
            holder_id=_field(entry, "holder_id"),
            seat_ids=_seat_ids(entry, "seat_ids"),
            payment_ref=_field(entry, "payment_ref"),
            request_id=entry.fields.get("request_id", ""),
            confirmed_at_ms=_int(entry, "confirmed_at"),
            version=_int(entry, "version"),
        )
    if kind == "cancelled":
        return CancelRecord(
            entry_id=entry.entry_id,
            booking_id=_field(entry, "booking_id"),
            event_id=_check_event(entry),
            reason=entry.fields.get("reason", ""),
            cancelled_at_ms=_int(entry, "cancelled_at"),
        )
    raise BadEntry(f"unknown outbox kind {kind!r}")


def parse_change(entry: Entry) -> list[SeatChange]:
    """The audit rows of one change-log entry (id "0-<version>"): one per seat it changed."""
    try:
        version = int(entry.entry_id.split("-", 1)[1])
    except (IndexError, ValueError):
        raise BadEntry(f"change-log entry id {entry.entry_id!r} is not 0-<version>") from None
    reason, status = _field(entry, "reason"), _field(entry, "status")
    hold_id, holder_id = entry.fields.get("hold_id", ""), entry.fields.get("holder_id", "")
    booking_id, at_ms = entry.fields.get("booking_id", ""), _int(entry, "changed_at")
    return [
        SeatChange(
            entry.event_id, seat, version, reason, status, hold_id, holder_id, booking_id, at_ms
        )
        for seat in _seat_ids(entry, "seat_ids")
    ]
