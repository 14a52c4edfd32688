"""The rules a layout must follow before it can be published, each reported in plain words."""

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator

from inventory.layouts.canonical import seat_id
from inventory.layouts.errors import LayoutInvalid
from inventory.layouts.model import Layout, LayoutType, PlacedSeat

# Two seats closer than this (in normalized units) are "on the same spot": a thousandth of
# the plan is far below any real seat's width.
MIN_SEAT_DISTANCE = 0.001


def where(placed: PlacedSeat) -> str:
    return f"section {placed.section.id!r} row {placed.row.label!r} seat {placed.seat.number!r}"


def _duplicates(values: Iterable[str]) -> list[str]:
    return sorted(value for value, count in Counter(values).items() if count > 1)


def _unique(what: str, values: Iterable[str]) -> Iterator[str]:
    for value in _duplicates(values):
        yield f"{what} {value!r} is used more than once"


def unique_ids_and_labels(layout: Layout) -> Iterator[str]:
    yield from _unique("category id", (c.id for c in layout.categories))
    yield from _unique("category label", (c.label for c in layout.categories))
    areas = [(s.id, s.label) for s in layout.sections] + [(a.id, a.label) for a in layout.ga_areas]
    yield from _unique("section or area id", (area_id for area_id, _ in areas))
    yield from _unique("section or area label", (label for _, label in areas))
    for section in layout.sections:
        yield from _unique(f"section {section.id!r}: row", (r.label for r in section.rows))
        for row in section.rows:
            where_row = f"section {section.id!r} row {row.label!r}: seat number"
            yield from _unique(where_row, (s.number for s in row.seats))
    yield from _unique("seat label", (p.seat.label for p in layout.seats() if p.seat.label))
    ids = (
        seat_id(str(layout.id), p.section.id, p.row.label, p.seat.number) for p in layout.seats()
    )
    yield from _unique("seat id", ids)


def _outside(value: float) -> bool:
    return not 0.0 <= value <= 1.0


def coordinates_in_range(layout: Layout) -> Iterator[str]:
    for placed in layout.seats():
        for axis in ("x", "y"):
            value = getattr(placed.seat, axis)
            if _outside(value):
                yield f"{where(placed)}: {axis} {value} is outside [0, 1]"
    for area in layout.ga_areas:
        corners = (area.x, area.y, area.x + area.width, area.y + area.height)
        if any(_outside(value) for value in corners):
            yield f"area {area.id!r}: its rectangle reaches outside [0, 1]"


def no_two_seats_on_one_spot(layout: Layout) -> Iterator[str]:
    # A grid of cells one MIN_SEAT_DISTANCE wide: only seats in neighbouring cells can clash,
    # which keeps the check linear on a 100,000-seat venue.
    grid: dict[tuple[int, int], list[PlacedSeat]] = defaultdict(list)
    for placed in layout.seats():
        x, y = placed.seat.x, placed.seat.y
        cell = (math.floor(x / MIN_SEAT_DISTANCE), math.floor(y / MIN_SEAT_DISTANCE))
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for other in grid.get((cell[0] + dx, cell[1] + dy), ()):
                    if math.dist((x, y), (other.seat.x, other.seat.y)) < MIN_SEAT_DISTANCE:
                        yield f"{where(placed)} is on the same spot as {where(other)}"
        grid[cell].append(placed)


def categories_exist(layout: Layout) -> Iterator[str]:
    known = {category.id for category in layout.categories}
    for placed in layout.seats():
        if placed.seat.category not in known:
            yield f"{where(placed)}: category {placed.seat.category!r} does not exist"
    for area in layout.ga_areas:
        if area.category not in known:
            yield f"area {area.id!r}: category {area.category!r} does not exist"


def companions_beside_wheelchair_spaces(layout: Layout) -> Iterator[str]:
    for placed in layout.seats():
        seat, seats = placed.seat, placed.row.seats
        if seat.wheelchair and seat.companion:
            yield f"{where(placed)} cannot be both a wheelchair space and a companion seat"
        elif seat.companion:
            neighbours = seats[max(placed.position - 1, 0) : placed.position + 2]
            if not any(neighbour.wheelchair for neighbour in neighbours):
                yield f"{where(placed)} is a companion seat with no wheelchair space beside it"


def references_exist(layout: Layout) -> Iterator[str]:
    sections = {section.id for section in layout.sections}
    for name in layout.ranking.section_priority:
        if name not in sections:
            yield f"ranking: section_priority names section {name!r}, which does not exist"


def fits_its_type(layout: Layout) -> Iterator[str]:
    has_seats = any(True for _ in layout.seats())
    has_areas = bool(layout.ga_areas)
    if layout.type in (LayoutType.SEATED, LayoutType.HYBRID) and not has_seats:
        yield f"a {layout.type} layout needs at least one seat"
    if layout.type in (LayoutType.STANDING, LayoutType.HYBRID) and not has_areas:
        yield f"a {layout.type} layout needs at least one general-admission area"
    if layout.type == LayoutType.SEATED and has_areas:
        yield "a seated layout has no general-admission areas (make it hybrid)"
    if layout.type == LayoutType.STANDING and has_seats:
        yield "a standing layout has no seats (make it hybrid)"
    for section in layout.sections:
        for row in section.rows:
            if not row.seats:
                yield f"section {section.id!r} row {row.label!r} has no seats"


RULES: tuple[Callable[[Layout], Iterator[str]], ...] = (
    unique_ids_and_labels,
    coordinates_in_range,
    no_two_seats_on_one_spot,
    categories_exist,
    companions_beside_wheelchair_spaces,
    references_exist,
    fits_its_type,
)


def problems(layout: Layout) -> list[str]:
    """Every broken rule, in the order of RULES; empty when the layout is valid."""
    return [message for rule in RULES for message in rule(layout)]


def check(layout: Layout) -> None:
    found = problems(layout)
    if found:
        raise LayoutInvalid(found)
