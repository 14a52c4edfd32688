"""A realistic sample venue: an opera house of about 2,000 seats, for the demo and benchmarks.

Four tiers of curved rows, all arcs around one centre behind the stage (so rows of different
tiers can never cross), each tier cut by two aisles into Left, Centre and Right sections; two
columns of boxes on each side; wheelchair spaces with companion seats at the back of the stalls
and the front of the dress circle; restricted-view seats at the outer ends of the upper tiers.
"""

import math
import uuid
from dataclasses import dataclass

from inventory.layouts.model import Category, Layout, Ranking, Row, Seat, Section, Viewport

DEFAULT_ID = uuid.uuid5(uuid.NAMESPACE_URL, "https://lml.example/venues/opera-house")
WIDTH, HEIGHT = 1200.0, 1000.0
CENTRE = (600.0, -300.0)  # the arcs' centre, above the plan behind the stage
PITCH = 11.0  # seat width along an arc, in viewport units
AISLE = 2.5  # an aisle is this many seat widths
ROW_LABELS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # I and O look like digits on a ticket

CATEGORIES = (
    Category(id="A", label="Premium", color="#b71c1c"),
    Category(id="B", label="Standard", color="#1565c0"),
    Category(id="C", label="Upper circle", color="#2e7d32"),
    Category(id="D", label="Balcony", color="#f9a825"),
    Category(id="BOX", label="Boxes", color="#6a1b9a"),
)


@dataclass(frozen=True)
class Tier:
    id: str
    label: str
    first_radius: float
    row_spacing: float
    rows: int
    first_row_seats: int
    premium_rows: int  # front rows of the centre section sold as category A
    category: str


TIERS = (
    Tier("stalls", "Stalls", 400, 16, 22, 24, 12, "B"),
    Tier("dress-circle", "Dress Circle", 800, 15, 9, 38, 5, "B"),
    Tier("upper-circle", "Upper Circle", 960, 15, 10, 42, 0, "C"),
    Tier("balcony", "Balcony", 1135, 15, 8, 44, 0, "D"),
)
PARTS = ("left", "centre", "right")


def _point(radius: float, angle: float) -> tuple[float, float]:
    x = CENTRE[0] + radius * math.sin(angle)
    y = CENTRE[1] + radius * math.cos(angle)
    return round(x / WIDTH, 6), round(y / HEIGHT, 6)


def _row_parts(count: int) -> tuple[int, int, int]:
    side = round(count * 0.25)
    return side, count - 2 * side, side


def _tier_rows(tier: Tier, row_index: int) -> dict[str, list[Seat]]:
    """One row of a tier, split into its left, centre and right parts (numbered across)."""
    radius = tier.first_radius + row_index * tier.row_spacing
    counts = _row_parts(tier.first_row_seats + row_index)
    step = PITCH / radius
    span = (sum(counts) - 1 + 2 * (AISLE - 1)) * step
    angle, number, label = -span / 2, 1, ROW_LABELS[row_index]
    parts: dict[str, list[Seat]] = {}
    for part, count in zip(PARTS, counts, strict=True):
        seats = []
        for _ in range(count):
            x, y = _point(radius, angle)
            category = tier.category
            if part == "centre" and row_index < tier.premium_rows:
                category = "A"
            seats.append(
                Seat(
                    number=str(number),
                    label=f"{tier.label} {label}{number}",
                    x=x,
                    y=y,
                    category=category,
                )
            )
            angle += step
            number += 1
        parts[part] = seats
        angle += (AISLE - 1) * step
    return parts


def _mark(seats: list[Seat], index: int, **flags: bool) -> None:
    seats[index] = seats[index].model_copy(update=flags)


def _accessibility(tier: Tier, row_index: int, parts: dict[str, list[Seat]]) -> None:
    """Wheelchair spaces beside the aisles, each with a companion seat next to it."""
    stalls_back = tier.id == "stalls" and row_index == tier.rows - 1
    circle_front = tier.id == "dress-circle" and row_index == 0
    if stalls_back or circle_front:
        _mark(parts["left"], -1, wheelchair=True)
        _mark(parts["left"], -2, companion=True)
        _mark(parts["right"], 0, wheelchair=True)
        _mark(parts["right"], 1, companion=True)
    if tier.id in ("upper-circle", "balcony"):
        _mark(parts["left"], 0, restricted_view=True)
        _mark(parts["right"], -1, restricted_view=True)


def _tier_sections(tier: Tier) -> list[Section]:
    rows: dict[str, list[Row]] = {part: [] for part in PARTS}
    for row_index in range(tier.rows):
        parts = _tier_rows(tier, row_index)
        _accessibility(tier, row_index, parts)
        for part, seats in parts.items():
            rows[part].append(Row(label=ROW_LABELS[row_index], seats=tuple(seats)))
    return [
        Section(
            id=f"{tier.id}-{part}", label=f"{tier.label} {part.title()}", rows=tuple(rows[part])
        )
        for part in PARTS
    ]


def _boxes(side: str) -> Section:
    """Twelve boxes of four in two columns by the stage; a box is a row, seats front to back."""
    rows = []
    for box in range(12):
        column, place = divmod(box, 6)
        inset = 40.0 + 40.0 * column
        x = inset if side == "left" else WIDTH - inset
        top = 120.0 + 45.0 * place
        seats = tuple(
            Seat(
                number=str(n + 1),
                label=f"Box {side[0].upper()}{box + 1} seat {n + 1}",
                x=round(x / WIDTH, 6),
                y=round((top + 10.0 * n) / HEIGHT, 6),
                category="BOX",
            )
            for n in range(4)
        )
        rows.append(Row(label=str(box + 1), seats=seats))
    return Section(id=f"boxes-{side}", label=f"Boxes {side.title()}", rows=tuple(rows))


def opera_house(layout_id: uuid.UUID = DEFAULT_ID, venue: str = "LML Opera House") -> Layout:
    sections = [section for tier in TIERS for section in _tier_sections(tier)]
    return Layout(
        id=layout_id,
        venue=venue,
        viewport=Viewport(width=WIDTH, height=HEIGHT, unit="px"),
        ranking=Ranking(focal_x=0.5, focal_y=0.05, horizontal_weight=1.5),
        categories=CATEGORIES,
        sections=(*sections, _boxes("left"), _boxes("right")),
    )
