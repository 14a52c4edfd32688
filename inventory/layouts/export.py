"""The compact static JSON of a published layout, for CDN delivery, and its way back.

The file is named by the layout hash and never changes, so it can be cached forever with the
hash as its ETag. Seats are arrays [id, number, label, x, y, category, rank, flags] (flags: "w"
wheelchair space, "c" companion seat, "r" restricted view), in row order: neighbours in the
array are neighbours in the hall.
"""

import os
import tempfile
from pathlib import Path
from typing import Any

from inventory.layouts.canonical import canonical_json, content, layout_hash, seat_id
from inventory.layouts.errors import LayoutInvalid, LayoutStateConflict
from inventory.layouts.model import Layout, LayoutStatus, Seat
from inventory.layouts.ranking import ranks

FORMAT = "lml-layout/1"
_FLAGS = {"w": "wheelchair", "c": "companion", "r": "restricted_view"}


def _flags(seat: Seat) -> str:
    return "".join(flag for flag, field in _FLAGS.items() if getattr(seat, field))


def export_document(layout: Layout) -> dict[str, Any]:
    if layout.hash is None:
        raise LayoutStateConflict("only a published layout has a hash to be exported under")
    document = content(layout)
    seat_ranks = iter(ranks(layout))
    document["sections"] = [
        {
            "id": section.id,
            "label": section.label,
            "rows": [
                {
                    "label": row.label,
                    "seats": [
                        [
                            seat_id(str(layout.id), section.id, row.label, seat.number),
                            seat.number,
                            seat.label,
                            seat.x,
                            seat.y,
                            seat.category,
                            next(seat_ranks),
                            _flags(seat),
                        ]
                        for seat in row.seats
                    ],
                }
                for row in section.rows
            ],
        }
        for section in layout.sections
    ]
    return {"format": FORMAT, "hash": layout.hash, **document}


def export_bytes(layout: Layout) -> bytes:
    return canonical_json(export_document(layout))


def write_export(layout: Layout, directory: Path) -> Path:
    """Writes <hash>.json into `directory` atomically (readers never see half a file)."""
    if layout.status != LayoutStatus.DEPLOYED:
        raise LayoutStateConflict(f"layout {layout.id} version {layout.version} is not deployed")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{layout.hash}.json"
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as handle:
        handle.write(export_bytes(layout))
    os.chmod(handle.name, 0o644)  # a temporary file is private; the export is for everyone
    os.replace(handle.name, target)
    return target


def _seat(row: list[Any]) -> dict[str, Any]:
    _, number, label, x, y, category, _, flags = row
    seat = {"number": number, "label": label, "x": x, "y": y, "category": category}
    return seat | {field: flag in flags for flag, field in _FLAGS.items()}


def import_export(document: dict[str, Any]) -> Layout:
    """The layout an export describes, checked against the export's seat ids and hash."""
    if document.get("format") != FORMAT:
        raise LayoutInvalid([f"not an export in format {FORMAT}"])
    try:
        layout, exported_ids = _parse_export(document)
    except (KeyError, TypeError, ValueError) as error:  # pydantic's errors are ValueErrors
        raise LayoutInvalid([f"malformed export: {error}"]) from error
    if layout_hash(layout) != layout.hash:
        raise LayoutInvalid(["the export's content does not match its hash"])
    derived = [
        seat_id(str(layout.id), p.section.id, p.row.label, p.seat.number) for p in layout.seats()
    ]
    if exported_ids != derived:
        raise LayoutInvalid(["the export's seat ids do not match the layout"])
    return layout


def _parse_export(document: dict[str, Any]) -> tuple[Layout, list[str]]:
    body = {key: value for key, value in document.items() if key != "format"}
    body["sections"] = [
        {
            **section,
            "rows": [{**row, "seats": [_seat(s) for s in row["seats"]]} for row in section["rows"]],
        }
        for section in document["sections"]
    ]
    layout = Layout.model_validate({**body, "status": LayoutStatus.PUBLISHED})
    sections = document["sections"]
    ids = [seat[0] for section in sections for row in section["rows"] for seat in row["seats"]]
    return layout, ids
