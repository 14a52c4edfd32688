"""The layout document: a venue's seat map, as stored, validated, hashed and exported.

Rows list their seats in physical order, left to right as seen from the stage's audience side:
two seats are adjacent exactly when they are consecutive in one row. An aisle therefore
splits a tier into separate sections (Stalls Left, Stalls Centre, ...), never a row.
Seat ids are not stored: they derive from (layout id, section id, row label, seat number).
"""

import enum
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class LayoutStatus(enum.StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    DEPLOYED = "deployed"
    ARCHIVED = "archived"


class LayoutType(enum.StrEnum):
    SEATED = "seated"
    STANDING = "standing"
    HYBRID = "hybrid"


class _Strict(BaseModel):
    # Unknown fields are refused so a typo in an imported file is an error, not a silent loss.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _coordinate(value: float) -> float:
    # A micro-unit of the viewport is far below any seat's size; rounding keeps the canonical
    # form (and the hash) the same after a trip through any store's float representation.
    return round(value, 6)


Coordinate = Annotated[float, AfterValidator(_coordinate)]


class Viewport(_Strict):
    width: float = Field(gt=0)
    height: float = Field(gt=0)
    unit: str = "px"


class Category(_Strict):
    id: str = Field(min_length=1, max_length=64)
    label: str = Field(min_length=1)
    color: str | None = None


class Ranking(_Strict):
    """Where "best" is: seats nearer the focal point (the stage centre) rank first.

    Distances are measured in viewport units; horizontal_weight > 1 favours seats near the
    centre line over seats nearer the stage at the sides. Sections with a lower priority rank
    before every seat of a higher one (a venue may sell its dress circle before the stalls).
    """

    focal_x: float = 0.5
    focal_y: float = 0.0
    horizontal_weight: float = Field(default=1.0, gt=0)
    section_priority: dict[str, int] = Field(default_factory=dict)


class Seat(_Strict):
    number: str = Field(min_length=1, max_length=32)
    label: str | None = None
    x: Coordinate
    y: Coordinate
    category: str
    wheelchair: bool = False
    companion: bool = False
    restricted_view: bool = False


class Row(_Strict):
    label: str = Field(min_length=1, max_length=32)
    seats: tuple[Seat, ...]


class Section(_Strict):
    id: str = Field(min_length=1, max_length=64)
    label: str = Field(min_length=1)
    rows: tuple[Row, ...]


class GeneralAdmissionArea(_Strict):
    id: str = Field(min_length=1, max_length=64)
    label: str = Field(min_length=1)
    capacity: int = Field(gt=0)
    category: str
    x: Coordinate
    y: Coordinate
    width: Coordinate = Field(ge=0)
    height: Coordinate = Field(ge=0)


class Layout(_Strict):
    id: uuid.UUID
    venue: str = Field(min_length=1)
    version: int = Field(default=1, ge=1)
    status: LayoutStatus = LayoutStatus.DRAFT
    hash: str | None = None
    type: LayoutType = LayoutType.SEATED
    viewport: Viewport
    ranking: Ranking = Field(default_factory=Ranking)
    categories: tuple[Category, ...]
    sections: tuple[Section, ...] = ()
    ga_areas: tuple[GeneralAdmissionArea, ...] = ()

    def seats(self) -> Iterator["PlacedSeat"]:
        """Every seat with its place, in document order (section, row, seat)."""
        for section in self.sections:
            for row_index, row in enumerate(section.rows):
                for position, seat in enumerate(row.seats):
                    yield PlacedSeat(section, row, row_index, position, seat)


@dataclass(frozen=True)
class PlacedSeat:
    """A seat together with where it sits: its section, its row and its index in each."""

    section: Section
    row: Row
    row_index: int
    position: int
    seat: Seat
