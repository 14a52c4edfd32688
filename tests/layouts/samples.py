"""Small layouts for tests, built as plain JSON data so each test can break one thing."""

import copy
import uuid
from typing import Any

from inventory.layouts.importing import parse_layout
from inventory.layouts.lifecycle import Layouts
from inventory.layouts.model import Layout

LAYOUT_ID = "6f1c1a52-6a0e-4a53-9a0e-0a5b5f7c2d11"


def _row(section: str, label: str, y: float, count: int, category: str) -> dict[str, Any]:
    seats = [
        {
            "number": str(n),
            "label": f"{section} {label}{n}",
            "x": 0.3 + 0.05 * n,
            "y": y,
            "category": category,
        }
        for n in range(1, count + 1)
    ]
    return {"label": label, "seats": seats}


def small_data(layout_id: str = LAYOUT_ID) -> dict[str, Any]:
    """Two sections, three rows, a wheelchair space with its companion seat."""
    data: dict[str, Any] = {
        "id": layout_id,
        "venue": "Test Hall",
        "type": "seated",
        "viewport": {"width": 800, "height": 600, "unit": "px"},
        "categories": [{"id": "A", "label": "Front"}, {"id": "B", "label": "Back"}],
        "sections": [
            {
                "id": "stalls",
                "label": "Stalls",
                "rows": [_row("Stalls", "A", 0.2, 6, "A"), _row("Stalls", "B", 0.3, 6, "A")],
            },
            {"id": "circle", "label": "Circle", "rows": [_row("Circle", "A", 0.7, 5, "B")]},
        ],
    }
    back = data["sections"][1]["rows"][0]["seats"]
    back[0]["wheelchair"] = True
    back[1]["companion"] = True
    return data


def small_layout(layout_id: str = LAYOUT_ID) -> Layout:
    return parse_layout(small_data(layout_id))


def variant(edit: Any, layout_id: str = LAYOUT_ID) -> Layout:
    """The small layout after `edit(data)` changed its JSON data in place."""
    data = copy.deepcopy(small_data(layout_id))
    edit(data)
    return parse_layout(data)


def fresh_id() -> str:
    return str(uuid.uuid4())


async def deployed(layouts: Layouts, layout: Layout) -> Layout:
    """The layout added as a draft, published and deployed."""
    await layouts.add(layout)
    await layouts.publish(layout.id)
    return await layouts.deploy(layout.id)
