"""Seat ranking, best first, computed from the layout alone.

Best-available will pick blocks of adjacent seats (consecutive in a row, see model.py) in this
order; the export carries each seat's rank so the engine and the seat map agree.
"""

import math

from inventory.layouts.model import Layout, PlacedSeat


def _score(layout: Layout, placed: PlacedSeat) -> tuple[int, float, int, int]:
    ranking, viewport = layout.ranking, layout.viewport
    # Measured in viewport units so a wide plan does not shrink horizontal distances.
    dx = (placed.seat.x - ranking.focal_x) * viewport.width * ranking.horizontal_weight
    dy = (placed.seat.y - ranking.focal_y) * viewport.height
    priority = ranking.section_priority.get(placed.section.id, 0)
    # Rows nearer the front first, then left to right, so equal distances still order stably.
    return priority, round(math.hypot(dx, dy), 6), placed.row_index, placed.position


def ranks(layout: Layout) -> list[int]:
    """Each seat's rank (1 = best) in the document order of layout.seats()."""
    seats = list(layout.seats())
    order = sorted(range(len(seats)), key=lambda i: (_score(layout, seats[i]), i))
    result = [0] * len(seats)
    for rank, index in enumerate(order, start=1):
        result[index] = rank
    return result
