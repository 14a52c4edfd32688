"""An event's shape, as the create scripts take it (create_event.lua, build_seats.lua,
build_rows.lua): its seats and general-admission places with their descriptions, and its rows
(seats left to right with their ranks, kinds and categories) for best available.

Seats of one (section, row) are adjacent in the order the request lists them; a seat's rank is
its own or, when unset, its position in the request, so an event created without ranks fills
from its first seat. Seats without a row (plain seat ids) belong to no row: they are held by id,
and best available never picks them.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lml.inventory.v1 import inventory_pb2 as pb

from inventory.errors import invalid

MAX_BLOCK = 30  # the most adjacent seats one best-available request picks
MAX_ROW_LENGTH = 500  # a row is read whole on each refresh: keep that bounded
MAX_ID_LENGTH = 128
MAX_RANK = (
    9_999_999  # ranks are written with 7 digits in the index, so that text order is rank order
)
# Separators and wildcards of the index members (lua/includes/free_index.lua).
_RESERVED = ("|", "*")


def place_id(area_id: str, number: int | str) -> str:
    """A general-admission place's seat id; `place_id(area, "")` is the prefix of them all."""
    return f"{area_id}#{number}"


def area_of_place(place: str) -> str:
    return place.rpartition("#")[0]


def stored_areas(encoded: str) -> list[list[Any]]:
    """The event's areas as create_event.lua stores them: [area id, capacity, category, ...]."""
    # Lua's cjson writes an empty list as {}.
    return json.loads(encoded) or []


def bucket_cap(max_seats_per_hold: int) -> int:
    """Runs this long or longer share the index's last length bucket (free_index.lua)."""
    return min(max_seats_per_hold, MAX_BLOCK) + 2


def _check_name(value: str, what: str) -> None:
    if any(mark in value for mark in _RESERVED):
        raise invalid(f"{what} {value!r} contains '|' or '*'")


def _kind(seat: pb.Seat) -> str:
    if seat.wheelchair and seat.companion:
        raise invalid(f"seat {seat.seat_id} is both a wheelchair space and a companion seat")
    return "W" if seat.wheelchair else "C" if seat.companion else "S"


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass
class _Row:
    section: str
    seat_ids: list[str] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        return _json(
            {
                "section": self.section,
                "seat_ids": self.seat_ids,
                "ranks": self.ranks,
                "kinds": self.kinds,
                "categories": self.categories,
            }
        )


def _rows(seats: Sequence[pb.Seat]) -> tuple[list[_Row], list[int]]:
    """The rows, numbered from 1 in order of appearance, and each seat's row number (0 for a
    seat without a row)."""
    numbers: dict[tuple[str, str], int] = {}
    rows: list[_Row] = []
    row_of: list[int] = []
    for index, seat in enumerate(seats):
        _check_name(seat.section, "section")
        _check_name(seat.category, "category")
        if seat.HasField("rank") and not 1 <= seat.rank <= MAX_RANK:
            raise invalid(f"seat {seat.seat_id}: rank must be 1 to {MAX_RANK}")
        if not seat.row:
            row_of.append(0)
            continue
        number = numbers.setdefault((seat.section, seat.row), len(rows) + 1)
        if number > len(rows):
            rows.append(_Row(seat.section))
        row = rows[number - 1]
        if len(row.seat_ids) == MAX_ROW_LENGTH:
            raise invalid(f"row {seat.row!r} of {seat.section!r} has over {MAX_ROW_LENGTH} seats")
        row.seat_ids.append(seat.seat_id)
        row.ranks.append(seat.rank if seat.HasField("rank") else index + 1)
        row.kinds.append(_kind(seat))
        row.categories.append(seat.category)
        row_of.append(number)
    return rows, row_of


# One seat or place as build_seats.lua takes it: its id, its description (lua/RECORDS.md), and
# its area's number (1-based) for a place, 0 for a seat.
Entry = tuple[str, str, int]


def _seat_entries(seats: Sequence[pb.Seat]) -> tuple[list[Entry], list[_Row]]:
    """The seats as entries, and the rows."""
    rows, row_of = _rows(seats)
    entries: list[Entry] = []
    for index, (seat, number) in enumerate(zip(seats, row_of, strict=True)):
        info: dict[str, object] = {
            "order": index,
            "section": seat.section,
            "row": seat.row,
            "number": seat.number,
            "kind": _kind(seat),
        }
        if number:
            info["row_no"] = number
        # Only what the request said, so that GetEvent gives back the request that was made.
        if seat.HasField("rank"):
            info["rank"] = seat.rank
        if seat.HasField("category"):
            info["category"] = seat.category
        entries.append((seat.seat_id, _json(info), 0))
    return entries, rows


def _place_entries(
    areas: Sequence[pb.GeneralAdmissionArea], first_index: int, seat_ids: set[str]
) -> list[Entry]:
    entries: list[Entry] = []
    if len({area.area_id for area in areas}) != len(areas):
        raise invalid("areas lists an area id more than once")
    for area_index, area in enumerate(areas, start=1):
        if not area.area_id or len(area.area_id) > MAX_ID_LENGTH:
            raise invalid(f"area_id must have 1 to {MAX_ID_LENGTH} characters")
        _check_name(area.area_id, "area_id")
        _check_name(area.category, "category")
        if area.capacity == 0:
            raise invalid(f"area {area.area_id} has no capacity")
        for number in range(1, area.capacity + 1):
            place = place_id(area.area_id, number)
            if place in seat_ids:
                raise invalid(f"seat id {place} is also a place of area {area.area_id}")
            info = {
                "order": first_index + len(entries),
                "section": area.area_id,
                "row": "",
                "number": str(number),
                "area_no": area_index,
            }
            if area.HasField("category"):
                info["category"] = area.category
            entries.append((place, _json(info), area_index))
    return entries


@dataclass(frozen=True)
class Shape:
    summary: str  # create_event.lua's ARGV[9]: counts, areas, names requests may use
    entries: list[Entry]  # seats, then places, in request order
    rows: list[str]  # each row's JSON (lua/RECORDS.md), rows numbered from 1
    row_lengths: list[int]  # seats per row: what indexing a row costs


def shape_of(request: pb.CreateEventRequest, max_seats_per_hold: int) -> Shape:
    """The event's shape as the create scripts take it (checked: raises INVALID_ARGUMENT)."""
    seat_entries, rows = _seat_entries(request.seats)
    place_entries = _place_entries(
        request.areas, len(request.seats), {entry[0] for entry in seat_entries}
    )
    summary = {
        "seat_count": len(request.seats),
        "entries": len(seat_entries) + len(place_entries),
        "rows": len(rows),
        "bucket_cap": bucket_cap(max_seats_per_hold),
        "areas": [[a.area_id, a.capacity, a.category] for a in request.areas],
        "categories": sorted(
            {s.category for s in request.seats if s.HasField("category")}
            | {a.category for a in request.areas if a.HasField("category")}
        ),
        "sections": sorted({seat.section for seat in request.seats if seat.row}),
        "row_categories": sorted({seat.category for seat in request.seats if seat.row}),
        "rowless_sections": sorted(
            {seat.section for seat in request.seats if not seat.row}
            - {seat.section for seat in request.seats if seat.row}
        ),
    }
    return Shape(
        _json(summary),
        seat_entries + place_entries,
        [row.as_json() for row in rows],
        [len(row.seat_ids) for row in rows],
    )
