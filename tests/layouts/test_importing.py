"""Layouts from CSV and JSON files, and clear errors for bad files."""

import json
import re
import uuid

import pytest

from inventory.layouts import validation
from inventory.layouts.errors import LayoutInvalid
from inventory.layouts.importing import from_csv, from_json
from inventory.layouts.model import Viewport
from tests.layouts.samples import small_layout

VIEWPORT = Viewport(width=1000, height=800)
LAYOUT_ID = uuid.UUID("0d9a3c1e-2b51-4d8e-8a55-3f0a7c1d9e21")
CSV = """section,section_label,row,number,x,y,category,label,wheelchair,companion,restricted_view
stalls,Stalls,A,1,0.40,0.2,A,Stalls A1,yes,,
stalls,Stalls,A,2,0.45,0.2,A,Stalls A2,,true,
stalls,Stalls,A,3,0.50,0.2,A,Stalls A3,,,
stalls,Stalls,B,1,0.40,0.3,B,Stalls B1,,,1
circle,Circle,A,1,0.50,0.7,B,Circle A1,0,no,false
"""


def test_csv_import() -> None:
    layout = from_csv(CSV, LAYOUT_ID, "CSV Hall", VIEWPORT)
    assert validation.problems(layout) == []
    assert [s.id for s in layout.sections] == ["stalls", "circle"]
    assert [r.label for r in layout.sections[0].rows] == ["A", "B"]
    assert [c.id for c in layout.categories] == ["A", "B"]
    first_row = layout.sections[0].rows[0].seats
    assert (first_row[0].wheelchair, first_row[1].companion) == (True, True)
    assert layout.sections[0].rows[1].seats[0].restricted_view


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("section,row,number,x,y\nstalls,A,1,0.1,0.1\n", "lacks column(s): category"),
        ("section,row,number,x,y,category,seat_type\n", "unknown column(s): seat_type"),
        (
            "section,row,number,x,y,category\nstalls,A,1,left,0.1,A\n",
            "line 2: x 'left' is not a number",
        ),
        (
            "section,row,number,x,y,category,wheelchair\nstalls,A,1,0.1,0.1,A,maybe\n",
            "line 2: wheelchair 'maybe' is not true or false",
        ),
        ("section,row,number,x,y,category\nstalls,A,1,0.1\n", "line 2: expected 6 fields"),
        (
            "section,row,number,x,y,category\nstalls,A,1,0.1,0.1,A,extra\n",
            "line 2: expected 6 fields",
        ),
    ],
)
def test_bad_csv(text: str, message: str) -> None:
    with pytest.raises(LayoutInvalid, match=re.escape(message)):
        from_csv(text, LAYOUT_ID, "CSV Hall", VIEWPORT)


def test_json_import_round_trip() -> None:
    layout = small_layout()
    assert from_json(layout.model_dump_json()) == layout


def test_json_with_an_unknown_field_is_refused() -> None:
    data = json.loads(small_layout().model_dump_json())
    data["capacity"] = 10
    with pytest.raises(LayoutInvalid, match="capacity: Extra inputs are not permitted"):
        from_json(json.dumps(data))
