"""Layouts from files: a JSON layout document, or a CSV of seats (one line per seat).

CSV columns: section, row, number, x, y, category (required) and section_label, label,
wheelchair, companion, restricted_view (optional; booleans as true/false, yes/no, 1/0, or empty).
Sections, rows and categories appear in the order of their first line; seats in file order.
"""

import csv
import io
import json
import uuid
from typing import Any

from pydantic import ValidationError

from inventory.layouts.errors import LayoutInvalid
from inventory.layouts.model import Layout, LayoutType, Viewport

REQUIRED = ("section", "row", "number", "x", "y", "category")
OPTIONAL = ("section_label", "label", "wheelchair", "companion", "restricted_view")
_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0", ""}


def _messages(error: ValidationError) -> list[str]:
    return [
        f"{'.'.join(str(part) for part in item['loc']) or 'layout'}: {item['msg']}"
        for item in error.errors()
    ]


def parse_layout(data: Any) -> Layout:
    """A layout from plain JSON data, its shape and types checked (rules are validation's)."""
    try:
        return Layout.model_validate(data)
    except ValidationError as error:
        raise LayoutInvalid(_messages(error)) from error


def from_json(text: str | bytes) -> Layout:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LayoutInvalid([f"not JSON: {error}"]) from error
    return parse_layout(data)


def _flag(value: str, line: int, column: str) -> bool:
    value = value.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise LayoutInvalid([f"line {line}: {column} {value!r} is not true or false"])


def _number(value: str, line: int, column: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise LayoutInvalid([f"line {line}: {column} {value!r} is not a number"]) from None


def _seat(line: int, record: dict[str, str]) -> dict[str, Any]:
    seat: dict[str, Any] = {
        "number": record["number"],
        "label": record.get("label") or None,
        "x": _number(record["x"], line, "x"),
        "y": _number(record["y"], line, "y"),
        "category": record["category"],
    }
    for column in ("wheelchair", "companion", "restricted_view"):
        seat[column] = _flag(record.get(column) or "", line, column)
    return seat


def from_csv(text: str, layout_id: uuid.UUID, venue: str, viewport: Viewport) -> Layout:
    reader = csv.DictReader(io.StringIO(text))
    columns = set(reader.fieldnames or ())
    missing = [column for column in REQUIRED if column not in columns]
    if missing:
        raise LayoutInvalid([f"CSV header lacks column(s): {', '.join(missing)}"])
    unknown = sorted(columns - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise LayoutInvalid([f"CSV header has unknown column(s): {', '.join(unknown)}"])
    sections: dict[str, dict[str, Any]] = {}
    categories: dict[str, None] = {}
    for line, record in enumerate(reader, start=2):
        if None in record or any(record[column] is None for column in REQUIRED):
            raise LayoutInvalid([f"line {line}: expected {len(reader.fieldnames or ())} fields"])
        section = sections.setdefault(
            record["section"],
            {
                "id": record["section"],
                "label": record.get("section_label") or record["section"],
                "rows": {},
            },
        )
        section["rows"].setdefault(record["row"], []).append(_seat(line, record))
        categories[record["category"]] = None
    return parse_layout(
        {
            "id": str(layout_id),
            "venue": venue,
            "type": LayoutType.SEATED.value,
            "viewport": viewport.model_dump(),
            "categories": [{"id": c, "label": c} for c in categories],
            "sections": [
                {**section, "rows": [{"label": r, "seats": s} for r, s in section["rows"].items()]}
                for section in sections.values()
            ],
        }
    )
